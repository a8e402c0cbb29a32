//! The database as ConfigMgr objects: one JSON object per instance, property names as in the
//! catalog. Computed properties (group sync state, per-site counts) are derived here on every
//! read rather than stored, so they can never disagree with the rows they summarize.

use std::collections::{BTreeMap, HashMap};

use pkgdist_core::classes::{DpState, PackageClass};
use pkgdist_db::{Db, DpRow, GroupRow, PackageDpRow, PackageRow};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub type Object = Map<String, Value>;

pub(crate) fn obj(v: Value) -> Object {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Everything the classes are computed from, read once per request.
pub struct Snapshot {
    pub packages: Vec<PackageRow>,
    pub dps: Vec<DpRow>,
    pub groups: Vec<GroupRow>,
    pub members: Vec<(String, String)>,
    pub group_packages: Vec<(String, String)>,
    pub package_dps: Vec<PackageDpRow>,
    pub pull_sources: Vec<pkgdist_db::PullSourceRow>,
}

impl Snapshot {
    pub async fn load(db: &Db) -> ApiResult<Self> {
        Ok(Self {
            packages: db.packages().await?,
            dps: db.dps().await?,
            groups: db.groups().await?,
            members: db
                .group_members()
                .await?
                .into_iter()
                .map(|m| (m.group_id, m.nal_path))
                .collect(),
            group_packages: db
                .group_packages()
                .await?
                .into_iter()
                .map(|g| (g.group_id, g.package_id))
                .collect(),
            package_dps: db.package_dps().await?,
            pull_sources: db.pull_sources().await?,
        })
    }

    pub fn package(&self, id: &str) -> Option<&PackageRow> {
        self.packages.iter().find(|p| p.package_id == id)
    }

    pub fn dp(&self, nal: &str) -> Option<&DpRow> {
        self.dps.iter().find(|d| d.nal_path == nal)
    }

    pub fn members_of(&self, group: &str) -> Vec<&str> {
        self.members
            .iter()
            .filter(|(g, _)| g == group)
            .map(|(_, n)| n.as_str())
            .collect()
    }

    pub fn packages_of(&self, group: &str) -> Vec<&str> {
        self.group_packages
            .iter()
            .filter(|(g, _)| g == group)
            .map(|(_, p)| p.as_str())
            .collect()
    }

    pub fn package_dp(&self, package: &str, nal: &str) -> Option<&PackageDpRow> {
        self.package_dps
            .iter()
            .find(|r| r.package_id == package && r.nal_path == nal)
    }

    /// A package is in sync on a DP when it is INSTALLED there at the package's current version.
    fn in_sync(&self, package: &PackageRow, nal: &str) -> bool {
        self.package_dp(&package.package_id, nal).is_some_and(|r| {
            r.state == i64::from(DpState::Installed.code()) && r.installed_version == package.source_version
        })
    }
}

fn package_class(p: &PackageRow) -> PackageClass {
    u32::try_from(p.package_type)
        .ok()
        .and_then(PackageClass::from_package_type)
        .unwrap_or(PackageClass::Package)
}

pub fn package_object(p: &PackageRow) -> Object {
    obj(json!({
        "PackageID": p.package_id,
        "Name": p.name,
        "Version": p.version,
        "Manufacturer": p.manufacturer,
        "Language": p.language,
        "Description": p.description,
        "PkgSourcePath": p.pkg_source_path,
        "PkgSourceFlag": p.pkg_source_flag,
        "SourceVersion": p.source_version,
        "SourceDate": p.source_date,
        "LastRefreshTime": p.last_refresh_time,
        "PackageSize": p.package_size,
        "PkgFlags": p.pkg_flags,
        "Priority": p.priority,
        "ActionInProgress": p.action_in_progress,
        "SourceSite": p.source_site,
        "RefreshSchedule": p.refresh_schedule,
        "PackageType": p.package_type,
        "ManifestHash": p.manifest_hash,
    }))
}

pub fn token_object(t: &pkgdist_db::TokenRow) -> Object {
    obj(json!({"TokenID": t.id, "Name": t.name, "Role": t.role, "CreatedOn": t.created_at, "RevokedOn": t.revoked_at}))
}

pub fn dp_object(d: &DpRow, s: &Snapshot) -> Object {
    obj(json!({
        "NALPath": d.nal_path,
        "Name": d.name,
        "ServerName": d.name,
        "SiteCode": d.site_code,
        "Description": d.description,
        "IsPullDP": d.is_pull != 0,
        "SourceDistributionPoints": s.pull_sources.iter().filter(|p| p.nal_path == d.nal_path).map(|p| p.source_nal.clone()).collect::<Vec<_>>(),
        "SourceDPRanks": s.pull_sources.iter().filter(|p| p.nal_path == d.nal_path).map(|p| p.rank).collect::<Vec<_>>(),
        "Priority": d.priority,
        "GroupCount": s.members.iter().filter(|(_, n)| *n == d.nal_path).count(),
        "Url": d.url,
        "Enrolled": d.credential_hash.is_some(),
        "RepairDamagedContent": d.repair_damaged != 0,
        "ValidationSchedule": d.validation_schedule,
        "RateLimitMode": d.rate_mode,
        "RateLimitBytesPerSecond": d.rate_bytes_per_sec,
        "PulseBlockSizeKB": d.pulse_block_kb,
        "PulseDelaySeconds": d.pulse_delay_secs,
        "HourlyPercentages": d.hourly_percent,
        "AvailabilitySchedule": d.availability,
        "ThroughputKBps": d.throughput_kbps,
    }))
}

pub fn group_object(g: &GroupRow, s: &Snapshot) -> Object {
    let members = s.members_of(&g.group_id);
    let packages = s.packages_of(&g.group_id);
    let out_of_sync = packages
        .iter()
        .filter_map(|id| s.package(id))
        .filter(|p| !members.iter().all(|m| s.in_sync(p, m)))
        .count();
    obj(json!({
        "GroupID": g.group_id,
        "Name": g.name,
        "Description": g.description,
        "MemberCount": members.len(),
        "HasMember": !members.is_empty(),
        "ContentCount": packages.len(),
        "ContentInSync": out_of_sync == 0,
        "OutOfSyncContentCount": out_of_sync,
        "SourceSite": g.source_site,
        "CreatedOn": g.created_on,
        "ModifiedOn": g.modified_on,
    }))
}

fn package_dp_object(r: &PackageDpRow, s: &Snapshot) -> Object {
    let p = s.package(&r.package_id);
    obj(json!({
        "PackageID": r.package_id,
        "ServerNALPath": r.nal_path,
        "SiteCode": r.site_code,
        "SourceSite": p.map(|p| p.source_site.clone()),
        "RefreshNow": false,
        "LastRefreshTime": r.summary_date,
        "Status": if r.state == i64::from(DpState::RemovalPending.code()) { 3 } else if r.installed_version > 0 { 1 } else { 2 },
        "PackageType": p.map(|p| p.package_type),
        "ObjectTypeID": p.map(|p| package_class(p).object_type_id()),
    }))
}

pub fn settings_object(state: &AppState) -> Object {
    let d = state.dist();
    obj(json!({
        "SiteCode": state.site_code,
        "MaximumPackageCount": d.max_packages,
        "MaximumThreadsPerPackage": d.max_threads_per_package,
        "RetryCount": d.retry_count,
        "DelayBeforeRetryingMins": d.retry_delay_secs.div_ceil(60),
        "DelayBeforeRetryingSecs": d.retry_delay_secs,
    }))
}

fn summarizer_object(r: &PackageDpRow, s: &Snapshot, retry_count: u32) -> Object {
    let installed = r.state == i64::from(DpState::Installed.code());
    let percent = if installed {
        100
    } else if r.progress_total > 0 {
        (r.progress_done.clamp(0, r.progress_total) * 100) / r.progress_total
    } else {
        0
    };
    obj(json!({
        "PackageID": r.package_id,
        "ServerNALPath": r.nal_path,
        "SiteCode": r.site_code,
        "State": r.state,
        "SourceVersion": r.installed_version,
        "TargetVersion": r.target_version,
        "LastCopied": r.last_copied,
        "SummaryDate": r.summary_date,
        "PackageType": s.package(&r.package_id).map(|p| p.package_type),
        "Attempts": r.attempts,
        "NextRetry": r.next_attempt_at,
        "LastMessage": r.last_message,
        "RetriesRemaining": i64::from(retry_count).saturating_sub(r.attempts).max(0),
        "BytesReceived": r.progress_bytes,
        "PercentComplete": percent,
    }))
}

fn detail_objects(s: &Snapshot) -> Vec<Object> {
    let mut by: BTreeMap<(String, String), Vec<&PackageDpRow>> = BTreeMap::new();
    for r in &s.package_dps {
        by.entry((r.package_id.clone(), r.site_code.clone()))
            .or_default()
            .push(r);
    }
    by.into_iter()
        .filter_map(|((pkg, site), rows)| {
            let p = s.package(&pkg)?;
            let count = |f: &dyn Fn(&PackageDpRow) -> bool| rows.iter().filter(|r| f(r)).count();
            let code = |st: DpState| i64::from(st.code());
            Some(obj(json!({
                "PackageID": pkg,
                "SiteCode": site,
                "Name": p.name,
                "SourceVersion": p.source_version,
                "Targeted": rows.len(),
                "Installed": count(&|r| r.state == code(DpState::Installed) && r.installed_version == p.source_version),
                "Retrying": count(&|r| r.state == code(DpState::InstallRetrying) || r.state == code(DpState::RemovalRetrying)),
                "Failed": count(&|r| r.state == code(DpState::InstallFailed) || r.state == code(DpState::RemovalFailed)),
                "SummaryDate": rows.iter().map(|r| r.summary_date.clone()).max(),
            })))
        })
        .collect()
}

/// All instances of a class.
pub async fn instances(state: &AppState, class: &str) -> ApiResult<Vec<Object>> {
    let db = &state.db;
    if let Some(pc) = PackageClass::from_class_name(class) {
        let rows = db.packages().await?;
        return Ok(rows
            .iter()
            .filter(|p| package_class(p) == pc)
            .map(package_object)
            .collect());
    }
    match class {
        "SMS_PackageBaseclass" => Ok(db.packages().await?.iter().map(package_object).collect()),
        "SMS_ScheduleMethods" => Ok(Vec::new()),
        "SMS_Site" => crate::hierarchy::site_objects(state).await,
        "PKGDIST_SiteContent" => Ok(db
            .site_content()
            .await?
            .into_iter()
            .map(|c| {
                obj(json!({
                    "PackageID": c.package_id,
                    "SourceVersion": c.version,
                    "State": c.state,
                    "BytesReceived": c.bytes_received,
                    "ChunksFetched": c.chunks_fetched,
                    "ChunksTotal": c.chunks_total,
                    "Attempts": c.attempts,
                    "Message": c.message,
                    "LastUpdateDate": c.updated_at,
                }))
            })
            .collect()),
        "SMS_DistributionDPStatus" => {
            let dps: HashMap<String, String> = db.dps().await?.into_iter().map(|d| (d.nal_path, d.name)).collect();
            let types: HashMap<String, PackageRow> = db
                .packages()
                .await?
                .into_iter()
                .map(|p| (p.package_id.clone(), p))
                .collect();
            Ok(db
                .statuses()
                .await?
                .into_iter()
                .map(|m| {
                    obj(json!({
                        "ID": m.id,
                        "PackageID": m.package_id,
                        "ObjectID": m.package_id,
                        "ObjectTypeID": types.get(&m.package_id).map(|p| package_class(p).object_type_id()),
                        "NalPath": m.nal_path,
                        "Name": dps.get(&m.nal_path),
                        "SiteCode": m.site_code,
                        "MessageID": m.message_id,
                        "MessageState": m.message_state,
                        "MessageSeverity": m.severity,
                        "LastUpdateDate": m.time,
                        "Description": m.description,
                        "BytesTransferred": m.bytes_transferred,
                    }))
                })
                .collect())
        }
        "PKGDIST_AdminToken" => Ok(db.tokens().await?.iter().map(token_object).collect()),
        "PKGDIST_DistributionSettings" => Ok(vec![settings_object(state)]),
        _ => {
            let s = Snapshot::load(db).await?;
            Ok(match class {
                "SMS_DistributionPointInfo" => s.dps.iter().map(|d| dp_object(d, &s)).collect(),
                "SMS_DistributionPointGroup" => s.groups.iter().map(|g| group_object(g, &s)).collect(),
                "SMS_DPGroupMembers" => s
                    .members
                    .iter()
                    .map(|(g, n)| obj(json!({"GroupID": g, "DPNALPath": n})))
                    .collect(),
                "SMS_DPGroupContentInfo" => s
                    .group_packages
                    .iter()
                    .filter_map(|(g, id)| {
                        let p = s.package(id)?;
                        Some(obj(json!({
                            "GroupID": g,
                            "PackageID": id,
                            "Name": p.name,
                            "Description": p.description,
                            "ObjectID": id,
                            "ObjectType": p.package_type,
                            "ObjectTypeID": package_class(p).object_type_id(),
                            "SourceSize": p.package_size,
                        })))
                    })
                    .collect(),
                "SMS_DistributionPoint" => s.package_dps.iter().map(|r| package_dp_object(r, &s)).collect(),
                "SMS_PackageStatusDistPointsSummarizer" => {
                    let retries = state.dist().retry_count;
                    s.package_dps
                        .iter()
                        .map(|r| summarizer_object(r, &s, retries))
                        .collect()
                }
                "SMS_PackageStatusDetailSummarizer" => detail_objects(&s),
                _ => {
                    return Err(ApiError::new(
                        pkgdist_core::errors::ErrorKind::UnknownClass,
                        format!("no class {class}"),
                    ));
                }
            })
        }
    }
}
