//! Fixtures the metadata-store test suites share.

#![allow(dead_code, clippy::unwrap_used)]

use pkgdist_db::{Db, PackageRow};

/// A package row with a source folder and no version yet.
pub fn package(id: &str) -> PackageRow {
    PackageRow {
        package_id: id.into(),
        package_type: 0,
        name: format!("pkg {id}"),
        version: String::new(),
        manufacturer: String::new(),
        language: String::new(),
        description: String::new(),
        pkg_source_path: "/src".into(),
        pkg_source_flag: 2,
        source_version: 0,
        source_date: None,
        last_refresh_time: None,
        package_size: 0,
        pkg_flags: 0,
        priority: 2,
        action_in_progress: 0,
        source_site: "PS1".into(),
        refresh_schedule: String::new(),
        schedule_checked_at: None,
        manifest_hash: None,
        created_at: "2026-11-21T00:00:00Z".into(),
    }
}

/// A property-test runner of `cases` cases that keeps no regression file (the suites that use
/// it share one database across cases).
pub fn runner(cases: u32) -> proptest::test_runner::TestRunner {
    proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })
}

/// A fresh SQLite database in `dir`.
pub fn sqlite(rt: &tokio::runtime::Runtime, dir: &tempfile::TempDir) -> Db {
    rt.block_on(Db::connect(&Db::sqlite_url(&dir.path().join("site.db"))))
        .unwrap()
}

/// A fresh PostgreSQL database on a throwaway server (kept alive by the returned guard).
pub fn postgres(rt: &tokio::runtime::Runtime) -> (pkgdist_testkit::postgres::TempPostgres, Db) {
    let pg = pkgdist_testkit::postgres::TempPostgres::start().unwrap();
    let db = rt.block_on(Db::connect(&pg.url())).unwrap();
    (pg, db)
}
