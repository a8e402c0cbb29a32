//! Packages: create (snapshotting the source as version 1), change, refresh (a new version of
//! the source, sent to every DP that has the package), delete, and distribute to DPs.
//!
//! Only the package's owner (its SourceSite) creates versions, changes or deletes it; a copy
//! held because a parent site owns it changes only through the site link.

use std::path::Path;

use pkgdist_content::{ContentError, SnapshotOptions};
use pkgdist_core::classes::{DpState, MessageState, PackageClass, nal_site, source_flag};
use pkgdist_core::dpstate::Action;
use pkgdist_core::{ContentId, PackageId, schedule};
use pkgdist_db::{DpRow, NewStatus, NewVersion, PackageField, PackageNumber, PackageRow, PackageText};

use super::rows::{self, action_state, dp_map, retarget};
use super::{Invalid, OpError, Raced, Refusal, SourceProblem, Thing};
use crate::now;
use crate::state::AppState;

/// A package as an administrator creates it.
#[derive(Debug, Clone)]
pub struct NewPackage {
    pub class: PackageClass,
    pub name: String,
    pub version: String,
    pub manufacturer: String,
    pub language: String,
    pub description: String,
    /// Empty: no source.
    pub source_path: String,
    /// `None`: STORAGE_DIRECT with a source path, STORAGE_NO_SOURCE without.
    pub source_flag: Option<i64>,
    pub pkg_flags: i64,
    pub priority: i64,
    /// Empty: none.
    pub refresh_schedule: String,
}

/// Who asked for a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `RefreshPkgSource`: always a new version, as in ConfigMgr.
    Method,
    /// The package's RefreshSchedule: a new version only if the source changed.
    Schedule,
}

/// What a refresh recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// The package's SourceVersion now.
    pub version: u32,
    /// A scheduled refresh found the source as it was: no version was recorded.
    pub unchanged: bool,
}

/// Most tokens a RefreshSchedule or ValidationSchedule may hold, as in ConfigMgr.
const MAX_SCHEDULE_TOKENS: usize = 15;

/// Message of a scheduled refresh that found nothing new (ConfigMgr's "package processed").
const MSG_UNCHANGED: i64 = 2301;

/// Checks an interval string given for property `param`.
pub(crate) fn check_schedule(text: &str, param: &'static str) -> Result<(), OpError> {
    let tokens = schedule::read_from_string(text).map_err(|e| OpError::invalid(param, format!("{param}: {e}")))?;
    if tokens.len() > MAX_SCHEDULE_TOKENS {
        return Err(OpError::invalid(
            param,
            format!(
                "{param} has {} tokens; at most {MAX_SCHEDULE_TOKENS} are allowed",
                tokens.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a package row as it will be written.
fn check_package(p: &PackageRow) -> Result<(), OpError> {
    if p.name.is_empty() {
        return Err(OpError::invalid("Name", "Name cannot be empty"));
    }
    if !p.refresh_schedule.is_empty() {
        check_schedule(&p.refresh_schedule, "RefreshSchedule")?;
        if p.pkg_source_flag != i64::from(source_flag::STORAGE_DIRECT) {
            return Err(OpError::invalid(
                "RefreshSchedule",
                "a RefreshSchedule needs PkgSourceFlag 2 (STORAGE_DIRECT) and a PkgSourcePath",
            ));
        }
    }
    if !(1..=3).contains(&p.priority) {
        return Err(OpError::invalid(
            "Priority",
            "Priority must be 1 (high), 2 (normal) or 3 (low)",
        ));
    }
    if !(0..=4).contains(&p.pkg_source_flag) {
        return Err(OpError::invalid(
            "PkgSourceFlag",
            "PkgSourceFlag must be 0 to 4 (2 = STORAGE_DIRECT)",
        ));
    }
    if !p.pkg_source_path.is_empty() && !Path::new(&p.pkg_source_path).is_absolute() {
        return Err(OpError::invalid(
            "PkgSourcePath",
            "PkgSourcePath must be an absolute path on the site server",
        ));
    }
    Ok(())
}

/// Checks the source folder exists, is readable and is inside the allowed folders before
/// anything is recorded. (The snapshot checks the folder it opens again: this is for a clear
/// answer when the path is set, not the guard.)
fn check_source(state: &AppState, path: &str) -> Result<(), OpError> {
    let problem = match std::fs::read_dir(path) {
        Ok(_) => return check_allowed(state, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SourceProblem::Missing,
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => SourceProblem::NotAFolder,
        Err(e) => SourceProblem::Unreadable(format!("{e}; check its permissions")),
    };
    Err(OpError::Source {
        path: path.to_owned(),
        problem,
    })
}

/// Refuses a change to a package owned by another site: only the owner reads its source and
/// records versions (ConfigMgr's SourceSite).
pub(crate) fn check_owned(state: &AppState, p: &PackageRow, verb: &'static str) -> Result<(), OpError> {
    if p.source_site == state.site_code.as_str() {
        return Ok(());
    }
    Err(OpError::refused(
        &p.package_id,
        Refusal::OwnedElsewhere {
            owner: p.source_site.clone(),
            verb,
        },
    ))
}

/// The package `id`, or [`OpError::NotFound`].
pub(crate) async fn package(state: &AppState, id: &str) -> Result<PackageRow, OpError> {
    state
        .db
        .package(id)
        .await?
        .ok_or_else(|| OpError::not_found(Thing::Package, id))
}

/// What a snapshot recorded.
struct Snapshotted {
    manifest: String,
    size_kb: i64,
    /// Identical to the previous version.
    unchanged: bool,
}

/// Snapshots `source` as `target` on a blocking thread.
async fn snapshot(
    state: &AppState,
    source: &str,
    target: ContentId,
    previous: Option<ContentId>,
) -> Result<Snapshotted, OpError> {
    let lib = state.library.clone();
    let src = source.to_owned();
    let roots = state.source_roots.clone();
    let private = state.private.clone();
    // Seen by `pkgdist package create/refresh` (a progress bar) until the snapshot ends.
    let running = state.snapshots.begin(&target.package.to_string());
    let progress = running.progress.clone();
    let out = tokio::task::spawn_blocking(move || {
        lib.snapshot(
            Path::new(&src),
            target,
            &SnapshotOptions {
                previous,
                allowed_roots: roots.as_deref(),
                private: &private,
                progress: Some(&*progress),
                ..Default::default()
            },
        )
    })
    .await
    .map_err(|e| OpError::Internal(format!("the snapshot of {target} stopped: {e}")))?;
    match out {
        Ok(o) => Ok(Snapshotted {
            manifest: o.manifest_id.to_hex(),
            size_kb: i64::try_from(o.stats.bytes.div_ceil(1024)).unwrap_or(i64::MAX),
            unchanged: o.unchanged,
        }),
        Err(ContentError::Source { path, reason }) => Err(OpError::Source {
            path: path.display().to_string(),
            problem: SourceProblem::Unreadable(reason),
        }),
        Err(e @ (ContentError::SourcePrivate { .. } | ContentError::SourceNotAllowed { .. })) => {
            Err(placed_wrong(source, e))
        }
        Err(source) => Err(OpError::Library {
            what: format!("the content library could not record {target}"),
            source,
        }),
    }
}

/// Creates a package; with a source, its first version is snapshotted before the package is
/// recorded (SourceVersion 1, as in ConfigMgr).
pub async fn create(state: &AppState, new: NewPackage) -> Result<PackageRow, OpError> {
    let path = new.source_path.trim().to_owned();
    let flag = new.source_flag.unwrap_or(if path.is_empty() {
        i64::from(source_flag::STORAGE_NO_SOURCE)
    } else {
        i64::from(source_flag::STORAGE_DIRECT)
    });
    let time = now();
    let mut row = PackageRow {
        package_id: String::new(),
        package_type: i64::from(new.class.package_type()),
        name: new.name.trim().to_owned(),
        version: new.version,
        manufacturer: new.manufacturer,
        language: new.language,
        description: new.description,
        pkg_source_path: path.clone(),
        pkg_source_flag: flag,
        source_version: 0,
        source_date: None,
        last_refresh_time: None,
        package_size: 0,
        pkg_flags: new.pkg_flags,
        priority: new.priority,
        action_in_progress: 0,
        source_site: state.site_code.to_string(),
        refresh_schedule: new.refresh_schedule.trim().to_owned(),
        schedule_checked_at: Some(time.clone()),
        manifest_hash: None,
        created_at: time,
    };
    check_package(&row)?;
    if flag == i64::from(source_flag::STORAGE_NO_SOURCE) && !path.is_empty() {
        return Err(OpError::invalid(
            "PkgSourceFlag",
            "PkgSourceFlag 1 (STORAGE_NO_SOURCE) means no source, but PkgSourcePath is set; use PkgSourceFlag 2",
        ));
    }
    if flag == i64::from(source_flag::STORAGE_DIRECT) && path.is_empty() {
        return Err(OpError::missing(
            "PkgSourcePath",
            "PkgSourceFlag 2 (STORAGE_DIRECT) needs a PkgSourcePath",
        ));
    }
    if !path.is_empty() {
        check_source(state, &path)?;
    }
    let serial = state.db.next_counter("package", 1).await?;
    let pid = u32::try_from(serial)
        .ok()
        .and_then(|s| PackageId::new(state.site_code, s).ok())
        .ok_or_else(|| OpError::Internal("this site has used all 1,048,575 PackageIDs".into()))?;
    row.package_id = pid.to_string();
    if !path.is_empty() {
        let target = ContentId {
            package: pid,
            version: 1,
        };
        let snap = snapshot(state, &path, target, None).await?;
        row.source_version = 1;
        row.manifest_hash = Some(snap.manifest);
        row.package_size = snap.size_kb;
        row.source_date = Some(now());
        row.last_refresh_time = row.source_date.clone();
    }
    state.db.insert_package(&row).await?;
    tracing::info!(package = %row.package_id, class = new.class.class_name(), "package created");
    Ok(row)
}

/// Refuses a source path outside `allowed-source-roots`, judged by where it really leads (the
/// path as given if it does not exist yet).
fn check_allowed(state: &AppState, path: &str) -> Result<(), OpError> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.into());
    pkgdist_content::check_place(&real, state.source_roots.as_deref(), &state.private)
        .map_err(|e| placed_wrong(path, e))
}

/// The operation's error for a source [`pkgdist_content::check_place`] refused, naming the
/// path as given; other content errors as the library's.
fn placed_wrong(path: &str, e: ContentError) -> OpError {
    let problem = match e {
        ContentError::SourcePrivate { private, .. } => SourceProblem::Private(private.display().to_string()),
        ContentError::SourceNotAllowed { roots, .. } => {
            SourceProblem::NotAllowed(roots.iter().map(|r| r.display().to_string()).collect())
        }
        source => {
            return OpError::Library {
                what: format!("checking where {path} is"),
                source,
            };
        }
    };
    OpError::Source {
        path: path.to_owned(),
        problem,
    }
}

/// Changes the given properties of package `id`: the package is validated as it will be,
/// then only those columns are written, so a concurrent change to another is not undone.
pub async fn update(state: &AppState, id: &str, fields: &[PackageField]) -> Result<(), OpError> {
    let mut p = package(state, id).await?;
    check_owned(state, &p, "changed")?;
    for f in fields {
        apply(&mut p, f);
    }
    check_package(&p)?;
    let new_source = fields
        .iter()
        .any(|f| matches!(f, PackageField::Text(PackageText::SourcePath, v) if !v.trim().is_empty()));
    if new_source {
        check_allowed(state, &p.pkg_source_path)?;
    }
    if !state.db.update_package_fields(id, fields).await? {
        return Err(OpError::not_found(Thing::Package, id));
    }
    Ok(())
}

/// A change applied to a row in memory (to validate the result before writing it).
fn apply(p: &mut PackageRow, f: &PackageField) {
    match f {
        PackageField::Text(t, v) => {
            let slot = match t {
                PackageText::Name => &mut p.name,
                PackageText::Version => &mut p.version,
                PackageText::Manufacturer => &mut p.manufacturer,
                PackageText::Language => &mut p.language,
                PackageText::Description => &mut p.description,
                PackageText::SourcePath => &mut p.pkg_source_path,
                PackageText::RefreshSchedule => &mut p.refresh_schedule,
                PackageText::ScheduleCheckedAt => {
                    p.schedule_checked_at = Some(v.clone());
                    return;
                }
            };
            *slot = v.clone();
        }
        PackageField::Number(n, v) => match n {
            PackageNumber::SourceFlag => p.pkg_source_flag = *v,
            PackageNumber::Flags => p.pkg_flags = *v,
            PackageNumber::Priority => p.priority = *v,
        },
    }
}

/// Re-reads a package's source into the library and records the new version, which every DP
/// holding the package is sent. With [`Trigger::Schedule`], an unchanged source records a
/// status message and nothing else.
pub async fn refresh(state: &AppState, id: &str, trigger: Trigger) -> Result<Refreshed, OpError> {
    let lock = state.refresh_lock(id);
    let _one_at_a_time = lock.lock().await;
    let p = package(state, id).await?;
    check_owned(state, &p, "refreshed")?;
    if p.pkg_source_path.is_empty() || p.pkg_source_flag == i64::from(source_flag::STORAGE_NO_SOURCE) {
        return Err(OpError::refused(id, Refusal::NoSource));
    }
    check_source(state, &p.pkg_source_path)?;
    let pid: PackageId = id
        .parse()
        .map_err(|e| OpError::Internal(format!("package {id} has a malformed ID: {e}")))?;
    let recorded =
        u32::try_from(p.source_version).map_err(|_| OpError::Internal(format!("package {id}: bad SourceVersion")))?;
    // A crash between recording content and recording the version leaves the library a version
    // ahead of the database; step past it rather than collide with it forever.
    let lib = state.library.clone();
    let in_library = tokio::task::spawn_blocking(move || lib.latest(pid))
        .await
        .map_err(|e| OpError::Internal(e.to_string()))?
        .map_err(|source| OpError::Library {
            what: "the content library cannot be read".into(),
            source,
        })?
        .map_or(0, |c| c.version);
    let version = recorded
        .max(in_library)
        .checked_add(1)
        .ok_or_else(|| OpError::refused(id, Refusal::VersionsExhausted))?;
    let previous = (recorded > 0).then_some(ContentId {
        package: pid,
        version: recorded,
    });
    let target = ContentId { package: pid, version };
    let snap = snapshot(state, &p.pkg_source_path, target, previous).await?;
    if trigger == Trigger::Schedule && snap.unchanged && recorded > 0 {
        // Nothing changed: no version, nothing sent. Forget the identical snapshot.
        let lib = state.library.clone();
        let released = tokio::task::spawn_blocking(move || lib.release(target)).await;
        if !matches!(released, Ok(Ok(_))) {
            tracing::warn!(content = %target, "could not release an unchanged scheduled snapshot");
        }
        let msg = NewStatus {
            package_id: id.to_owned(),
            nal_path: String::new(),
            site_code: state.site_code.to_string(),
            message_id: MSG_UNCHANGED,
            message_state: MessageState::Success as i64,
            severity: i64::from(MessageState::Success.severity()),
            description: format!(
                "scheduled refresh of {id}: the source has not changed since version {recorded}; nothing was sent"
            ),
            bytes_transferred: 0,
            time: now(),
        };
        state.db.add_status(&msg).await?;
        tracing::info!(package = %id, "scheduled refresh: source unchanged");
        return Ok(Refreshed {
            version: recorded,
            unchanged: true,
        });
    }
    let why = format!("{target} queued for distribution");
    let nv = new_version(
        id,
        p.source_version,
        i64::from(version),
        snap.manifest,
        snap.size_kb,
        &why,
    );
    if !state.db.record_version(&nv).await? {
        return Err(OpError::Conflict {
            object: id.to_owned(),
            what: Raced::Package,
        });
    }
    tracing::info!(content = %target, "source refreshed");
    Ok(Refreshed {
        version,
        unchanged: false,
    })
}

/// A new version of package `id` (from `previous`), retargeting its DPs with message `why`.
pub(crate) fn new_version(
    id: &str,
    previous: i64,
    version: i64,
    manifest_hash: String,
    size_kb: i64,
    why: &str,
) -> NewVersion {
    let in_progress = MessageState::InProgress;
    NewVersion {
        package_id: id.to_owned(),
        previous_version: previous,
        source_version: version,
        manifest_hash,
        package_size_kb: size_kb,
        time: now(),
        action_in_progress: i64::from(pkgdist_core::classes::action::UPDATE),
        dp_state: i64::from(action_state(false, Action::NewVersion)),
        dp_state_if_installed: i64::from(action_state(true, Action::NewVersion)),
        dp_message: why.to_owned(),
        message_id: super::rows::MSG_QUEUED,
        message_state: in_progress as i64,
        severity: i64::from(in_progress.severity()),
    }
}

/// Deletes package `id`, which this site owns. A package no DP holds goes at once; one that
/// DPs hold is deleted in two steps, so that no DP keeps serving content the site no longer
/// knows: now it is hidden from the package classes, taken out of its groups and refused as a
/// target (checked in every target's write, see `pkgdist_db`), and every DP row goes to
/// REMOVAL_PENDING; once the last DP has dropped it, the distribution manager deletes it for
/// good ([`finish_deletes`]). Deleting a package already being deleted retries its failed
/// removals (REMOVAL_FAILED), the one thing that can hold a delete up.
pub async fn delete(state: &AppState, id: &str) -> Result<(), OpError> {
    match state.db.package_deleting(id).await? {
        None => return Err(OpError::not_found(Thing::Package, id)),
        Some(true) => return retry_failed_removals(state, id).await,
        Some(false) => {}
    }
    let p = package(state, id).await?;
    check_owned(state, &p, "deleted")?;
    begin_delete(state, id).await
}

/// A package deleted at its owner, elsewhere in the hierarchy (the site link saw it go): it
/// goes here as a delete does, its content off this site's DPs first. Answers whether a
/// delete began (not for a package already being deleted, or gone).
pub(crate) async fn deleted_at_owner(state: &AppState, id: &str) -> Result<bool, OpError> {
    if state.db.package_deleting(id).await? != Some(false) {
        return Ok(false);
    }
    match begin_delete(state, id).await {
        Ok(()) => Ok(true),
        // Another delete (or the link's previous round) won the race: nothing left to do.
        Err(OpError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes package `id`, whoever owns it: at once if no DP has it, else once every DP it is
/// on has dropped its content (`finish_deletes`), hidden from lists meanwhile.
async fn begin_delete(state: &AppState, id: &str) -> Result<(), OpError> {
    // Not while its source is being refreshed (a new version would retarget its rows).
    let lock = state.refresh_lock(id);
    let _one_at_a_time = lock.lock().await;
    if state.db.delete_package_if_unused(id).await? {
        release_versions(state, id).await;
        return Ok(());
    }
    let rows = state.db.package_rows(id).await?;
    // Rows already on their way out stay as they are; a failed removal is tried again. A row
    // written after this read is moved by the distribution manager's next round.
    let removing = |st| matches!(st, Some(DpState::RemovalPending | DpState::RemovalRetrying));
    let pairs: Vec<(String, String)> = rows
        .iter()
        .filter(|r| !removing(r.dp_state()))
        .map(|r| (r.package_id.clone(), r.nal_path.clone()))
        .collect();
    let nals: Vec<String> = pairs.iter().map(|(_, n)| n.clone()).collect();
    let dps = dp_map(state, &nals).await?;
    let (changes, messages) = rows::changes(&dps, &pairs, DpState::RemovalPending, DELETING);
    if !state.db.begin_package_delete(id, &changes, &messages).await? {
        return Err(OpError::not_found(Thing::Package, id));
    }
    tracing::info!(package = %id, dps = rows.len(), "package being deleted: its DPs drop its content first");
    state.work.notify_one();
    Ok(())
}

/// Why the rows of a package being deleted are removed.
const DELETING: &str = "removal queued: the package is being deleted";

/// `delete` of a package already being deleted: its REMOVAL_FAILED rows are tried again.
async fn retry_failed_removals(state: &AppState, id: &str) -> Result<(), OpError> {
    let failed: Vec<(String, String)> = state
        .db
        .package_rows(id)
        .await?
        .into_iter()
        .filter(|r| r.dp_state() == Some(DpState::RemovalFailed))
        .map(|r| (r.package_id, r.nal_path))
        .collect();
    if !failed.is_empty() {
        rows::set_state(state, &failed, DpState::RemovalPending, DELETING).await?;
        state.work.notify_one();
    }
    Ok(())
}

/// The distribution manager's round for packages being deleted: rows that are not on their
/// way off their DP (written by a target that raced the delete, or reported by a child site)
/// are sent off, and packages no DP holds any more are deleted for good. It reads only
/// packages being deleted (a partial index, migration 0010).
pub(crate) async fn finish_deletes(state: &AppState) -> Result<usize, OpError> {
    let left = state.db.deleting_rows_left().await?;
    if !left.is_empty() {
        rows::set_state(state, &left, DpState::RemovalPending, DELETING).await?;
    }
    let done = state.db.deleted_packages_done().await?;
    for id in &done {
        forget(state, id).await?;
        tracing::info!(package = %id, "package deleted: no DP holds it any more");
    }
    Ok(done.len())
}

/// Deletes package `id` whoever owns it (the site link, for a package deleted above), and
/// releases its versions from the library.
pub(crate) async fn forget(state: &AppState, id: &str) -> Result<(), OpError> {
    // Not while its source is being refreshed.
    let lock = state.refresh_lock(id);
    let _one_at_a_time = lock.lock().await;
    state.db.delete_package(id).await?;
    release_versions(state, id).await;
    Ok(())
}

/// Releases a deleted package's versions from the library. The database is the truth: the
/// package is gone. Releasing lets garbage collection reclaim chunks no other package uses; if
/// that fails, the versions stay as unreferenced-by-the-site data and a warning says so.
async fn release_versions(state: &AppState, id: &str) {
    if let Ok(pid) = id.parse::<PackageId>() {
        let lib = state.library.clone();
        let released = tokio::task::spawn_blocking(move || -> Result<(), ContentError> {
            for v in lib.versions()?.into_iter().filter(|c| c.package == pid) {
                lib.release(v)?;
            }
            Ok(())
        })
        .await;
        if !matches!(released, Ok(Ok(()))) {
            tracing::warn!(package = %id, "deleted, but its content versions could not be released from the library");
        }
    }
}

/// One DP a package goes to: its NAL path and the site code the caller gave with it.
#[derive(Debug, Clone)]
pub struct DpTarget {
    pub site_code: String,
    pub nal_path: String,
}

/// Targets package `id` at DPs (AddDistributionPoints, or one `SMS_DistributionPoint`
/// created), checking each DP's site; one transaction for all of them.
pub async fn distribute(state: &AppState, id: &str, to: &[DpTarget]) -> Result<(), OpError> {
    let p = package(state, id).await?;
    let nals: Vec<String> = to.iter().map(|t| t.nal_path.clone()).collect();
    let known = dp_map(state, &nals).await?;
    let mut dps: Vec<&DpRow> = Vec::with_capacity(to.len());
    for t in to {
        let d = known
            .get(&t.nal_path)
            .ok_or_else(|| OpError::not_found(Thing::DistributionPoint, &t.nal_path))?;
        if t.site_code != d.site_code || nal_site(&t.nal_path) != Some(d.site_code.as_str()) {
            return Err(OpError::Invalid {
                kind: Invalid::SiteMismatch,
                param: "SiteCode",
                why: format!(
                    "SiteCode {} does not match the site of DP {} ({}); SiteCode must be the DP's own site",
                    t.site_code, d.name, d.site_code
                ),
            });
        }
        dps.push(d);
    }
    let pairs: Vec<(&PackageRow, &DpRow)> = dps.iter().map(|d| (&p, *d)).collect();
    retarget(state, &pairs, false, "queued for distribution").await
}

/// RefreshNow on one package-on-DP row: the current version is sent to the DP again.
pub async fn refresh_on_dp(state: &AppState, id: &str, nal: &str) -> Result<(), OpError> {
    let p = package(state, id).await?;
    let d = super::dps::dp(state, nal).await?;
    retarget(
        state,
        &[(&p, &d)],
        false,
        "RefreshNow: re-sending the current version to this DP",
    )
    .await
}
