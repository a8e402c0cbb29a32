//! The per-group count of members in sync (migration 0006's triggers) against a count made
//! from scratch: random sequences of everything that moves it — members joining and leaving,
//! packages added to and removed from groups, rows targeted, installed, refreshed, removed,
//! DPs and packages deleted — on SQLite and PostgreSQL, with no drift after any step. The
//! per-package and per-DP state counts (migration 0008) are held to a recount the same way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pkgdist_db::*;

mod common;
use proptest::prelude::*;

const T: &str = "2026-11-21T00:00:00Z";
const GROUPS: [&str; 2] = ["{G1}", "{G2}"];
const PACKAGES: [&str; 3] = ["PS100001", "PS100002", "PS100003"];
const DPS: [&str; 3] = ["dp1", "dp2", "dp3"];

#[derive(Debug, Clone)]
enum Op {
    Join(usize, usize),
    Leave(usize, usize),
    AddPackage(usize, usize),
    RemovePackage(usize, usize),
    Target(usize, usize),
    Install(usize, usize),
    Refresh(usize),
    Remove(usize, usize),
    Removed(usize, usize),
    DeleteDp(usize),
    DeletePackage(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let (g, p, d) = (0..GROUPS.len(), 0..PACKAGES.len(), 0..DPS.len());
    prop_oneof![
        1 => (g.clone(), d.clone()).prop_map(|(a, b)| Op::Join(a, b)),
        1 => (g.clone(), d.clone()).prop_map(|(a, b)| Op::Leave(a, b)),
        1 => (g.clone(), p.clone()).prop_map(|(a, b)| Op::AddPackage(a, b)),
        1 => (g, p.clone()).prop_map(|(a, b)| Op::RemovePackage(a, b)),
        1 => (p.clone(), d.clone()).prop_map(|(a, b)| Op::Target(a, b)),
        3 => (p.clone(), d.clone()).prop_map(|(a, b)| Op::Install(a, b)),
        1 => p.clone().prop_map(Op::Refresh),
        1 => (p.clone(), d.clone()).prop_map(|(a, b)| Op::Remove(a, b)),
        1 => (p.clone(), d.clone()).prop_map(|(a, b)| Op::Removed(a, b)),
        1 => d.prop_map(Op::DeleteDp),
        1 => p.prop_map(Op::DeletePackage),
    ]
}

fn nal(d: usize) -> String {
    format!("nal-{}", DPS[d])
}

fn package(id: &str) -> PackageRow {
    PackageRow {
        pkg_source_path: String::new(),
        pkg_source_flag: 1,
        source_version: 1,
        ..common::package(id)
    }
}

/// Everything exists again (an op may have deleted it).
async fn ensure(db: &Db) {
    for p in PACKAGES {
        if db.package(p).await.unwrap().is_none() {
            db.insert_package(&package(p)).await.unwrap();
        }
    }
    for (d, name) in DPS.iter().enumerate() {
        if db.dp(&nal(d)).await.unwrap().is_none() {
            db.insert_dp(&DpRow::new(nal(d), (*name).into(), "PS1".into(), T.into()), &[])
                .await
                .unwrap();
        }
    }
    for g in GROUPS {
        if db.group(g).await.unwrap().is_none() {
            db.insert_group(&GroupRow {
                group_id: g.into(),
                name: g.into(),
                description: String::new(),
                source_site: "PS1".into(),
                created_on: T.into(),
                modified_on: T.into(),
            })
            .await
            .unwrap();
        }
    }
}

/// Finishes the row's current job with `state` (and the target version installed if 0).
async fn finish(db: &Db, p: &str, d: usize, state: i64, remove_row: bool) {
    let Some(row) = db.package_dp(p, &nal(d)).await.unwrap() else {
        return;
    };
    let lease = Lease {
        package_id: p.into(),
        nal_path: nal(d),
        job_seq: row.job_seq,
        state: row.state,
        attempts: row.attempts,
        owner: "test".into(),
        until: "2099-01-01T00:00:00Z".into(),
    };
    assert!(db.claim(&lease, T).await.unwrap());
    let outcome = JobOutcome {
        package_id: p.into(),
        nal_path: nal(d),
        job_seq: row.job_seq,
        state,
        installed_version: (state == 0).then_some(row.target_version),
        attempts: 0,
        next_attempt_at: None,
        remove_row,
        needs_repair: false,
        lease_owner: "test".into(),
        time: T.into(),
        message: "done".into(),
    };
    let status = NewStatus {
        package_id: p.into(),
        nal_path: nal(d),
        site_code: "PS1".into(),
        message_id: 2330,
        message_state: 1,
        severity: 0,
        description: "done".into(),
        bytes_transferred: 0,
        time: T.into(),
    };
    assert!(db.finish_job(&outcome, &status).await.unwrap());
}

async fn apply(db: &Db, op: &Op) {
    ensure(db).await;
    match *op {
        Op::Join(g, d) => db.add_group_members(GROUPS[g], &[nal(d)], &[], &[]).await.unwrap(),
        Op::Leave(g, d) => db.remove_group_members(GROUPS[g], &[nal(d)], &[], &[]).await.unwrap(),
        Op::AddPackage(g, p) => db
            .add_group_packages(GROUPS[g], &[PACKAGES[p].into()], &[], &[])
            .await
            .unwrap(),
        Op::RemovePackage(g, p) => db
            .remove_group_packages(GROUPS[g], &[PACKAGES[p].into()], &[], &[])
            .await
            .unwrap(),
        Op::Target(p, d) => {
            let t = NewTarget {
                package_id: PACKAGES[p].into(),
                nal_path: nal(d),
                site_code: "PS1".into(),
                state: 1,
                state_if_installed: 7,
                redistribute: false,
                time: T.into(),
                message: "queued".into(),
            };
            db.target(&[t], &[]).await.unwrap();
        }
        Op::Install(p, d) => {
            let installing = db
                .package_dp(PACKAGES[p], &nal(d))
                .await
                .unwrap()
                .is_some_and(|r| matches!(r.state, 1 | 7));
            if installing {
                finish(db, PACKAGES[p], d, 0, false).await;
            }
        }
        Op::Refresh(p) => {
            let pkg = db.package(PACKAGES[p]).await.unwrap().unwrap();
            let v = NewVersion {
                package_id: pkg.package_id.clone(),
                previous_version: pkg.source_version,
                source_version: pkg.source_version + 1,
                manifest_hash: "ab".repeat(32),
                package_size_kb: 1,
                time: T.into(),
                action_in_progress: 1,
                dp_state: 1,
                dp_state_if_installed: 7,
                dp_message: "new version".into(),
                message_id: 2357,
                message_state: 2,
                severity: 0,
            };
            assert!(db.record_version(&v).await.unwrap());
        }
        Op::Remove(p, d) => {
            let c = TargetChange {
                package_id: PACKAGES[p].into(),
                nal_path: nal(d),
                expect_seq: None,
                state: 4,
                time: T.into(),
                message: "removal queued".into(),
            };
            db.set_states(&[c], &[]).await.unwrap();
        }
        Op::Removed(p, d) => {
            let removing = db
                .package_dp(PACKAGES[p], &nal(d))
                .await
                .unwrap()
                .is_some_and(|r| r.state == 4);
            if removing {
                finish(db, PACKAGES[p], d, 0, true).await;
            }
        }
        Op::DeleteDp(d) => {
            db.delete_dp(&nal(d)).await.unwrap();
        }
        Op::DeletePackage(p) => {
            db.delete_package(PACKAGES[p]).await.unwrap();
        }
    }
}

fn check(db: &Db, rt: &tokio::runtime::Runtime, cases: u32) {
    let mut runner = common::runner(cases);
    runner
        .run(&proptest::collection::vec(op(), 1..40), |ops| {
            rt.block_on(async {
                // Each case starts from nothing, so a failure shrinks to its own steps.
                for p in PACKAGES {
                    db.delete_package(p).await.unwrap();
                }
                for d in 0..DPS.len() {
                    db.delete_dp(&nal(d)).await.unwrap();
                }
                for g in GROUPS {
                    db.delete_group(g).await.unwrap();
                }
                for (i, op) in ops.iter().enumerate() {
                    apply(db, op).await;
                    let drift = db.group_sync_drift().await.unwrap();
                    if drift != 0 {
                        return Err(TestCaseError::fail(format!(
                            "{drift} counts wrong after step {i}: {op:?}"
                        )));
                    }
                    let drift = db.state_counts_drift().await.unwrap();
                    if drift != 0 {
                        return Err(TestCaseError::fail(format!(
                            "{drift} per-package or per-DP state counts wrong after step {i}: {op:?}"
                        )));
                    }
                }
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn counts_stay_exact_on_sqlite() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    check(&common::sqlite(&rt, &dir), &rt, 128);
}

#[test]
fn counts_stay_exact_on_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_pg, db) = common::postgres(&rt);
    check(&db, &rt, 96);
}
