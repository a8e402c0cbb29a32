//! One suite for every engine, run unchanged against SQLite and PostgreSQL (a throwaway
//! server started by the test from Debian's `postgresql` package).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pkgdist_db::*;

mod common;
use common::package;

fn t(n: u32) -> String {
    format!("2026-11-21T00:00:{n:02}Z")
}

fn dp(name: &str) -> DpRow {
    DpRow::new(format!("nal-{name}"), name.into(), "PS1".into(), t(0))
}

fn target(p: &str, d: &str) -> NewTarget {
    NewTarget {
        package_id: p.into(),
        nal_path: format!("nal-{d}"),
        site_code: "PS1".into(),
        state: 1,
        state_if_installed: 7,
        redistribute: false,
        time: t(1),
        message: "queued".into(),
    }
}

async fn suite(db: Db) {
    // Counters never hand out a value twice.
    let a = db.next_counter("package", 1).await.unwrap();
    let b = db.next_counter("package", 1).await.unwrap();
    assert_eq!((a, b), (1, 2));

    db.set_setting("site_code", "PS1").await.unwrap();
    db.set_setting("site_code", "PS2").await.unwrap();
    assert_eq!(db.setting("site_code").await.unwrap().as_deref(), Some("PS2"));
    assert_eq!(db.setting("nope").await.unwrap(), None);

    // Packages.
    db.insert_package(&package("PS100001")).await.unwrap();
    assert!(matches!(
        db.insert_package(&package("PS100001")).await,
        Err(DbError::Conflict(_))
    ));
    let changes = [
        PackageField::Text(PackageText::Name, "renamed".into()),
        PackageField::Number(PackageNumber::Priority, 1),
    ];
    assert!(db.update_package_fields("PS100001", &changes).await.unwrap());
    // Another change to another column does not undo the first.
    assert!(
        db.update_package_fields("PS100001", &[PackageField::Text(PackageText::Description, "d".into())])
            .await
            .unwrap()
    );
    let p = db.package("PS100001").await.unwrap().unwrap();
    assert_eq!(
        (p.name.as_str(), p.priority, p.description.as_str()),
        ("renamed", 1, "d")
    );
    assert!(!db.update_package_fields("PS1FFFFF", &changes).await.unwrap());
    db.insert_package(&package("PS100002")).await.unwrap();
    assert_eq!(db.packages().await.unwrap().len(), 2);

    // DPs and groups, with unique names.
    db.insert_dp(&dp("dp1"), &[]).await.unwrap();
    db.insert_dp(&dp("dp2"), &[]).await.unwrap();
    assert!(matches!(
        db.insert_dp(
            &DpRow {
                nal_path: "other".into(),
                ..dp("dp1")
            },
            &[]
        )
        .await,
        Err(DbError::Conflict(_))
    ));
    let g = GroupRow {
        group_id: "{G1}".into(),
        name: "Branch".into(),
        description: String::new(),
        source_site: "PS1".into(),
        created_on: t(0),
        modified_on: t(0),
    };
    db.insert_group(&g).await.unwrap();
    assert!(matches!(
        db.insert_group(&GroupRow {
            group_id: "{G2}".into(),
            ..g.clone()
        })
        .await,
        Err(DbError::Conflict(_))
    ));

    // Group membership and packages, with targets, in one go each.
    db.add_group_members("{G1}", &["nal-dp1".into(), "nal-dp2".into()], &[], &[])
        .await
        .unwrap();
    db.add_group_packages(
        "{G1}",
        &["PS100001".into()],
        &[target("PS100001", "dp1"), target("PS100001", "dp2")],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(db.group_members().await.unwrap().len(), 2);
    assert_eq!(db.group_packages().await.unwrap().len(), 1);
    assert_eq!(db.package_dps().await.unwrap().len(), 2);

    // A failing transaction changes nothing: the second target names an unknown DP.
    let bad = db
        .add_group_packages(
            "{G1}",
            &["PS100002".into()],
            &[target("PS100002", "dp1"), target("PS100002", "ghost")],
            &[],
        )
        .await;
    assert!(bad.is_err());
    assert_eq!(db.group_packages().await.unwrap().len(), 1, "nothing half-applied");
    assert_eq!(db.package_dps().await.unwrap().len(), 2);

    // Targets carry the package's current version (0 here).
    assert!(db.package_dps().await.unwrap().iter().all(|r| r.target_version == 0));
    // One DP is being removed: a new version must not bring it back.
    let removing = TargetChange {
        package_id: "PS100001".into(),
        nal_path: "nal-dp2".into(),
        expect_seq: None,
        state: 4,
        time: t(4),
        message: "removing".into(),
    };
    // A change decided on a job the row is no longer at changes nothing.
    let stale = TargetChange {
        expect_seq: Some(999),
        ..removing.clone()
    };
    assert!(!db.set_states(&[stale], &[]).await.unwrap());
    assert_eq!(db.package_dp("PS100001", "nal-dp2").await.unwrap().unwrap().state, 1);
    assert!(db.set_states(&[removing], &[]).await.unwrap());

    // A new version retargets every other DP of the package.
    let v3 = NewVersion {
        package_id: "PS100001".into(),
        previous_version: 0,
        source_version: 3,
        manifest_hash: "ab".repeat(32),
        package_size_kb: 1234,
        time: t(5),
        action_in_progress: 1,
        dp_state: 1,
        dp_state_if_installed: 7,
        dp_message: "version 3 queued".into(),
        message_id: 2357,
        message_state: 2,
        severity: 0x4000_0000,
    };
    assert!(db.record_version(&v3).await.unwrap());
    // The same change again finds the version moved on and changes nothing.
    assert!(
        !db.record_version(&NewVersion {
            source_version: 4,
            ..v3.clone()
        })
        .await
        .unwrap()
    );
    let p = db.package("PS100001").await.unwrap().unwrap();
    assert_eq!(
        (p.source_version, p.package_size, p.source_date.as_deref()),
        (3, 1234, Some(t(5).as_str()))
    );
    let dp1 = db.package_dp("PS100001", "nal-dp1").await.unwrap().unwrap();
    assert_eq!((dp1.target_version, dp1.last_message.as_str()), (3, "version 3 queued"));
    let dp2 = db.package_dp("PS100001", "nal-dp2").await.unwrap().unwrap();
    assert_eq!((dp2.state, dp2.target_version), (4, 0), "the removal stands");
    // Leases: one owner at a time; an expired lease is taken over and its old owner loses it;
    // a site restarting ends the leases of its earlier run.
    let l = Lease {
        package_id: "PS100001".into(),
        nal_path: "nal-dp1".into(),
        job_seq: dp1.job_seq,
        state: dp1.state,
        attempts: dp1.attempts,
        owner: "site-a:1".into(),
        until: t(20),
    };
    assert!(db.claim(&l, &t(10)).await.unwrap());
    // The site's figures: dp1's row (pending) has a job running, dp2's (removal pending) waits.
    let kib: i64 = db.packages().await.unwrap().iter().map(|p| p.package_size).sum();
    let s = db.summary(&t(11)).await.unwrap();
    let expected = Summary {
        packages: 2,
        dps: 2,
        sites: 1,
        targeted: 2,
        installed: 0,
        in_progress: 2,
        retrying: 0,
        failed: 0,
        package_kib: kib,
        jobs_running: 1,
        own_in_progress: 2,
        running_in_progress: 1,
    };
    assert_eq!(s, expected);
    assert_eq!(s.jobs_queued(), 1);
    // Once the lease has expired, nothing runs.
    let later = db.summary(&t(30)).await.unwrap();
    assert_eq!((later.jobs_running, later.jobs_queued()), (0, 2));
    assert_eq!(db.dps_by_site().await.unwrap(), vec![("PS1".to_owned(), 2)]);
    // Needs attention: dp1's row waits (its package has no content, its DP never enrolled);
    // dp2's is being removed, which needs no one.
    let keys = db.attention_keys(20).await.unwrap();
    assert_eq!(
        keys,
        vec![("PS100001".to_owned(), "nal-dp1".to_owned(), "PS1".to_owned())]
    );
    assert!(db.attention_keys(0).await.unwrap().is_empty());
    let other = Lease {
        owner: "site-b:1".into(),
        ..l.clone()
    };
    assert!(!db.claim(&other, &t(10)).await.unwrap(), "a live lease holds");
    assert!(
        !db.claim(
            &Lease {
                job_seq: dp1.job_seq + 1,
                ..l.clone()
            },
            &t(10)
        )
        .await
        .unwrap(),
        "no lease on a job the row is not at"
    );
    assert!(
        !db.claim(
            &Lease {
                attempts: dp1.attempts + 1,
                ..l.clone()
            },
            &t(10)
        )
        .await
        .unwrap(),
        "no lease from a copy of the row older than its last outcome"
    );
    assert_eq!(
        db.leased_jobs(&t(10))
            .await
            .unwrap()
            .iter()
            .map(|j| j.0.as_str())
            .collect::<Vec<_>>(),
        vec!["PS100001"]
    );
    let progress = Progress {
        bytes: 5,
        done: 1,
        total: 2,
    };
    assert!(db.renew(&l, progress, "transferring: 1 of 2").await.unwrap());
    let row = db.package_dp("PS100001", "nal-dp1").await.unwrap().unwrap();
    assert_eq!((row.progress_bytes, row.progress_done, row.progress_total), (5, 1, 2));
    assert_eq!(row.last_message, "transferring: 1 of 2");
    assert!(!db.renew(&other, Progress::default(), "").await.unwrap());
    assert!(
        db.claim(&other, &t(21)).await.unwrap(),
        "an expired lease is taken over"
    );
    assert!(!db.renew(&l, progress, "").await.unwrap(), "the old owner lost it");
    assert_eq!(db.release_stale_leases("site-b:", "site-b:2").await.unwrap(), 1);
    assert!(db.leased_jobs(&t(10)).await.unwrap().is_empty());

    let msgs = db.statuses().await.unwrap();
    assert_eq!(msgs.len(), 1, "one status message, for the retargeted DP only");
    assert_eq!(msgs[0].description, "version 3 queued (dp1)");

    // Status messages get increasing ids.
    let s = NewStatus {
        package_id: "PS100001".into(),
        nal_path: "nal-dp1".into(),
        site_code: "PS1".into(),
        message_id: 2330,
        message_state: 1,
        severity: 0x4000_0000,
        description: "done".into(),
        bytes_transferred: 42,
        time: t(7),
    };
    let i1 = db.add_status(&s).await.unwrap();
    let i2 = db.add_status(&s).await.unwrap();
    assert!(i2 > i1);
    assert_eq!(db.statuses().await.unwrap().len(), 3);
    // Retention: by age, then by count (the newest are kept).
    assert_eq!(
        db.prune_statuses(&t(6), 100).await.unwrap(),
        1,
        "the message from t(5) is older than t(6)"
    );
    // The count is per site: this site's (its code in the settings) and each site below.
    assert_eq!(
        db.prune_statuses(&t(0), 1).await.unwrap(),
        0,
        "messages of a site neither this one (PS2) nor below: only their age prunes them"
    );
    db.set_setting("site_code", "PS1").await.unwrap();
    assert_eq!(db.prune_statuses(&t(0), 1).await.unwrap(), 1);
    let left = db.statuses().await.unwrap();
    assert_eq!((left.len(), left[0].id), (1, i2));
    db.set_setting("site_code", "PS2").await.unwrap();

    // Tokens: found by hash until revoked.
    let tok = TokenRow {
        id: "t1".into(),
        name: "admin".into(),
        role: "FullAdministrator".into(),
        created_at: t(0),
        revoked_at: None,
    };
    db.insert_token(&tok, "h1").await.unwrap();
    assert_eq!(db.token_by_hash("h1").await.unwrap(), Some(tok.clone()));
    assert!(db.revoke_token("t1", &t(9)).await.unwrap());
    assert_eq!(db.token_by_hash("h1").await.unwrap(), None);
    assert!(!db.revoke_token("t1", &t(9)).await.unwrap());

    // Deleting a DP takes its assignments and memberships; deleting a package its statuses.
    assert!(db.delete_dp("nal-dp2").await.unwrap());
    assert_eq!(db.package_dps().await.unwrap().len(), 1);
    assert_eq!(db.group_members().await.unwrap().len(), 1);
    assert!(db.delete_package("PS100001").await.unwrap());
    assert!(db.package_dps().await.unwrap().is_empty());
    assert!(db.statuses().await.unwrap().is_empty());
    assert!(db.group_packages().await.unwrap().is_empty());
    // Deleted PackageIDs are not handed out again.
    assert_eq!(db.next_counter("package", 1).await.unwrap(), 3);

    // A package being deleted is hidden and takes no new target, checked in the write itself;
    // with no row left it is ready to go, and goes only while no row refers to it.
    db.insert_package(&package("PS100003")).await.unwrap();
    assert!(db.begin_package_delete("PS100003", &[], &[]).await.unwrap());
    assert!(
        !db.begin_package_delete("PS100003", &[], &[]).await.unwrap(),
        "marked once"
    );
    assert!(matches!(
        db.target(&[target("PS100003", "dp1")], &[]).await,
        Err(DbError::Deleting(_))
    ));
    assert!(db.package("PS100003").await.unwrap().is_none());
    assert_eq!(db.package_deleting("PS100003").await.unwrap(), Some(true));
    assert_eq!(db.deleted_packages_done().await.unwrap(), vec!["PS100003".to_owned()]);
    assert!(db.deleting_rows_left().await.unwrap().is_empty());
    assert!(db.delete_package_if_unused("PS100003").await.unwrap());
    assert_eq!(db.package_deleting("PS100003").await.unwrap(), None);

    hierarchy(&db).await;
    change_feed(&db).await;
    // Refreshing the planner's statistics works on every engine (a no-op where automatic).
    db.optimize().await.unwrap();
    db.optimize().await.unwrap();
}

fn reported(p: &str, nal: &str, state: i64, target: i64, installed: i64) -> ReportedRow {
    ReportedRow {
        package_id: p.into(),
        nal_path: nal.into(),
        site_code: "SE1".into(),
        state,
        target_version: target,
        installed_version: installed,
        attempts: 0,
        next_attempt_at: None,
        last_copied: None,
        summary_date: t(5),
        last_message: format!("state {state}"),
        progress_bytes: 0,
        progress_done: 0,
        progress_total: 0,
    }
}

/// Child sites, their reports, intents and pull sources.
async fn hierarchy(db: &Db) {
    let child = SiteRow {
        site_code: "PR1".into(),
        site_name: "PR1".into(),
        parent_code: "PS1".into(),
        via_site: "PR1".into(),
        url: None,
        enrollment_token_hash: Some("tok".into()),
        credential_hash: None,
        cert_sha256: None,
        status_seq: 0,
        rate_bytes_per_sec: 0,
        applied_seq: 0,
        last_report_at: None,
        created_at: t(0),
    };
    db.insert_site(&child).await.unwrap();
    assert!(matches!(db.insert_site(&child).await, Err(DbError::Conflict(_))));
    // Enrollment: the token once; the same credential again.
    assert!(db.enroll_site("tok", "cred", "http://c", None).await.unwrap().is_some());
    assert!(
        db.enroll_site("tok", "other", "http://c", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(db.enroll_site("x", "cred", "http://c", None).await.unwrap().is_some());
    // Once issued a certificate, the credential alone no longer enrolls it again.
    let certified = db
        .enroll_site("x", "cred", "https://c", Some("fp"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(certified.cert_sha256.as_deref(), Some("fp"));
    assert!(db.enroll_site("x", "cred", "http://c", None).await.unwrap().is_none());
    assert_eq!(
        db.site_by_credential("cred")
            .await
            .unwrap()
            .unwrap()
            .cert_sha256
            .as_deref(),
        Some("fp")
    );
    assert_eq!(db.site_by_credential("cred").await.unwrap().unwrap().site_code, "PR1");

    let mut p = package("PS100009");
    p.source_version = 1;
    db.insert_package(&p).await.unwrap();
    let nal = "nal-far".to_owned();
    let report = |applied: i64, rows: Vec<ReportedRow>| Report {
        statuses: vec![],
        applied_seq: applied,
        seq: 0,
        base: None,
        removed: vec![],
        sites: vec![ReportedSite {
            site_code: "SE1".into(),
            site_name: "SE1".into(),
            parent_code: "PR1".into(),
            url: None,
            default_name: false,
        }],
        dps: vec![ReportedDp {
            nal_path: nal.clone(),
            name: "far".into(),
            site_code: "SE1".into(),
            description: String::new(),
            is_pull: 0,
            url: None,
            sources: Vec::new(),
            settings: Default::default(),
        }],
        rows,
    };
    db.apply_report("PR1", Some("PS1"), &t(5), &report(0, vec![]))
        .await
        .unwrap();
    let far = db.dp(&nal).await.unwrap().unwrap();
    assert_eq!(far.via_site.as_deref(), Some("PR1"));
    assert_eq!(db.sites().await.unwrap().len(), 2);

    // An action on a row below stamps an intent; own DPs' rows get none.
    let mut tg = target("PS100009", "far");
    tg.site_code = "SE1".into();
    db.target(&[tg], &[]).await.unwrap();
    let intents = db.intents_for("PR1", 0).await.unwrap();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].intent, "target");
    let seq = intents[0].intent_seq;
    assert!(db.intents_for("PR1", seq).await.unwrap().is_empty());
    assert!(db.intents_for("PR2", 0).await.unwrap().is_empty());
    // Mirrors are never due work, nor finished as "unenrolled" removals.
    assert!(db.due_work(&t(9)).await.unwrap().is_empty());
    // A report written before the child applied the intent keeps the row's state here.
    db.apply_report(
        "PR1",
        Some("PS1"),
        &t(6),
        &report(seq - 1, vec![reported("PS100009", &nal, 0, 0, 0)]),
    )
    .await
    .unwrap();
    assert_eq!(db.package_dp("PS100009", &nal).await.unwrap().unwrap().state, 1);
    // Once applied, the child's state is taken.
    db.apply_report(
        "PR1",
        Some("PS1"),
        &t(7),
        &report(seq, vec![reported("PS100009", &nal, 0, 1, 1)]),
    )
    .await
    .unwrap();
    let r = db.package_dp("PS100009", &nal).await.unwrap().unwrap();
    assert_eq!((r.state, r.installed_version), (0, 1));
    // A removal: the row stays until the child reports it gone.
    let rm = TargetChange {
        package_id: "PS100009".into(),
        nal_path: nal.clone(),
        expect_seq: None,
        state: 4,
        time: t(8),
        message: "removal queued".into(),
    };
    assert!(db.set_states(&[rm], &[]).await.unwrap());
    assert_eq!(db.finish_unenrolled_removals().await.unwrap(), 0);
    let rm_seq = db.intents_for("PR1", seq).await.unwrap()[0].intent_seq;
    db.apply_report("PR1", Some("PS1"), &t(8), &report(seq, vec![]))
        .await
        .unwrap();
    assert_eq!(db.package_dp("PS100009", &nal).await.unwrap().unwrap().state, 4);
    db.apply_report("PR1", Some("PS1"), &t(9), &report(rm_seq, vec![]))
        .await
        .unwrap();
    assert!(db.package_dp("PS100009", &nal).await.unwrap().is_none());

    // A late report (older applied_seq, no row) neither deletes a row with a newer intent nor
    // moves the child's applied mark back.
    let mut tg = target("PS100009", "far");
    tg.site_code = "SE1".into();
    db.target(&[tg], &[]).await.unwrap();
    db.apply_report("PR1", Some("PS1"), &t(9), &report(rm_seq, vec![]))
        .await
        .unwrap();
    assert!(db.package_dp("PS100009", &nal).await.unwrap().is_some());
    assert_eq!(db.site("PR1").await.unwrap().unwrap().applied_seq, rm_seq);
    // A child reporting this site's own code as below it is not believed.
    let mut bad = report(rm_seq, vec![]);
    bad.sites.push(ReportedSite {
        site_code: "PS1".into(),
        site_name: "impostor".into(),
        parent_code: "PR1".into(),
        url: None,
        default_name: false,
    });
    db.apply_report("PR1", Some("PS1"), &t(9), &bad).await.unwrap();
    assert!(db.site("PS1").await.unwrap().is_none());

    // Pull sources replace each other whole.
    db.insert_dp(&dp("src"), &[]).await.unwrap();
    db.insert_dp(&dp("pull"), &[]).await.unwrap();
    let src = |n: &str, r: i64| PullSourceRow {
        nal_path: "nal-pull".into(),
        source_nal: format!("nal-{n}"),
        rank: r,
    };
    db.set_pull_sources("nal-pull", &[src("src", 2)]).await.unwrap();
    assert_eq!(db.pull_sources().await.unwrap(), vec![src("src", 2)]);
    db.set_pull_sources("nal-pull", &[]).await.unwrap();
    assert!(db.pull_sources().await.unwrap().is_empty());

    // A package owned below (at SE1) is asked up from PR1 once a DP outside PR1's subtree is
    // targeted with it, and no longer once its version came up.
    let mut below = package("SE100001");
    below.source_site = "SE1".into();
    below.source_version = 2;
    below.manifest_hash = Some("ab".repeat(32));
    db.upsert_package_from_below(&below).await.unwrap();
    let wanted = |via: &'static str| {
        let db = db.clone();
        async move {
            db.wanted_from_below(via)
                .await
                .unwrap()
                .into_iter()
                .map(|p| p.package_id)
                .collect::<Vec<_>>()
        }
    };
    let mut tg = target("SE100001", "far");
    tg.site_code = "SE1".into();
    db.target(&[tg], &[]).await.unwrap();
    assert!(
        wanted("PR1").await.is_empty(),
        "a DP of the owner's subtree gets it from there"
    );
    db.target(&[target("SE100001", "src")], &[]).await.unwrap();
    assert_eq!(wanted("PR1").await, ["SE100001"], "a DP of this site needs it here");
    assert!(
        wanted("PR2").await.is_empty(),
        "asked only of the child it is owned under"
    );
    let came_up = |version: i64, state: i64| pkgdist_db::SiteContentRow {
        package_id: "SE100001".into(),
        version,
        state,
        bytes_received: 0,
        chunks_fetched: 0,
        chunks_total: 0,
        attempts: 0,
        message: String::new(),
        updated_at: t(9),
    };
    db.put_site_content(&came_up(1, 0)).await.unwrap();
    db.put_site_content(&came_up(2, 1)).await.unwrap();
    assert_eq!(
        wanted("PR1").await,
        ["SE100001"],
        "an older version, or one on its way, is not it"
    );
    db.put_site_content(&came_up(2, 0)).await.unwrap();
    assert!(wanted("PR1").await.is_empty(), "the current version is here");

    // Forgetting the child forgets everything below it.
    assert!(db.delete_site("PR1").await.unwrap());
    assert!(db.dp(&nal).await.unwrap().is_none());
    assert!(db.sites().await.unwrap().is_empty());
}

/// The change feed (migration 0007): every write of a reported column and every removal is
/// numbered in order; a parent takes changes only onto a copy complete up to their base.
async fn change_feed(db: &Db) {
    // Numbers move with writes, in order.
    let start = db.change_seq().await.unwrap();
    let epoch = db.package_epoch().await.unwrap();
    db.insert_package(&package("PS10000F")).await.unwrap();
    let after_insert = db.package_epoch().await.unwrap();
    assert!(after_insert > epoch, "a new package moves the metadata version");
    db.set_schedule_checked("PS10000F", &t(3)).await.unwrap();
    assert_eq!(db.package_epoch().await.unwrap(), after_insert, "bookkeeping does not");
    assert!(
        db.update_package_fields("PS10000F", &[PackageField::Text(PackageText::Name, "n".into())])
            .await
            .unwrap()
    );
    assert!(db.package_epoch().await.unwrap() > after_insert);
    db.insert_dp(&dp("feed1"), &[]).await.unwrap();
    db.insert_dp(&dp("feed2"), &[]).await.unwrap();
    db.target(&[target("PS10000F", "feed1"), target("PS10000F", "feed2")], &[])
        .await
        .unwrap();
    let rows = db.rows_changed_since(start).await.unwrap();
    assert_eq!(rows.len(), 2);
    // (On PostgreSQL the rows of one transaction share a number; on SQLite each has its own.)
    let mid = db.change_seq().await.unwrap();
    assert!(mid > start);
    assert!(
        db.rows_changed_since(mid).await.unwrap().is_empty(),
        "nothing after the last number"
    );
    // A state change is a change; a lease is not.
    let change = TargetChange {
        package_id: "PS10000F".into(),
        nal_path: "nal-feed1".into(),
        expect_seq: None,
        state: 0,
        time: t(4),
        message: "installed".into(),
    };
    assert!(db.set_states(&[change], &[]).await.unwrap());
    let changed = db.rows_changed_since(mid).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!((changed[0].nal_path.as_str(), changed[0].state), ("nal-feed1", 0));
    let after_state = db.change_seq().await.unwrap();
    // A removal is numbered; touching a row that is not here numbers a removal too.
    db.delete_dp("nal-feed2").await.unwrap();
    db.touch_row("PS10000F", "nal-nowhere").await.unwrap();
    let removed = db.rows_removed_since(after_state).await.unwrap();
    assert_eq!(
        removed,
        vec![
            ("PS10000F".to_owned(), "nal-feed2".to_owned()),
            ("PS10000F".to_owned(), "nal-nowhere".to_owned())
        ]
    );
    // Touching a row that is here numbers it as changed.
    let before_touch = db.change_seq().await.unwrap();
    db.touch_row("PS10000F", "nal-feed1").await.unwrap();
    assert_eq!(db.rows_changed_since(before_touch).await.unwrap().len(), 1);
    assert!(db.prune_row_removals(before_touch).await.unwrap() >= 2);
    assert!(db.rows_removed_since(0).await.unwrap().is_empty());

    // At a parent: changes onto a copy that is not at their base are refused, unapplied.
    let child = SiteRow {
        site_code: "PR7".into(),
        site_name: "PR7".into(),
        parent_code: "PS1".into(),
        via_site: "PR7".into(),
        url: None,
        enrollment_token_hash: None,
        credential_hash: Some("cred7".into()),
        cert_sha256: None,
        status_seq: 0,
        rate_bytes_per_sec: 0,
        applied_seq: 0,
        last_report_at: None,
        created_at: t(0),
    };
    db.insert_site(&child).await.unwrap();
    let nal = "nal-seven".to_owned();
    let report = |base: Option<i64>, seq: i64, rows: Vec<ReportedRow>, removed: Vec<ReportedRemoval>| Report {
        statuses: vec![],
        applied_seq: 0,
        seq,
        base,
        sites: vec![],
        dps: vec![ReportedDp {
            nal_path: nal.clone(),
            name: "seven".into(),
            site_code: "PR7".into(),
            description: String::new(),
            is_pull: 0,
            url: None,
            sources: Vec::new(),
            settings: Default::default(),
        }],
        rows,
        removed,
    };
    let row = |state: i64| reported("PS10000F", &nal, state, 1, 0);
    assert_eq!(
        db.apply_report("PR7", Some("PS1"), &t(5), &report(Some(0), 3, vec![row(2)], vec![]))
            .await
            .unwrap(),
        ReportApplied::Stale { have: -1 }
    );
    assert!(
        db.package_dp("PS10000F", &nal).await.unwrap().is_none(),
        "nothing applied"
    );
    // Whole, then changes after it.
    let whole = report(None, 3, vec![row(2)], vec![]);
    assert_eq!(
        db.apply_report("PR7", Some("PS1"), &t(5), &whole).await.unwrap(),
        ReportApplied::Applied
    );
    assert_eq!(db.package_dp("PS10000F", &nal).await.unwrap().unwrap().state, 2);
    let delta = report(Some(3), 5, vec![row(0)], vec![]);
    assert_eq!(
        db.apply_report("PR7", Some("PS1"), &t(6), &delta).await.unwrap(),
        ReportApplied::Applied
    );
    assert_eq!(db.package_dp("PS10000F", &nal).await.unwrap().unwrap().state, 0);
    // A delta with no rows keeps the rows it does not name (a whole report would drop them).
    let quiet = report(Some(5), 6, vec![], vec![]);
    db.apply_report("PR7", Some("PS1"), &t(7), &quiet).await.unwrap();
    assert!(db.package_dp("PS10000F", &nal).await.unwrap().is_some());
    // A replayed (stale) delta is refused.
    assert_eq!(
        db.apply_report("PR7", Some("PS1"), &t(7), &delta).await.unwrap(),
        ReportApplied::Stale { have: 6 }
    );
    // A removal reported removes.
    let gone = ReportedRemoval {
        package_id: "PS10000F".into(),
        nal_path: nal.clone(),
    };
    db.apply_report("PR7", Some("PS1"), &t(8), &report(Some(6), 7, vec![], vec![gone]))
        .await
        .unwrap();
    assert!(db.package_dp("PS10000F", &nal).await.unwrap().is_none());
    assert!(db.delete_site("PR7").await.unwrap());
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = Db::sqlite_url(&dir.path().join("site.db"));
    suite(Db::connect(&url).await.unwrap()).await;
    // Reopening applies no migration twice and keeps the data.
    let db = Db::connect(&url).await.unwrap();
    assert_eq!(db.setting("site_code").await.unwrap().as_deref(), Some("PS2"));
}

#[tokio::test]
async fn postgres() {
    let pg = pkgdist_testkit::postgres::TempPostgres::start().unwrap();
    suite(Db::connect(&pg.url()).await.unwrap()).await;
    let db = Db::connect(&pg.url()).await.unwrap();
    assert_eq!(db.setting("site_code").await.unwrap().as_deref(), Some("PS2"));
}
