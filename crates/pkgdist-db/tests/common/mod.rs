//! Fixtures the metadata-store test suites share.

#![allow(dead_code)]

use pkgdist_db::PackageRow;

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
