//! Generates deterministic test data for pkgdist's benchmarks.
//!
//! `pkgdist-gen image PATH --size 1G --seed 1` writes one OS-image-like file;
//! `pkgdist-gen tree DIR --files 20000 --seed 2` writes a tree of small files.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use pkgdist_testkit::generate;

#[derive(Parser)]
#[command(about = "Deterministic test data for pkgdist benchmarks")]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// One large file: half random, a quarter text-like, the rest zeros or repeated blocks.
    Image {
        path: PathBuf,
        /// Size with an optional K, M or G suffix (binary units).
        #[arg(long)]
        size: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// A tree of small files of mixed sizes.
    Tree {
        dir: PathBuf,
        #[arg(long)]
        files: usize,
        #[arg(long, default_value_t = 2)]
        seed: u64,
    },
}

fn parse_size(s: &str) -> Result<u64> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    match n.checked_mul(mult) {
        Some(v) => Ok(v),
        None => bail!("size {s:?} is too large"),
    }
}

fn main() -> Result<()> {
    match Cli::parse().what {
        What::Image { path, size, seed } => generate::write_image(&path, seed, parse_size(&size)?)
            .with_context(|| format!("writing {}", path.display())),
        What::Tree { dir, files, seed } => generate::write_tree(&dir, seed, files)
            .map(|_| ())
            .with_context(|| format!("writing {}", dir.display())),
    }
}
