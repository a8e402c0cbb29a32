//! `pkgdist content …`: the content engine on a local library folder, without a site.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use pkgdist_content::{Library, Progress, SnapshotOptions};
use pkgdist_core::{ContentId, PackageId};
use serde::Serialize;

use crate::output;

/// Exit status of `content verify` when it finds damage (1 is any other failure).
const EXIT_DAMAGED: u8 = 3;

#[derive(Subcommand)]
pub enum ContentCommand {
    /// Snapshot a source folder as the next version of a package.
    Snapshot(SnapshotArgs),
    /// Re-hash a version, or the whole library, and report missing or damaged content.
    Verify(VerifyArgs),
    /// Write a version's files into a new (or empty) folder, verifying every byte.
    Export(ExportArgs),
    /// Delete chunks and manifests that no recorded version uses.
    Gc(LibraryArgs),
    /// List the recorded versions.
    List(LibraryArgs),
    /// Write a version (manifest and every chunk) to one prestaged content file, for a DP
    /// enabled for prestaged content to import with `pkgdist dp prestage FILE`.
    Prestage(PrestageArgs),
}

#[derive(Args)]
pub struct PrestageArgs {
    #[command(flatten)]
    lib: LibraryArgs,
    /// A content ID (PS100001.3), or a package ID for its latest version.
    content: String,
    /// The file to write (it must not exist).
    file: PathBuf,
}

#[derive(Args)]
pub struct LibraryArgs {
    /// The content library folder.
    #[arg(long, env = "PKGDIST_LIBRARY")]
    library: PathBuf,
    /// Set from the global `--json`.
    #[arg(skip)]
    json: bool,
}

#[derive(Args)]
pub struct SnapshotArgs {
    /// The package source folder.
    source: PathBuf,
    #[command(flatten)]
    lib: LibraryArgs,
    /// The package, e.g. PS100001. The new version is the package's latest plus one.
    #[arg(long)]
    package_id: PackageId,
    /// Read every file again instead of trusting unchanged size, mtime and inode.
    #[arg(long)]
    checksum: bool,
    /// New data staged before it is made durable, in MiB: the most a crash can cost.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65536))]
    batch_mib: u64,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    lib: LibraryArgs,
    /// One version, e.g. PS100001.3; without it, every version and every stored chunk.
    content_id: Option<ContentId>,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    lib: LibraryArgs,
    content_id: ContentId,
    dest: PathBuf,
}

pub fn run(cmd: ContentCommand, json: bool) -> Result<ExitCode> {
    match cmd {
        ContentCommand::Snapshot(mut a) => {
            a.lib.json = json;
            snapshot(a)
        }
        ContentCommand::Verify(mut a) => {
            a.lib.json = json;
            verify(a)
        }
        ContentCommand::Export(mut a) => {
            a.lib.json = json;
            export(a)
        }
        ContentCommand::Gc(mut a) => {
            a.json = json;
            gc(a)
        }
        ContentCommand::List(mut a) => {
            a.json = json;
            list(a)
        }
        ContentCommand::Prestage(mut a) => {
            a.lib.json = json;
            prestage(a)
        }
    }
}

fn open(args: &LibraryArgs) -> Result<Library> {
    Library::open_local(&args.library).with_context(|| format!("opening the library at {}", args.library.display()))
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
struct Bar(ProgressBar);

impl Bar {
    fn new(enabled: bool) -> Self {
        Self(crate::output::progress_bar(enabled))
    }
}

impl Progress for Bar {
    fn start(&self, total_bytes: u64, _files: u64) {
        self.0.set_length(total_bytes);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

#[derive(Serialize)]
struct SnapshotOutput {
    content_id: ContentId,
    manifest_hash: String,
    /// Identical to the previous version: nothing in the source changed.
    unchanged: bool,
    seconds: f64,
    stats: pkgdist_content::SnapshotStats,
}

fn snapshot(a: SnapshotArgs) -> Result<ExitCode> {
    let lib = Library::create_local(&a.lib.library)
        .with_context(|| format!("opening the library at {}", a.lib.library.display()))?
        .with_flush_bytes(a.batch_mib << 20);
    let previous = lib.latest(a.package_id)?;
    let next = match previous {
        None => 1,
        Some(p) => p
            .version
            .checked_add(1)
            .context("the package has reached the highest version number")?,
    };
    let target = ContentId::new(a.package_id, next)?;
    let bar = Bar::new(!a.lib.json);
    let started = Instant::now();
    let out = lib
        .snapshot(
            &a.source,
            target,
            &SnapshotOptions {
                previous,
                checksum: a.checksum,
                progress: Some(&bar),
                // The operator's own command on their own library: any folder they can read.
                allowed_roots: None,
                private: &[],
            },
        )
        .with_context(|| format!("snapshotting {} as {target}", a.source.display()))?;
    bar.0.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if a.lib.json {
        output::json(&SnapshotOutput {
            content_id: out.content_id,
            manifest_hash: out.manifest_id.to_hex(),
            unchanged: out.unchanged,
            seconds,
            stats: out.stats,
        })?;
    } else {
        let s = &out.stats;
        output::line(format!("{}  manifest {}", out.content_id, out.manifest_id))?;
        output::line(format!(
            "{} files, {} in {:.2}s; read {}, {} files unchanged; {} new chunks ({} stored as {}){}",
            s.files,
            output::bytes(s.bytes),
            seconds,
            output::bytes(s.bytes_read),
            s.files_reused,
            s.chunks_new,
            output::bytes(s.bytes_new),
            output::bytes(s.bytes_stored),
            if out.unchanged {
                "; identical to the previous version"
            } else {
                ""
            },
        ))?;
        if s.hard_links + s.specials + s.sockets_skipped > 0 {
            output::line(format!(
                "{} hard links, {} devices and fifos; {} sockets left out (a socket is not content)",
                s.hard_links, s.specials, s.sockets_skipped
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let lib = open(&a.lib)?;
    let report = lib.verify(a.content_id)?;
    if a.lib.json {
        output::json(&report)?;
    } else {
        output::line(format!(
            "checked {} version(s), {} chunks ({})",
            report.versions.len(),
            report.chunks_checked,
            output::bytes(report.bytes_checked)
        ))?;
        for p in &report.problems {
            let fault = match p.fault {
                pkgdist_content::Fault::Missing => "MISSING",
                pkgdist_content::Fault::Damaged => "DAMAGED",
            };
            let object = serde_json::to_value(p.object)?.as_str().unwrap_or("object").to_owned();
            output::line(format!("{fault} {object} {}: {}", p.id, p.detail))?;
            for af in &p.affects {
                if af.path.is_empty() {
                    output::line(format!("    breaks all of {}", af.content_id))?;
                } else {
                    output::line(format!("    breaks {} {}", af.content_id, af.path))?;
                }
            }
        }
        if report.is_clean() {
            output::line("no problems found")?;
        } else {
            output::line(format!(
                "{} problem(s) found. Nothing was changed; restore the content by re-snapshotting or redistributing the affected versions.",
                report.problems.len()
            ))?;
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DAMAGED)
    })
}

fn export(a: ExportArgs) -> Result<ExitCode> {
    let lib = open(&a.lib)?;
    let stats = lib
        .export(a.content_id, &a.dest)
        .with_context(|| format!("exporting {} to {}", a.content_id, a.dest.display()))?;
    if a.lib.json {
        output::json(&stats)?;
    } else {
        output::line(format!(
            "exported {}: {} files ({}), {} folders, {} links, {} hard links, {} devices and fifos to {}",
            a.content_id,
            stats.files,
            output::bytes(stats.bytes),
            stats.directories,
            stats.symlinks,
            stats.hard_links,
            stats.specials,
            a.dest.display()
        ))?;
        if let Some(note) = not_restored(&stats.skipped) {
            output::line(note)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn prestage(a: PrestageArgs) -> Result<ExitCode> {
    let lib = open(&a.lib)?;
    let content: ContentId = match a.content.parse() {
        Ok(c) => c,
        Err(_) => {
            let package: PackageId = a
                .content
                .parse()
                .context("CONTENT: a content ID (PS100001.3) or a package ID")?;
            lib.latest(package)?
                .with_context(|| format!("{package} has no version in the library at {}", a.lib.library.display()))?
        }
    };
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&a.file)
        .with_context(|| format!("creating {} (it must not exist)", a.file.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let written = match pkgdist_content::prestage::write(&lib, content, &mut out) {
        Ok(w) => w,
        Err(e) => {
            drop(out);
            let _ = std::fs::remove_file(&a.file);
            return Err(e).with_context(|| format!("writing {content} to {}", a.file.display()));
        }
    };
    if let Err(e) = out.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()) {
        let _ = std::fs::remove_file(&a.file);
        return Err(e).with_context(|| format!("writing {}", a.file.display()));
    }
    if a.lib.json {
        output::json(&serde_json::json!({
            "Content": written.content.to_string(),
            "ManifestHash": written.manifest_hash.to_hex(),
            "Chunks": written.chunks,
            "StoredBytes": written.stored_bytes,
            "File": a.file.display().to_string(),
        }))?;
    } else {
        output::line(format!(
            "wrote {} to {}: {} chunks ({}), manifest {}",
            written.content,
            a.file.display(),
            written.chunks,
            output::bytes(written.stored_bytes),
            written.manifest_hash.to_hex()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn gc(a: LibraryArgs) -> Result<ExitCode> {
    let lib = open(&a)?;
    let r = lib.gc()?;
    if a.json {
        output::json(&r)?;
    } else {
        output::line(format!(
            "kept {} version(s); removed {} chunks ({}), {} manifests, {} staging leftovers",
            r.versions_kept,
            r.chunks_removed,
            output::bytes(r.bytes_freed),
            r.manifests_removed,
            r.staging_removed
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct VersionRow {
    content_id: ContentId,
    manifest_hash: String,
    files: usize,
    bytes: u64,
}

fn list(a: LibraryArgs) -> Result<ExitCode> {
    let lib = open(&a)?;
    let mut rows = Vec::new();
    for c in lib.versions()? {
        let m = lib.manifest(c)?;
        rows.push(VersionRow {
            content_id: c,
            manifest_hash: m.id().to_hex(),
            files: m.files().count(),
            bytes: m.total_size(),
        });
    }
    if a.json {
        output::json(&rows)?;
    } else {
        for r in &rows {
            output::line(format!(
                "{:<16} {:>8} files {:>12}  {}",
                r.content_id,
                r.files,
                output::bytes(r.bytes),
                r.manifest_hash
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a restore could not do as this user, in a line; `None` when it did everything.
pub(crate) fn not_restored(s: &pkgdist_content::restore::Skipped) -> Option<String> {
    let parts: Vec<String> = [
        (s.owners, "owners"),
        (s.devices, "device nodes"),
        (s.xattrs, "extended attributes"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "not restored as this user: {}; run as root to restore them",
            parts.join(", ")
        )
    })
}
