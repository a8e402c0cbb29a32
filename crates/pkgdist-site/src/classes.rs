//! How each class of the API is read: one entry per class in [`reader`], the one table that
//! says where its instances come from.
//!
//! - Classes over the big tables (packages, DPs, groups, package-on-DP rows, status messages)
//!   are SQL views (`pkgdist_db::View`): every property is an SQL expression over the rows,
//!   computed ones included (group sync state, per-site counts, percentages), so `$filter`,
//!   `$orderby`, `$top` and `$skip` run in the database and a request reads only what it
//!   returns. GET by key is one lookup on the key's columns.
//! - Properties that are lists (a pull DP's sources) are filled in afterwards, for the
//!   instances returned only.
//! - A few small classes (the site hierarchy, the settings, the static-method class) are
//!   computed in memory and queried with the reference evaluator (`odata::Query::apply`),
//!   whose semantics the SQL translation reproduces exactly.
//!
//! Computed properties are never stored, so they cannot disagree with the rows they summarize.

use pkgdist_core::classes::{DpState, MessageState, PackageClass};
use pkgdist_core::errors::ErrorKind;
use pkgdist_core::odata::Query;
use pkgdist_db::view::{boolean, int, text};
use pkgdist_db::{View, ViewError};
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

/// A class of the API, named once: every place that treats classes differently (reading,
/// creating, changing, deleting, methods) matches on this, exhaustively, never on a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassId {
    /// `SMS_Package`, `SMS_DriverPackage` and the other package classes.
    Package(PackageClass),
    /// `SMS_PackageBaseclass`: every package, read-only.
    PackageBase,
    DistributionPointInfo,
    /// `SMS_DistributionPoint`: one package on one DP.
    DistributionPoint,
    Group,
    GroupMembers,
    GroupContent,
    DistPointsSummarizer,
    DetailSummarizer,
    RootSummarizer,
    DpStatusInfo,
    ObjectContentInfo,
    GroupStatusDetails,
    DpStatus,
    Audit,
    ScheduleMethods,
    Identification,
    Site,
    SiteContent,
    Settings,
    AdminToken,
}

impl ClassId {
    const NAMED: [(&'static str, ClassId); 20] = [
        ("SMS_PackageBaseclass", ClassId::PackageBase),
        ("SMS_DistributionPointInfo", ClassId::DistributionPointInfo),
        ("SMS_DistributionPoint", ClassId::DistributionPoint),
        ("SMS_DistributionPointGroup", ClassId::Group),
        ("SMS_DPGroupMembers", ClassId::GroupMembers),
        ("SMS_DPGroupContentInfo", ClassId::GroupContent),
        ("SMS_PackageStatusDistPointsSummarizer", ClassId::DistPointsSummarizer),
        ("SMS_PackageStatusDetailSummarizer", ClassId::DetailSummarizer),
        ("SMS_PackageStatusRootSummarizer", ClassId::RootSummarizer),
        ("SMS_DPStatusInfo", ClassId::DpStatusInfo),
        ("SMS_ObjectContentInfo", ClassId::ObjectContentInfo),
        ("SMS_DPGroupDistributionStatusDetails", ClassId::GroupStatusDetails),
        ("SMS_DistributionDPStatus", ClassId::DpStatus),
        ("SMS_StatusMessage", ClassId::Audit),
        ("SMS_ScheduleMethods", ClassId::ScheduleMethods),
        ("SMS_Identification", ClassId::Identification),
        ("SMS_Site", ClassId::Site),
        ("PKGDIST_SiteContent", ClassId::SiteContent),
        ("PKGDIST_DistributionSettings", ClassId::Settings),
        ("PKGDIST_AdminToken", ClassId::AdminToken),
    ];

    /// The class with this (catalog) name.
    pub fn of(name: &str) -> Option<Self> {
        PackageClass::from_class_name(name)
            .map(ClassId::Package)
            .or_else(|| Self::NAMED.iter().find(|(n, _)| *n == name).map(|(_, c)| *c))
    }

    /// The catalog name.
    pub fn name(self) -> &'static str {
        match self {
            ClassId::Package(pc) => pc.class_name(),
            other => Self::NAMED.iter().find(|(_, c)| *c == other).map_or("", |(n, _)| n),
        }
    }
}

/// Where a class's instances come from.
enum Reader {
    /// An SQL view; `fill` adds list-valued properties to the instances read.
    Sql(View, Option<Fill>),
    /// Computed in memory (small classes only).
    Memory,
}

#[derive(Debug, Clone, Copy)]
enum Fill {
    PullSources,
}

/// `CASE` over `package_type` giving the class's `ObjectTypeID`.
fn object_type_id(column: &str) -> String {
    let arms: String = PackageClass::ALL
        .iter()
        .map(|c| format!(" WHEN {} THEN {}", c.package_type(), c.object_type_id()))
        .collect();
    // A type this version does not know reads as a regular package, as everywhere else.
    format!(
        "CASE {column}{arms} ELSE {} END",
        PackageClass::Package.object_type_id()
    )
}

const INSTALLED: u32 = DpState::Installed.code();

fn packages(package_type: Option<u32>) -> View {
    View {
        from: "packages p".into(),
        // A package being deleted is hidden (its rows show REMOVAL_* until its DPs drop it).
        base: Some(package_type.map_or_else(
            || "p.deleting = 0".to_owned(),
            |t| {
                let of_type = if t == PackageClass::Package.package_type() {
                    // Regular packages, and any type this version does not know.
                    let others: Vec<String> = PackageClass::ALL
                        .iter()
                        .filter(|c| **c != PackageClass::Package)
                        .map(|c| c.package_type().to_string())
                        .collect();
                    format!("p.package_type NOT IN ({})", others.join(", "))
                } else {
                    format!("p.package_type = {t}")
                };
                format!("p.deleting = 0 AND {of_type}")
            },
        )),
        columns: vec![
            text("PackageID", "p.package_id").upper(),
            text("Name", "p.name"),
            text("Version", "p.version"),
            text("Manufacturer", "p.manufacturer"),
            text("Language", "p.language"),
            text("Description", "p.description"),
            text("MIFFilename", "''"),
            text("MIFName", "''"),
            text("MIFPublisher", "''"),
            text("MIFVersion", "''"),
            text("PkgSourcePath", "p.pkg_source_path"),
            int("PkgSourceFlag", "p.pkg_source_flag"),
            int("SourceVersion", "p.source_version"),
            text("SourceDate", "p.source_date").nullable(),
            text("LastRefreshTime", "p.last_refresh_time").nullable(),
            int("PackageSize", "p.package_size"),
            int("PkgFlags", "p.pkg_flags"),
            int("Priority", "p.priority"),
            // The last action (1 update after a refresh) only while DPs are still getting it:
            // 0 once every row has settled (the kept counts, migration 0008: one row).
            int(
                "ActionInProgress",
                "CASE WHEN EXISTS (SELECT 1 FROM package_state_counts c WHERE c.package_id = p.package_id
                    AND c.in_progress + c.retrying > 0) THEN p.action_in_progress ELSE 0 END",
            ),
            text("SourceSite", "p.source_site").upper(),
            text("RefreshSchedule", "p.refresh_schedule"),
            int("PackageType", "p.package_type"),
            text("ManifestHash", "p.manifest_hash").nullable(),
        ],
        order: vec!["PackageID"],
    }
}

fn distribution_points() -> View {
    View {
        from: "distribution_points d".into(),
        base: None,
        columns: vec![
            text("NALPath", "d.nal_path"),
            text("Name", "d.name"),
            text("ServerName", "d.name"),
            text("SiteCode", "d.site_code").upper(),
            text("Description", "d.description"),
            boolean("IsPullDP", "d.is_pull"),
            int("Priority", "d.priority"),
            int(
                "GroupCount",
                "(SELECT COUNT(*) FROM dp_group_members m WHERE m.nal_path = d.nal_path)",
            ),
            text("Url", "d.url").nullable(),
            // A DP below enrolled with its own site, which reported where it is.
            boolean(
                "Enrolled",
                "CASE WHEN (d.via_site IS NULL AND d.credential_hash IS NOT NULL)
                    OR (d.via_site IS NOT NULL AND d.url IS NOT NULL) THEN 1 ELSE 0 END",
            ),
            boolean("PreStagingAllowed", "d.prestaging"),
            boolean("RepairDamagedContent", "d.repair_damaged"),
            text("ValidationSchedule", "d.validation_schedule"),
            int("RateLimitMode", "d.rate_mode"),
            int("RateLimitBytesPerSecond", "d.rate_bytes_per_sec"),
            int("PulseBlockSizeKB", "d.pulse_block_kb"),
            int("PulseDelaySeconds", "d.pulse_delay_secs"),
            text("HourlyPercentages", "d.hourly_percent"),
            text("AvailabilitySchedule", "d.availability"),
            int("ThroughputKBps", "d.throughput_kbps").nullable(),
        ],
        order: vec!["Name"],
    }
}

/// A package is in sync on a DP when it is INSTALLED there at the package's current version;
/// a group's package is out of sync when fewer than all members hold it so. The database keeps
/// the count per group and package (`group_package_sync`, by triggers: migration 0006), so a
/// group costs one row per package, not one lookup per package and member.
fn groups() -> View {
    let members = "g.member_count";
    let out_of_sync =
        format!("(SELECT COUNT(*) FROM group_package_sync s WHERE s.group_id = g.group_id AND s.in_sync < {members})");
    View {
        from: "dp_groups g".into(),
        base: None,
        columns: vec![
            text("GroupID", "g.group_id"),
            text("Name", "g.name"),
            text("Description", "g.description"),
            int("MemberCount", members),
            boolean("HasMember", format!("CASE WHEN {members} > 0 THEN 1 ELSE 0 END")),
            int(
                "ContentCount",
                "(SELECT COUNT(*) FROM dp_group_packages c WHERE c.group_id = g.group_id)",
            ),
            boolean(
                "ContentInSync",
                format!("CASE WHEN {out_of_sync} = 0 THEN 1 ELSE 0 END"),
            ),
            int("OutOfSyncContentCount", out_of_sync),
            text("SourceSite", "g.source_site").upper(),
            text("CreatedOn", "g.created_on"),
            text("ModifiedOn", "g.modified_on"),
        ],
        order: vec!["Name"],
    }
}

fn group_members() -> View {
    View {
        from: "dp_group_members m".into(),
        base: None,
        columns: vec![text("GroupID", "m.group_id"), text("DPNALPath", "m.nal_path")],
        order: vec!["GroupID", "DPNALPath"],
    }
}

fn group_content() -> View {
    View {
        from: "dp_group_packages gp JOIN packages p ON p.package_id = gp.package_id".into(),
        base: None,
        columns: vec![
            text("GroupID", "gp.group_id"),
            text("PackageID", "gp.package_id").upper(),
            text("Name", "p.name"),
            text("Description", "p.description"),
            text("ObjectID", "gp.package_id").upper(),
            int("ObjectType", "p.package_type"),
            int("ObjectTypeID", object_type_id("p.package_type")),
            int("SourceSize", "p.package_size"),
        ],
        order: vec!["GroupID", "PackageID"],
    }
}

/// The rows of packages on DPs, joined with their package.
const PACKAGE_DPS: &str = "package_dps r JOIN packages p ON p.package_id = r.package_id";

fn package_on_dp() -> View {
    let removal = DpState::RemovalPending.code();
    View {
        from: PACKAGE_DPS.into(),
        base: None,
        columns: vec![
            text("PackageID", "r.package_id").upper(),
            text("ServerNALPath", "r.nal_path"),
            text("SiteCode", "r.site_code").upper(),
            text("SourceSite", "p.source_site").upper(),
            boolean("RefreshNow", "0"),
            text("LastRefreshTime", "r.summary_date"),
            // ConfigMgr's Status: 1 installed, 2 pending install, 3 pending removal.
            int(
                "Status",
                format!("CASE WHEN r.state = {removal} THEN 3 WHEN r.installed_version > 0 THEN 1 ELSE 2 END"),
            ),
            int("PackageType", "p.package_type"),
            int("ObjectTypeID", object_type_id("p.package_type")),
        ],
        order: vec!["PackageID", "ServerNALPath"],
    }
}

/// A waiting row's message, saying why it waits when nothing will move it until someone acts:
/// a DP of this site that never enrolled (the distribution manager only sends to enrolled
/// DPs), or a package with no content yet; or while another site's content is on its way
/// here (from the parent, or up from a child), how far it has got. Computed when read, so it is right the moment the
/// cause goes away. (A DP outside its availability window is not said here: the window is
/// read in the site's time zone, which SQL does not know.)
fn waiting_message() -> String {
    let pending = [DpState::InstallPending.code(), DpState::ContentUpdating.code()];
    format!(
        "CASE WHEN r.state IN ({p0}, {p1}) AND (d.credential_hash IS NULL OR d.url IS NULL)
                AND d.site_code = (SELECT s.value FROM settings s WHERE s.key = 'site_code')
              THEN 'waiting: ' || d.name || ' has never enrolled with the site; start it with the enrollment token from `pkgdist dp add`'
              WHEN r.state IN ({p0}, {p1}) AND p.source_version = 0
              THEN 'waiting: the package has no content yet; set its PkgSourcePath and refresh it'
              WHEN r.state IN ({p0}, {p1}) AND d.via_site IS NULL
                AND p.source_site <> (SELECT s.value FROM settings s WHERE s.key = 'site_code')
                AND NOT EXISTS (SELECT 1 FROM site_content c WHERE c.package_id = r.package_id
                                  AND c.version = r.target_version AND c.state = 0)
              THEN 'waiting for the content to reach this site from site ' || p.source_site ||
                COALESCE(': ' || (SELECT NULLIF(c.message, '') FROM site_content c WHERE c.package_id = r.package_id
                                    AND c.version = r.target_version), '')
              ELSE r.last_message END",
        p0 = pending[0],
        p1 = pending[1]
    )
}

/// What a row waits for someone to do (`WaitsFor`): typed, for clients to act on (`status
/// --watch` ends when only such rows are left), where `LastMessage` says it in words.
fn waits_for() -> String {
    let pending = [DpState::InstallPending.code(), DpState::ContentUpdating.code()];
    format!(
        "CASE WHEN r.state IN ({p0}, {p1}) AND (d.credential_hash IS NULL OR d.url IS NULL)
                AND d.site_code = (SELECT s.value FROM settings s WHERE s.key = 'site_code')
              THEN 'Enrollment'
              WHEN r.state IN ({p0}, {p1}) AND p.source_version = 0 THEN 'Content'
              WHEN {prestage} THEN 'PrestagedContent'
              ELSE '' END",
        p0 = pending[0],
        p1 = pending[1],
        prestage = pkgdist_db::AWAITS_PRESTAGE_SQL,
    )
}

fn dist_points_summarizer(retry_count: u32) -> View {
    View {
        from: format!("{PACKAGE_DPS} JOIN distribution_points d ON d.nal_path = r.nal_path"),
        base: None,
        columns: vec![
            text("PackageID", "r.package_id").upper(),
            text("ServerNALPath", "r.nal_path"),
            text("SiteCode", "r.site_code").upper(),
            int("State", "r.state"),
            int("SourceVersion", "r.installed_version"),
            int("TargetVersion", "r.target_version"),
            text("LastCopied", "r.last_copied").nullable(),
            text("SummaryDate", "r.summary_date"),
            int("PackageType", "p.package_type"),
            int("Attempts", "r.attempts"),
            text("NextRetry", "r.next_attempt_at").nullable(),
            text("LastMessage", waiting_message()),
            text("WaitsFor", waits_for()),
            int(
                "RetriesRemaining",
                format!("CASE WHEN r.attempts < {retry_count} THEN {retry_count} - r.attempts ELSE 0 END"),
            ),
            int("BytesReceived", "r.progress_bytes"),
            int(
                "PercentComplete",
                format!(
                    "CASE WHEN r.state = {INSTALLED} THEN 100 WHEN r.progress_total > 0 THEN
                       (CASE WHEN r.progress_done < 0 THEN 0 WHEN r.progress_done > r.progress_total
                          THEN r.progress_total ELSE r.progress_done END) * 100 / r.progress_total
                     ELSE 0 END"
                ),
            ),
        ],
        order: vec!["PackageID", "ServerNALPath"],
    }
}

/// Counts per package and site, aggregated in the database.
fn detail_summarizer() -> View {
    let (retrying, failed) = (
        [DpState::InstallRetrying, DpState::RemovalRetrying],
        [DpState::InstallFailed, DpState::RemovalFailed],
    );
    let codes = |s: [DpState; 2]| format!("{}, {}", s[0].code(), s[1].code());
    View {
        from: format!(
            "(SELECT r.package_id, r.site_code, COUNT(*) AS targeted,
                SUM(CASE WHEN r.state = {INSTALLED} AND r.installed_version = p.source_version THEN 1 ELSE 0 END) AS installed,
                SUM(CASE WHEN r.state IN ({}) THEN 1 ELSE 0 END) AS retrying,
                SUM(CASE WHEN r.state IN ({}) THEN 1 ELSE 0 END) AS failed,
                MAX(r.summary_date) AS summary_date
              FROM {PACKAGE_DPS} GROUP BY r.package_id, r.site_code) x
             JOIN packages q ON q.package_id = x.package_id",
            codes(retrying),
            codes(failed)
        ),
        base: None,
        columns: vec![
            text("PackageID", "x.package_id").upper(),
            text("SiteCode", "x.site_code").upper(),
            text("Name", "q.name"),
            int("SourceVersion", "q.source_version"),
            int("Targeted", "x.targeted"),
            int("Installed", "CAST(x.installed AS BIGINT)"),
            int("Retrying", "CAST(x.retrying AS BIGINT)"),
            int("Failed", "CAST(x.failed AS BIGINT)"),
            text("SummaryDate", "x.summary_date").nullable(),
        ],
        order: vec!["PackageID", "SiteCode"],
    }
}

/// Per package, from the counts migration 0008's triggers keep: one row read per package.
fn root_summarizer() -> View {
    View {
        from: "packages q JOIN package_state_counts c ON c.package_id = q.package_id".into(),
        base: Some("q.deleting = 0".into()),
        columns: vec![
            text("PackageID", "q.package_id").upper(),
            text("Name", "q.name"),
            int("SourceVersion", "q.source_version"),
            text("SourceDate", "q.source_date").nullable(),
            text("SourceSite", "q.source_site").upper(),
            int("SourceSize", "q.package_size"),
            int("SourceCompressedSize", "q.package_size"),
            int("Targeted", "c.targeted"),
            int("Installed", "c.installed"),
            int("Retrying", "c.retrying"),
            int("Failed", "c.failed"),
        ],
        order: vec!["PackageID"],
    }
}

/// Rows of a kept count (`c`, migration 0008) in no kind of state it counts: 0 unless a
/// state is newer than the counts.
const UNKNOWN_OF_COUNTS: &str = "c.targeted - c.installed - c.in_progress - c.retrying - c.failed";

/// Per DP, from the counts migration 0008's triggers keep.
fn dp_status_info() -> View {
    View {
        from: "distribution_points d JOIN dp_state_counts c ON c.nal_path = d.nal_path".into(),
        base: None,
        columns: vec![
            text("NALPath", "d.nal_path"),
            text("Name", "d.name"),
            text("SiteCode", "d.site_code").upper(),
            boolean("IsPullDP", "d.is_pull"),
            boolean("IsPXE", "0"),
            boolean("IsMulticast", "0"),
            int("NumberInstalled", "c.installed"),
            int("NumberInProgress", "c.in_progress + c.retrying"),
            int("NumberErrors", "c.failed"),
            int("NumberUnknown", UNKNOWN_OF_COUNTS),
            int(
                "MessageState",
                format!(
                    "CASE WHEN c.failed > 0 THEN {} WHEN c.in_progress + c.retrying > 0 THEN {} ELSE {} END",
                    MessageState::Error as u32,
                    MessageState::InProgress as u32,
                    MessageState::Success as u32
                ),
            ),
            // Both over the index on (nal_path, id) (migration 0009): a count of the DP's
            // messages (at most the site's pruning cap in all), and one lookup for the latest.
            // The latest is found as `MAX(x.id + 0)` over the DP's entries of that index
            // (index only, no sort), then read by its key. Written `ORDER BY id DESC LIMIT 1`
            // (or a bare `MAX(id)`, which PostgreSQL rewrites so), PostgreSQL walked the
            // primary key backwards looking for the DP's messages: every message, for a DP
            // with none (10 s for 1,000 DPs in bench/scale at 10,000,000 rows).
            int(
                "MessageCount",
                "(SELECT COUNT(*) FROM status_messages s WHERE s.nal_path = d.nal_path)",
            ),
            text(
                "LastStatusTime",
                "(SELECT s.time FROM status_messages s WHERE s.id =
                    (SELECT MAX(x.id + 0) FROM status_messages x WHERE x.nal_path = d.nal_path))",
            )
            .nullable(),
            boolean(
                "IsDPMonEnabled",
                "CASE WHEN d.validation_schedule = '' THEN 0 ELSE 1 END",
            ),
        ],
        order: vec!["NALPath"],
    }
}

/// Per package, the console's Content Status: the counts migration 0008's triggers keep, in
/// `SMS_ObjectContentInfo`'s names.
fn object_content_info() -> View {
    View {
        from: "packages q JOIN package_state_counts c ON c.package_id = q.package_id".into(),
        base: Some("q.deleting = 0".into()),
        columns: vec![
            text("ObjectID", "q.package_id").upper(),
            text("PackageID", "q.package_id").upper(),
            text("SoftwareName", "q.name"),
            text("Description", "q.description"),
            int("ObjectType", "q.package_type"),
            int("ObjectTypeID", object_type_id("q.package_type")),
            int("SourceVersion", "q.source_version"),
            text("SourceSite", "q.source_site").upper(),
            int("SourceSize", "q.package_size"),
            text("DateCreated", "q.created_at"),
            text("LastUpdateDate", "q.source_date").nullable(),
            int("Targeted", "c.targeted"),
            int("NumberSuccess", "c.installed"),
            int("NumberInProgress", "c.in_progress + c.retrying"),
            int("NumberErrors", "c.failed"),
            int("NumberUnknown", UNKNOWN_OF_COUNTS),
        ],
        order: vec!["ObjectID"],
    }
}

/// Per group, package of the group and member DP: the row's state as a message state, and
/// the latest status message about the package on the DP (one lookup on the index of
/// migration 0009). A group's listing reads its packages times its members, no more.
fn group_status_details() -> View {
    let (installed, failed) = (
        DpState::Installed.code(),
        [DpState::InstallFailed.code(), DpState::RemovalFailed.code()],
    );
    View {
        from: "dp_group_packages gp
             JOIN dp_group_members m ON m.group_id = gp.group_id
             JOIN package_dps r ON r.package_id = gp.package_id AND r.nal_path = m.nal_path
             JOIN packages p ON p.package_id = r.package_id
             JOIN distribution_points d ON d.nal_path = r.nal_path
             LEFT JOIN status_messages s ON s.id = (SELECT MAX(x.id) FROM status_messages x
                 WHERE x.package_id = r.package_id AND x.nal_path = r.nal_path)"
            .into(),
        base: None,
        columns: vec![
            int("ID", "COALESCE(s.id, 0)"),
            text("GroupID", "gp.group_id"),
            text("PackageID", "r.package_id").upper(),
            text("ObjectID", "r.package_id").upper(),
            text("ContentName", "p.name"),
            int("ObjectType", "p.package_type"),
            int("ObjectTypeID", object_type_id("p.package_type")),
            text("DPName", "d.name"),
            text("DPNALPath", "r.nal_path"),
            text("SiteCode", "r.site_code").upper(),
            int(
                "MessageState",
                format!(
                    "CASE WHEN r.state = {installed} THEN {} WHEN r.state IN ({}, {}) THEN {} ELSE {} END",
                    MessageState::Success as u32,
                    failed[0],
                    failed[1],
                    MessageState::Error as u32,
                    MessageState::InProgress as u32
                ),
            ),
            int("MessageID", "COALESCE(s.message_id, 0)"),
            int("MessageSeverity", "COALESCE(s.severity, 0)"),
            int("MessageFullID", "COALESCE(s.severity + s.message_id, 0)"),
            int("StatusMsgID", "COALESCE(s.id, 0)"),
            text("StatusTime", "r.summary_date"),
            text("Description", "r.last_message"),
        ],
        order: vec!["GroupID", "PackageID", "DPNALPath"],
    }
}

fn dp_status() -> View {
    View {
        from: "status_messages m LEFT JOIN packages p ON p.package_id = m.package_id
               LEFT JOIN distribution_points d ON d.nal_path = m.nal_path"
            .into(),
        base: None,
        columns: vec![
            int("ID", "m.id"),
            text("PackageID", "m.package_id").upper(),
            text("ObjectID", "m.package_id").upper(),
            int(
                "ObjectTypeID",
                format!(
                    "CASE WHEN p.package_id IS NULL THEN NULL ELSE {} END",
                    object_type_id("p.package_type")
                ),
            )
            .nullable(),
            text("NalPath", "m.nal_path"),
            text("Name", "d.name").nullable(),
            text("SiteCode", "m.site_code").upper(),
            int("MessageID", "m.message_id"),
            int("MessageState", "m.message_state"),
            int("MessageSeverity", "m.severity"),
            text("LastUpdateDate", "m.time"),
            text("Description", "m.description"),
            int("BytesTransferred", "m.bytes_transferred"),
        ],
        order: vec!["ID"],
    }
}

fn site_content() -> View {
    View {
        from: "site_content c".into(),
        base: None,
        columns: vec![
            text("PackageID", "c.package_id").upper(),
            int("SourceVersion", "c.version"),
            int("State", "c.state"),
            int("BytesReceived", "c.bytes_received"),
            int("ChunksFetched", "c.chunks_fetched"),
            int("ChunksTotal", "c.chunks_total"),
            int("Attempts", "c.attempts"),
            text("Message", "c.message"),
            text("LastUpdateDate", "c.updated_at"),
        ],
        order: vec!["PackageID", "SourceVersion"],
    }
}

/// `SMS_StatusMessage`: the audit messages (`crate::audit`).
fn audit_messages() -> View {
    View {
        from: "audit_messages a".into(),
        base: None,
        columns: vec![
            int("RecordID", "a.id"),
            text("Component", "'SMS Provider'"),
            text("MachineName", "a.machine_name"),
            int("MessageID", "a.message_id"),
            int("MessageType", "768"),
            int("Severity", "1073741824"),
            text("SiteCode", "a.site_code").upper(),
            text("Time", "a.time"),
            text("TokenID", "a.token_id"),
            text("TokenName", "a.token_name"),
            text("HttpMethod", "a.http_method"),
            text("Target", "a.target"),
            int("HttpStatus", "a.status"),
            text("Description", "a.description"),
        ],
        order: vec!["RecordID"],
    }
}

fn tokens() -> View {
    View {
        from: "tokens t".into(),
        base: None,
        columns: vec![
            text("TokenID", "t.id"),
            text("Name", "t.name"),
            text("Role", "t.role"),
            text("CreatedOn", "t.created_at"),
            text("RevokedOn", "t.revoked_at").nullable(),
        ],
        order: vec!["CreatedOn", "TokenID"],
    }
}

/// The one table of classes: where each class's instances come from (`retry_count`: the
/// distribution setting `RetriesRemaining` counts down from).
fn reader(retry_count: u32, class: ClassId) -> Reader {
    let sql = |v: View| Reader::Sql(v, None);
    match class {
        ClassId::Package(pc) => sql(packages(Some(pc.package_type()))),
        ClassId::PackageBase => sql(packages(None)),
        ClassId::DistributionPointInfo => Reader::Sql(distribution_points(), Some(Fill::PullSources)),
        ClassId::Group => sql(groups()),
        ClassId::GroupMembers => sql(group_members()),
        ClassId::GroupContent => sql(group_content()),
        ClassId::DistributionPoint => sql(package_on_dp()),
        ClassId::DistPointsSummarizer => sql(dist_points_summarizer(retry_count)),
        ClassId::DetailSummarizer => sql(detail_summarizer()),
        ClassId::RootSummarizer => sql(root_summarizer()),
        ClassId::DpStatusInfo => sql(dp_status_info()),
        ClassId::ObjectContentInfo => sql(object_content_info()),
        ClassId::GroupStatusDetails => sql(group_status_details()),
        ClassId::DpStatus => sql(dp_status()),
        ClassId::Audit => sql(audit_messages()),
        ClassId::SiteContent => sql(site_content()),
        ClassId::AdminToken => sql(tokens()),
        ClassId::Site | ClassId::Settings | ClassId::ScheduleMethods | ClassId::Identification => Reader::Memory,
    }
}

/// The reader of the class named `class`.
fn reader_of(state: &AppState, class: &str) -> ApiResult<Reader> {
    ClassId::of(class)
        .map(|c| reader(state.dist().retry_count, c))
        .ok_or_else(|| unknown_class(class))
}

fn unknown_class(class: &str) -> ApiError {
    ApiError::new(ErrorKind::UnknownClass, format!("no class {class}"))
}

fn view_error(class: &str, e: ViewError) -> ApiError {
    match e {
        ViewError::NotQueryable(e) => ApiError::new(ErrorKind::MalformedQuery, format!("{e} (class {class})")),
        ViewError::Db(e) => e.into(),
    }
}

/// The instances of a class computed in memory.
async fn in_memory(state: &AppState, class: &str) -> ApiResult<Vec<Object>> {
    match ClassId::of(class) {
        Some(ClassId::Site) => crate::hierarchy::site_objects(state).await,
        Some(ClassId::Settings) => Ok(vec![settings_object(state)]),
        _ => Ok(Vec::new()),
    }
}

/// The instances of `class` that `query` selects.
pub async fn list(state: &AppState, class: &str, query: &Query) -> ApiResult<Vec<Object>> {
    match reader_of(state, class)? {
        Reader::Sql(view, None) => state.db.select(&view, query).await.map_err(|e| view_error(class, e)),
        Reader::Sql(view, Some(_))
            if query.select.as_ref().is_some_and(|s| {
                !s.iter()
                    .any(|p| p == "SourceDistributionPoints" || p == "SourceDPRanks")
            }) =>
        {
            // No list asked for: nothing to fill.
            state.db.select(&view, query).await.map_err(|e| view_error(class, e))
        }
        Reader::Sql(view, Some(fill)) => {
            // The lists are filled from the row's key and kind, so read whole rows and apply
            // `$select` after filling.
            let whole = Query {
                select: None,
                ..query.clone()
            };
            let mut rows = state.db.select(&view, &whole).await.map_err(|e| view_error(class, e))?;
            fill_lists(state, fill, &mut rows).await?;
            Ok(project(rows, query.select.as_deref()))
        }
        Reader::Memory => Ok(query.apply(in_memory(state, class).await?)),
    }
}

/// How many instances of `class` `query`'s filter selects: one `COUNT` for the SQL views.
pub async fn count(state: &AppState, class: &str, query: &Query) -> ApiResult<u64> {
    match reader_of(state, class)? {
        Reader::Sql(view, _) => state.db.count(&view, query).await.map_err(|e| view_error(class, e)),
        Reader::Memory => {
            let filter_only = Query {
                filter: query.filter.clone(),
                ..Query::default()
            };
            Ok(filter_only.apply(in_memory(state, class).await?).len() as u64)
        }
    }
}

/// The instances of `class` that `query` selects, streamed from the database when the class
/// is a plain SQL view (`None` for the others: read them with [`list`]).
pub fn stream(state: &AppState, class: &str, query: &Query) -> ApiResult<Option<pkgdist_db::view::RowStream>> {
    match reader_of(state, class)? {
        Reader::Sql(view, None) => state
            .db
            .select_stream(&view, query)
            .map(Some)
            .map_err(|e| view_error(class, e.into())),
        _ => Ok(None),
    }
}

/// The instance of `class` whose key properties are exactly `key`, if any.
pub async fn get(state: &AppState, class: &str, key: &[(&str, &str)]) -> ApiResult<Option<Object>> {
    match reader_of(state, class)? {
        Reader::Sql(view, fill) => {
            let mut rows = state
                .db
                .select_where(&view, &Query::default(), key)
                .await
                .map_err(|e| view_error(class, e))?;
            if let Some(fill) = fill {
                fill_lists(state, fill, &mut rows).await?;
            }
            Ok(rows.into_iter().next())
        }
        Reader::Memory => {
            let all = in_memory(state, class).await?;
            Ok(all.into_iter().find(|o| {
                key.iter().all(|(k, v)| {
                    o.get(*k).map(|x| match x {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }) == Some((*v).to_owned())
                })
            }))
        }
    }
}

/// [`get`] for an instance that must exist (it was just written).
pub async fn get_written(state: &AppState, class: &str, key: &[(&str, &str)]) -> ApiResult<Object> {
    get(state, class, key)
        .await?
        .ok_or_else(|| ApiError::internal(format!("{class} instance vanished")))
}

/// Adds the list-valued properties to whole instances.
async fn fill_lists(state: &AppState, fill: Fill, rows: &mut [Object]) -> ApiResult<()> {
    match fill {
        Fill::PullSources => {
            for row in rows.iter_mut() {
                // Only pull DPs have sources.
                let list = if row.get("IsPullDP") == Some(&Value::Bool(true)) {
                    let nal = row
                        .get("NALPath")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    state.db.pull_sources_of(&nal).await?
                } else {
                    Vec::new()
                };
                row.insert(
                    "SourceDistributionPoints".into(),
                    json!(list.iter().map(|p| p.source_nal.clone()).collect::<Vec<_>>()),
                );
                row.insert(
                    "SourceDPRanks".into(),
                    json!(list.iter().map(|p| p.rank).collect::<Vec<_>>()),
                );
            }
        }
    }
    Ok(())
}

/// `$select` on whole instances: the properties named, in that order.
fn project(rows: Vec<Object>, select: Option<&[String]>) -> Vec<Object> {
    let Some(select) = select else { return rows };
    rows.into_iter()
        .map(|mut r| {
            select
                .iter()
                .map(|p| (p.clone(), r.remove(p).unwrap_or(Value::Null)))
                .collect()
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use pkgdist_proto::catalog;

    /// Every property the catalog lists for a class is one its reader gives (a column of its
    /// view, or a filled list), and nothing else: the OpenAPI document, generated from the
    /// catalog, describes what the API answers.
    #[test]
    fn views_match_the_catalog() {
        for class in catalog::CLASSES {
            let id = super::ClassId::of(class.name).expect("every catalog class has an id");
            assert_eq!(id.name(), class.name);
            let super::Reader::Sql(view, _) = super::reader(2, id) else {
                continue;
            };
            let filled: &[&str] = if class.name == "SMS_DistributionPointInfo" {
                &["SourceDistributionPoints", "SourceDPRanks"]
            } else {
                &[]
            };
            // Write-only properties (a token's secret, an enrollment token) are answered once,
            // on create, and never read.
            let write_only = ["Token", "EnrollmentToken"];
            let mut from_catalog: Vec<&str> = class
                .props
                .iter()
                .map(|p| p.name)
                .filter(|p| !write_only.contains(p))
                .collect();
            let mut from_view: Vec<&str> = view
                .columns
                .iter()
                .map(|c| c.prop)
                .chain(filled.iter().copied())
                .collect();
            from_catalog.sort_unstable();
            from_view.sort_unstable();
            assert_eq!(from_view, from_catalog, "{}", class.name);
            // What may come back null is what the catalog (and so the OpenAPI document)
            // says may.
            for c in &view.columns {
                let p = class.prop(c.prop).expect("a property of the class");
                assert_eq!(p.nullable, c.nullable, "{}.{} nullable", class.name, c.prop);
            }
        }
    }
}
