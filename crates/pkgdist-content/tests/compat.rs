//! Libraries written by earlier versions of pkgdist stay readable: the fixture `library-v1`
//! (manifest format 1, see `fixtures/README.md`) is read, verified and exported whole by
//! today's code, and its manifest keeps its name (re-encoding it gives the same bytes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use pkgdist_content::Library;
use pkgdist_core::ContentId;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_library_of_manifest_format_1_is_read_verified_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/library-v1");
    copy_tree(&fixture, &dir.path().join("lib"));
    let lib = Library::open_local(&dir.path().join("lib")).unwrap();
    let content: ContentId = "PS100001.1".parse().unwrap();
    let id = lib.manifest_id(content).unwrap().unwrap();
    assert_eq!(
        id.to_hex(),
        "1d06d4e9413797f73965912403a170e532cf35f4df9869b7ff4e2f531fdf0902"
    );
    let manifest = lib.manifest(content).unwrap();
    assert_eq!(
        manifest.id(),
        id,
        "re-encoded, a format-1 manifest keeps its bytes and its name"
    );
    assert!(lib.verify(Some(content)).unwrap().is_clean());

    let out = dir.path().join("out");
    lib.export(content, &out).unwrap();
    let setup: Vec<u8> = (0..40000u32).map(|i| u8::try_from((i * 7) % 251).unwrap()).collect();
    assert_eq!(std::fs::read(out.join("setup.bin")).unwrap(), setup);
    assert_eq!(std::fs::read(out.join("sub/readme.txt")).unwrap(), b"hello v1\n");
    assert!(std::fs::read(out.join("empty")).unwrap().is_empty());
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("sub/readme.txt")
    );
    let meta = std::fs::metadata(out.join("setup.bin")).unwrap();
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_704_164_645, 123_456_789));
    assert_eq!(
        std::fs::metadata(out.join("sub")).unwrap().permissions().mode() & 0o7777,
        0o750
    );
}
