//! Refreshes sent as deltas: a receiver holding the previous version names the old chunks at
//! each missing chunk's place, and the source sends only the difference. Real libraries on
//! disk, a real source over HTTP on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use pkgdist_content::{Kind, Library, LocalStore, SnapshotOptions};
use pkgdist_core::{ContentId, Manifest};
use pkgdist_node::fetch::{self, Fetcher, Plan, Which};
use pkgdist_testkit::generate::Rng;
use tempfile::TempDir;

const IMAGE: usize = 8 << 20;

async fn serve(lib: Arc<Library>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = pkgdist_node::source::router(lib);
    tokio::spawn(pkgdist_node::listen::serve(
        listener,
        app,
        pkgdist_node::listen::Limits::default(),
        std::future::pending(),
    ));
    url
}

fn library(dir: &Path) -> (Arc<LocalStore>, Arc<Library>) {
    let store = Arc::new(LocalStore::open(dir).unwrap());
    (store.clone(), Arc::new(Library::new(store)))
}

/// Version 1: an 8 MiB incompressible image and 20 small files.
fn write_v1(src: &Path) {
    std::fs::create_dir_all(src.join("tree")).unwrap();
    std::fs::write(src.join("os.img"), Rng::new(1).bytes(IMAGE)).unwrap();
    for i in 0..20u64 {
        std::fs::write(src.join(format!("tree/f{i}.bin")), Rng::new(100 + i).bytes(20_000)).unwrap();
    }
}

/// The edit set, scaled down from bench/edit.py: 40 scattered 512-byte overwrites in the
/// image, 1 KiB inserted near its start, 5 small files with 100 bytes changed, one new file.
fn edit(src: &Path) {
    let mut img = std::fs::read(src.join("os.img")).unwrap();
    let mut rng = Rng::new(7);
    for i in 0..40 {
        let at = i * (IMAGE / 40) + 1000;
        img[at..at + 512].copy_from_slice(&rng.bytes(512));
    }
    img.splice(50_000..50_000, rng.bytes(1024));
    std::fs::write(src.join("os.img"), img).unwrap();
    for i in 0..5u64 {
        let p = src.join(format!("tree/f{i}.bin"));
        let mut f = std::fs::read(&p).unwrap();
        f[5000..5100].copy_from_slice(&rng.bytes(100));
        std::fs::write(&p, f).unwrap();
    }
    std::fs::write(src.join("tree/new.bin"), rng.bytes(30_000)).unwrap();
}

/// Fetches `content` from `url` into `lib` and commits it: the plan and the bytes on the wire.
async fn install(lib: &Arc<Library>, url: &str, content: ContentId) -> (Plan, u64) {
    let fetcher = Fetcher::new();
    let got = fetcher.manifest(url, Which::Version(content), None).await.unwrap();
    let manifest = Arc::new(got.manifest);
    let plan = fetch::plan(lib.clone(), content, manifest.clone(), false)
        .await
        .unwrap();
    let mut wire = 0;
    fetch::fill(&fetcher, lib, &[url.to_owned()], &plan.missing, &plan.bases, |b| {
        wire += b.wire_bytes;
        true
    })
    .await
    .unwrap();
    lib.commit(content, &manifest).unwrap();
    (plan, wire)
}

/// The stored size of `plan`'s missing chunks at the source: what they cost sent whole.
fn whole(source: &Library, plan: &Plan) -> u64 {
    plan.missing
        .iter()
        .map(|c| source.chunk_envelope(&c.id).unwrap().unwrap().len() as u64)
        .sum()
}

/// Every file of `content` in `lib` equals the source folder's.
fn assert_same(lib: &Library, content: ContentId, src: &Path, scratch: &Path) {
    let out = scratch.join(format!("export-{content}"));
    lib.export(content, &out).unwrap();
    let m: Manifest = lib.manifest(content).unwrap();
    for (e, _) in m.files() {
        assert_eq!(
            std::fs::read(out.join(e.path.as_str())).unwrap(),
            std::fs::read(src.join(e.path.as_str())).unwrap(),
            "{}",
            e.path.as_str()
        );
    }
    assert!(lib.verify(Some(content)).unwrap().problems.is_empty());
}

/// A site library holding version 1 of the source, serving it, and a DP library that installed
/// it from there.
struct Setup {
    dir: TempDir,
    src: std::path::PathBuf,
    site: Arc<Library>,
    url: String,
    dp_store: Arc<LocalStore>,
    dp: Arc<Library>,
    /// The plan of the DP's install of version 1.
    first: Plan,
}

const V1: &str = "PS100001.1";
const V2: &str = "PS100001.2";

async fn setup() -> Setup {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("src");
    write_v1(&src);
    let (_, site) = library(&dir.path().join("site"));
    site.snapshot(&src, V1.parse().unwrap(), &SnapshotOptions::default())
        .unwrap();
    let url = serve(site.clone()).await;
    let (dp_store, dp) = library(&dir.path().join("dp"));
    let (first, _) = install(&dp, &url, V1.parse().unwrap()).await;
    Setup {
        dir,
        src,
        site,
        url,
        dp_store,
        dp,
        first,
    }
}

#[tokio::test]
async fn a_refresh_sends_differences_not_chunks() {
    let Setup {
        dir,
        src,
        site,
        url,
        dp,
        first,
        ..
    } = setup().await;
    let v2: ContentId = V2.parse().unwrap();
    assert!(first.bases.is_empty(), "nothing to offer before the first version");

    edit(&src);
    site.snapshot(&src, v2, &SnapshotOptions::default()).unwrap();
    let (plan2, wire) = install(&dp, &url, v2).await;
    let whole = whole(&site, &plan2);
    // Every changed chunk of an edited file has a base; the new file's chunks have none.
    let new_file = site
        .manifest(v2)
        .unwrap()
        .entry("tree/new.bin")
        .unwrap()
        .file()
        .unwrap()
        .chunks
        .len();
    assert_eq!(plan2.bases.len(), plan2.missing.len() - new_file, "{plan2:?}");
    // 20 KiB + 1 KiB + 500 bytes changed and a 30 KB new file: the deltas carry about that,
    // not the ~80 changed 16-256 KiB chunks.
    assert!(
        wire < 130_000 && wire * 20 < whole,
        "sent {wire} bytes on the wire for {whole} bytes of changed chunks"
    );
    assert_same(&dp, v2, &src, dir.path());
}

#[tokio::test]
async fn a_source_without_the_bases_sends_chunks_whole() {
    let Setup { dir, src, dp, .. } = setup().await;
    let v2: ContentId = V2.parse().unwrap();

    // A second source holding only version 2 (as a pull DP's source may): it cannot make
    // deltas, so it sends the chunks as stored, and the install is still right.
    edit(&src);
    let (_, only_v2) = library(&dir.path().join("only-v2"));
    only_v2.snapshot(&src, v2, &SnapshotOptions::default()).unwrap();
    let (plan, wire) = install(&dp, &serve(only_v2.clone()).await, v2).await;
    assert!(!plan.bases.is_empty());
    let whole = whole(&only_v2, &plan);
    assert!(wire >= whole, "sent {wire}, chunks are {whole}");
    assert_same(&dp, v2, &src, dir.path());
}

#[tokio::test]
async fn a_damaged_base_fails_the_batch_and_is_not_offered_again() {
    let Setup {
        dir,
        src,
        site,
        url,
        dp_store,
        dp,
        ..
    } = setup().await;
    let v2: ContentId = V2.parse().unwrap();
    edit(&src);
    site.snapshot(&src, v2, &SnapshotOptions::default()).unwrap();

    let fetcher = Fetcher::new();
    let manifest = Arc::new(fetcher.manifest(&url, Which::Version(v2), None).await.unwrap().manifest);
    let plan = fetch::plan(dp.clone(), v2, manifest.clone(), false).await.unwrap();
    let (chunk, bases) = plan
        .missing
        .iter()
        .find_map(|c| plan.bases.of(&c.id).map(|b| (*c, b.to_vec())))
        .unwrap();
    let damaged = bases[0];
    pkgdist_testkit::damage::flip_byte(&dp_store.object_path(Kind::Chunk, &damaged.id.to_hex()).unwrap()).unwrap();

    let err = fetch::fill(&fetcher, &dp, std::slice::from_ref(&url), &[chunk], &plan.bases, |_| {
        true
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&damaged.id.to_string()), "{err}");
    assert!(!dp.has_chunk(&damaged.id).unwrap(), "the damaged base is deleted");
    assert!(!dp.has_chunk(&chunk.id).unwrap(), "nothing wrong was stored");

    // The next attempt plans again, offers no damaged base, and installs the version.
    let again = fetch::plan(dp.clone(), v2, manifest.clone(), false).await.unwrap();
    assert!(
        again.bases.of(&chunk.id).is_none_or(|b| !b.contains(&damaged)),
        "the damaged base is offered again"
    );
    fetch::fill(
        &fetcher,
        &dp,
        std::slice::from_ref(&url),
        &again.missing,
        &again.bases,
        |_| true,
    )
    .await
    .unwrap();
    dp.commit(v2, &manifest).unwrap();
    assert_same(&dp, v2, &src, dir.path());
}

/// A manifest travels compressed, and against the version the receiver holds when it names
/// one: a refresh of a few files in a 3,000-file package moves a few kilobytes of manifest,
/// checked against the hash it must have. A node that does not ask gets the canonical bytes
/// (older nodes); a base the source lacks, or another package's, is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_travel_as_deltas_against_the_version_held() {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("tree")).unwrap();
    for i in 0..3000u64 {
        std::fs::write(src.join(format!("tree/file-{i:05}.txt")), format!("file {i}")).unwrap();
    }
    let (_, lib) = library(&dir.path().join("site"));
    let (v1, v2): (ContentId, ContentId) = ("PS100001.1".parse().unwrap(), "PS100001.2".parse().unwrap());
    lib.snapshot(&src, v1, &SnapshotOptions::default()).unwrap();
    for i in [7u64, 1500, 2999] {
        std::fs::write(src.join(format!("tree/file-{i:05}.txt")), "changed").unwrap();
    }
    lib.snapshot(&src, v2, &SnapshotOptions::default()).unwrap();
    let url = serve(lib.clone()).await;
    let canonical = lib.manifest(v2).unwrap().encode();
    let hash = lib.manifest_id(v2).unwrap();

    let fetcher = Fetcher::new();
    let held = fetch::ManifestBase {
        content: v1,
        bytes: lib.manifest(v1).unwrap().encode(),
    };
    let delta = fetcher
        .manifest_against(&url, Which::Version(v2), hash, Some(&held))
        .await
        .unwrap();
    assert_eq!(delta.manifest.encode(), canonical);
    assert!(
        delta.wire_bytes * 50 < canonical.len() as u64,
        "{} bytes on the wire for a manifest of {}",
        delta.wire_bytes,
        canonical.len()
    );
    let whole = fetcher.manifest(&url, Which::Version(v2), hash).await.unwrap();
    assert!(whole.wire_bytes < canonical.len() as u64 && whole.wire_bytes > delta.wire_bytes);
    eprintln!(
        "manifest of 3,000 files: {} bytes, {} compressed, {} against the version held",
        canonical.len(),
        whole.wire_bytes,
        delta.wire_bytes
    );
    // A base the source does not hold: sent without one.
    let unknown = fetch::ManifestBase {
        content: "PS100001.9".parse().unwrap(),
        bytes: Vec::new(),
    };
    let got = fetcher
        .manifest_against(&url, Which::Version(v2), hash, Some(&unknown))
        .await
        .unwrap();
    assert_eq!(got.wire_bytes, whole.wire_bytes);
    // A receiver holding other bytes under the base's name rebuilds nothing it accepts.
    let lying = fetch::ManifestBase {
        content: v1,
        bytes: vec![0u8; held.bytes.len()],
    };
    assert!(
        fetcher
            .manifest_against(&url, Which::Version(v2), hash, Some(&lying))
            .await
            .is_err()
    );
    // An older node, which does not ask for zstd, gets the canonical bytes.
    let raw = reqwest::get(format!("{url}/node/v1/manifests/{v2}?base={v1}"))
        .await
        .unwrap();
    assert!(raw.headers().get("x-pkgdist-manifest-encoding").is_none());
    assert_eq!(raw.bytes().await.unwrap().to_vec(), canonical);
}

/// Small chunks travel in groups compressed across chunks: 400 small source files, each
/// compressing little alone, cross the wire in under half the bytes of their envelopes; the
/// receiver gets every chunk checked and keeps it compressed as the source stores it. A
/// receiver that does not ask gets the frames as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_chunks_travel_compressed_together() {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..400u64 {
        let text = format!(
            "package Module{i};\nuse strict;\nuse warnings;\nsub new {{ my ($class, %args) = @_; return bless {{ %args, id => {i} }}, $class }}\nsub name {{ $_[0]->{{name}} }}\n1;\n"
        );
        std::fs::write(src.join(format!("Module{i}.pm")), text.repeat(20)).unwrap();
    }
    let (_, lib) = library(&dir.path().join("site"));
    let v1: ContentId = "PS100001.1".parse().unwrap();
    lib.snapshot(&src, v1, &SnapshotOptions::default()).unwrap();
    let url = serve(lib.clone()).await;
    let refs = lib.manifest(v1).unwrap().unique_chunks();
    let stored: u64 = refs
        .iter()
        .map(|c| lib.chunk_envelope(&c.id).unwrap().unwrap().len() as u64)
        .sum();

    let (got, wire) = Fetcher::new()
        .chunks(&url, &refs, &fetch::Bases::default())
        .await
        .unwrap();
    assert!(
        wire * 2 < stored,
        "{wire} bytes on the wire for {stored} bytes of envelopes"
    );
    for (c, env) in refs.iter().zip(&got) {
        assert_eq!(
            Some(env.clone()),
            lib.chunk_envelope(&c.id).unwrap(),
            "kept as the source stores it"
        );
    }
    let plain = reqwest::Client::new()
        .post(format!("{url}/node/v1/chunks"))
        .json(&serde_json::json!({"ids": refs.iter().map(|c| c.id).collect::<Vec<_>>()}))
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("x-pkgdist-frames-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    assert!(plain.len() as u64 > stored, "frames as before: {} bytes", plain.len());
    eprintln!("400 small files: {stored} bytes of envelopes, {wire} on the wire in groups");
}
