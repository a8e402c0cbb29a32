//! Rows as stored. Column names and meanings follow the migrations; the site turns these into
//! ConfigMgr-shaped objects.

/// `packages`: one package (any package class).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PackageRow {
    pub package_id: String,
    pub package_type: i64,
    pub name: String,
    pub version: String,
    pub manufacturer: String,
    pub language: String,
    pub description: String,
    pub pkg_source_path: String,
    pub pkg_source_flag: i64,
    pub source_version: i64,
    pub source_date: Option<String>,
    pub last_refresh_time: Option<String>,
    /// In KB, as ConfigMgr reports it.
    pub package_size: i64,
    pub pkg_flags: i64,
    pub priority: i64,
    pub action_in_progress: i64,
    pub source_site: String,
    pub refresh_schedule: String,
    /// Occurrences of `refresh_schedule` up to this time have been handled.
    pub schedule_checked_at: Option<String>,
    /// The manifest of the current `source_version`.
    pub manifest_hash: Option<String>,
    pub created_at: String,
}

/// `distribution_points`: a DP server.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DpRow {
    pub nal_path: String,
    pub name: String,
    pub site_code: String,
    pub url: Option<String>,
    pub description: String,
    /// 0 or 1.
    pub is_pull: i64,
    pub priority: i64,
    pub enrollment_token_hash: Option<String>,
    pub credential_hash: Option<String>,
    /// SHA-256 of the certificate issued at enrollment over TLS: requests must present it.
    #[sqlx(default)]
    pub cert_sha256: Option<String>,
    pub created_at: String,
    /// 1: after a validation finds damage, the DP repairs it from its sources; 0: it only
    /// reports it.
    pub repair_damaged: i64,
    /// 1: the DP takes packages flagged DO_NOT_DOWNLOAD from prestaged files only
    /// (`PreStagingAllowed`).
    #[sqlx(default)]
    pub prestaging: i64,
    /// An interval string (several schedule tokens), `''` for none.
    pub validation_schedule: String,
    /// Occurrences of `validation_schedule` up to this time have been handled.
    pub validation_checked_at: Option<String>,
    /// How fast recent transfers to the DP went; `None` until measured.
    pub throughput_kbps: Option<i64>,
    /// Rate limit: 0 unlimited, 1 pulse, 2 a percentage of each hour, 3 bytes per second.
    pub rate_mode: i64,
    /// Mode 3: the most the site sends it per second.
    pub rate_bytes_per_sec: i64,
    /// Mode 1: blocks of this many KB, each followed by a pause of this many seconds.
    pub pulse_block_kb: i64,
    pub pulse_delay_secs: i64,
    /// Mode 2: 24 comma-separated percentages of each hour spent sending, local midnight first.
    pub hourly_percent: String,
    /// 168 digits, one per hour of the week (`pkgdist_core::availability`); `''` always open.
    pub availability: String,
    /// For a DP of a site below this one: the child site it is reached through. Such a DP is
    /// known from that child's reports, and only its own site sends it jobs.
    pub via_site: Option<String>,
}

impl DpRow {
    /// A pull DP (`IsPullDP`): it fetches from DPs of its site, not from the site.
    pub fn pulls(&self) -> bool {
        self.is_pull != 0
    }

    /// Validation repairs what it finds damaged (`RepairDamagedContent`).
    pub fn repairs_damaged(&self) -> bool {
        self.repair_damaged != 0
    }

    /// A new DP's row, with the default settings.
    pub fn new(nal_path: String, name: String, site_code: String, created_at: String) -> Self {
        DpRow {
            nal_path,
            name,
            site_code,
            url: None,
            description: String::new(),
            is_pull: 0,
            priority: 200,
            enrollment_token_hash: None,
            credential_hash: None,
            cert_sha256: None,
            created_at,
            repair_damaged: 1,
            prestaging: 0,
            validation_schedule: String::new(),
            validation_checked_at: None,
            throughput_kbps: None,
            rate_mode: 0,
            rate_bytes_per_sec: 0,
            pulse_block_kb: 0,
            pulse_delay_secs: 0,
            hourly_percent: String::new(),
            availability: String::new(),
            via_site: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupRow {
    pub group_id: String,
    pub name: String,
    pub description: String,
    pub source_site: String,
    pub created_on: String,
    pub modified_on: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupMemberRow {
    pub group_id: String,
    pub nal_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupPackageRow {
    pub group_id: String,
    pub package_id: String,
}

/// `package_dps`: one package on one DP.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PackageDpRow {
    pub package_id: String,
    pub nal_path: String,
    pub site_code: String,
    /// `SMS_PackageStatusDistPointsSummarizer.State`.
    pub state: i64,
    pub target_version: i64,
    pub installed_version: i64,
    /// 0 or 1: the next transfer re-sends and re-verifies everything.
    pub redistribute: i64,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_copied: Option<String>,
    pub summary_date: String,
    pub last_message: String,
    /// Bumped by every retarget or state change: the current job's sequence.
    pub job_seq: i64,
    /// Random, set when the row is created; with `job_seq` it names the job
    /// (`<PackageID>-<job_key>-<job_seq>`), so a row created again never reuses a job name.
    pub job_key: String,
    /// The worker following the current job, and until when its lease holds.
    pub lease_owner: Option<String>,
    pub lease_until: Option<String>,
    /// When the row got its current job: the queue's order within a priority.
    pub queued_at: Option<String>,
    /// What the DP last reported of the running job: bytes received, chunks done (received or
    /// already present) and chunks in all.
    pub progress_bytes: i64,
    pub progress_done: i64,
    pub progress_total: i64,
    /// On a row of a DP below this site: the order of the administrator's latest action on it
    /// among all such actions, and which action it was ([`Intent`]); the child site applies it.
    pub intent_seq: i64,
    pub intent: String,
}

/// What an administrator last did to a row of a DP below this site, for its own site to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Put the package on the DP at its current version (sending what the DP lacks).
    Target,
    /// The same, re-sending and re-verifying everything.
    Redistribute,
    Remove,
    Verify,
    Cancel,
}

impl PackageDpRow {
    /// The row's state (`None` for a code this version does not know).
    pub fn dp_state(&self) -> Option<pkgdist_core::classes::DpState> {
        pkgdist_core::classes::DpState::of_row(self.state)
    }

    /// The next install sends every file again and verifies it (ReDistributePackage).
    pub fn redistributes(&self) -> bool {
        self.redistribute != 0
    }
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Target => "target",
            Intent::Redistribute => "redistribute",
            Intent::Remove => "remove",
            Intent::Verify => "verify",
            Intent::Cancel => "cancel",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "target" => Intent::Target,
            "redistribute" => Intent::Redistribute,
            "remove" => Intent::Remove,
            "verify" => Intent::Verify,
            "cancel" => Intent::Cancel,
            _ => return None,
        })
    }
}

/// `sites`: a site below this one.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SiteRow {
    pub site_code: String,
    pub site_name: String,
    pub parent_code: String,
    /// The child of this site through which it is reached (its own code for a child).
    pub via_site: String,
    pub url: Option<String>,
    pub enrollment_token_hash: Option<String>,
    pub credential_hash: Option<String>,
    /// SHA-256 of the certificate issued at enrollment over TLS: requests must present it.
    #[sqlx(default)]
    pub cert_sha256: Option<String>,
    /// The child's status message IDs taken up to (a report carries the ones after).
    #[sqlx(default)]
    pub status_seq: i64,
    /// The most this site sends the child per second; 0 unlimited.
    pub rate_bytes_per_sec: i64,
    /// How far the child has applied this site's intents.
    pub applied_seq: i64,
    pub last_report_at: Option<String>,
    pub created_at: String,
}

/// `pull_sources`: one source DP of a pull DP.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PullSourceRow {
    pub nal_path: String,
    pub source_nal: String,
    pub rank: i64,
}

/// `site_content`: one version a child site replicated from its parent.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SiteContentRow {
    pub package_id: String,
    pub version: i64,
    /// 0 done, 1 fetching, 2 failed (retried).
    pub state: i64,
    pub bytes_received: i64,
    pub chunks_fetched: i64,
    pub chunks_total: i64,
    pub attempts: i64,
    pub message: String,
    pub updated_at: String,
}

/// A row of a DP below this site as its site reports it (state, versions, progress).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportedRow {
    pub package_id: String,
    pub nal_path: String,
    pub site_code: String,
    pub state: i64,
    pub target_version: i64,
    pub installed_version: i64,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_copied: Option<String>,
    pub summary_date: String,
    pub last_message: String,
    pub progress_bytes: i64,
    pub progress_done: i64,
    pub progress_total: i64,
}

/// SQL (over `package_dps r`, `distribution_points d`, `packages p`): the row waits for its
/// DP to import its target version from a prestaged file (its DP is enabled for prestaged
/// content, the package is flagged DO_NOT_DOWNLOAD, PkgFlags 0x01000000; install states
/// only). One text for the distribution manager's queue and the row's `WaitsFor`.
pub const AWAITS_PRESTAGE_SQL: &str = "d.prestaging = 1 AND (p.pkg_flags & 16777216) <> 0 AND r.state IN (1, 2, 7)
    AND r.prestaged_version < r.target_version";

/// A DP below this site as its site reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportedDp {
    pub nal_path: String,
    pub name: String,
    pub site_code: String,
    pub description: String,
    pub is_pull: i64,
    /// Where its site reaches it: set once it enrolled there (the top shows it enrolled).
    #[serde(default)]
    pub url: Option<String>,
    /// A pull DP's sources (NAL path, rank), lowest rank first.
    #[serde(default)]
    pub sources: Vec<(String, i64)>,
    /// Its settings, as its site holds them: shown above, acted on only by its own site.
    #[serde(default)]
    pub settings: ReportedDpSettings,
}

/// The settings of a DP below, as its site reports them (see [`ReportedDp`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ReportedDpSettings {
    pub priority: i64,
    pub repair_damaged: i64,
    pub prestaging: i64,
    pub validation_schedule: String,
    pub availability: String,
    pub rate_mode: i64,
    pub rate_bytes_per_sec: i64,
}

/// A site below this one as its parent's child reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportedSite {
    pub site_code: String,
    pub site_name: String,
    pub parent_code: String,
    pub url: Option<String>,
    /// The reporting site's own name is only the default (site.toml sets none): the name its
    /// parent gave it (`pkgdist site add --name`) stands.
    #[serde(default)]
    pub default_name: bool,
}

/// A row removed below this site, as its site reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportedRemoval {
    pub package_id: String,
    pub nal_path: String,
}

/// What a child site reports of everything below and at it: its sites and DPs whole (a few
/// hundred), and its rows either whole (`base` `None`: the parent replaces what it knew
/// through the child) or as the changes after change number `base` (the rows written and
/// removed since; the parent applies them only onto a copy complete up to `base`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The newest of this site's intents the child has applied.
    pub applied_seq: i64,
    /// The child's change number (migration 0007) this report is complete up to.
    #[serde(default)]
    pub seq: i64,
    #[serde(default)]
    pub base: Option<i64>,
    pub sites: Vec<ReportedSite>,
    pub dps: Vec<ReportedDp>,
    pub rows: Vec<ReportedRow>,
    #[serde(default)]
    pub removed: Vec<ReportedRemoval>,
    /// Status messages of the child's subtree after the parent's mark (`SyncResponse`), oldest
    /// first, a bounded batch per report.
    #[serde(default)]
    pub statuses: Vec<StatusRow>,
}

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportApplied {
    Applied,
    /// A report of changes after a base other than where this site's copy is (`have`; -1:
    /// none yet): nothing was applied, and the child should send a whole report.
    Stale {
        have: i64,
    },
}

/// A row with work due, its package's priority (1 high, 2 normal, 3 low) and its DP's
/// availability schedule.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WorkItem {
    #[sqlx(flatten)]
    pub row: PackageDpRow,
    pub priority: i64,
    pub availability: String,
    /// 1 for a pull DP (it fetches from its source DPs, outside the site's limits).
    pub is_pull: i64,
    /// 1 when the row's DP is a standard DP, or a pull DP one of whose sources holds the
    /// package INSTALLED at the row's target version or later.
    pub source_ready: i64,
    /// 1 when the row waits for prestaged content: its DP is enabled for it, the package is
    /// flagged DO_NOT_DOWNLOAD, and the DP has not imported the target version yet.
    pub awaits_prestage: i64,
}

impl WorkItem {
    /// The row's DP is a pull DP.
    pub fn pulls(&self) -> bool {
        self.is_pull != 0
    }

    /// A pull DP's row may start: one of its sources holds the version.
    pub fn source_ready(&self) -> bool {
        self.source_ready != 0
    }

    /// The row waits for its DP to import the target version from a prestaged file.
    pub fn awaits_prestage(&self) -> bool {
        self.awaits_prestage != 0
    }
}

/// Who holds a job, until when, and the job it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub package_id: String,
    pub nal_path: String,
    pub job_seq: i64,
    /// The row's state and attempts when it was read: a claim holds only if they are unchanged.
    pub state: i64,
    pub attempts: i64,
    pub owner: String,
    pub until: String,
}

/// A running job's progress, as the DP reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub bytes: i64,
    pub done: i64,
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct StatusRow {
    pub id: i64,
    pub package_id: String,
    pub nal_path: String,
    pub site_code: String,
    pub message_id: i64,
    pub message_state: i64,
    pub severity: i64,
    pub description: String,
    pub bytes_transferred: i64,
    pub time: String,
}

/// A token as listed (its hash never leaves the database).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A new source version of a package, and what every DP of it becomes.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub package_id: String,
    /// The version this one replaces; the change applies only if it is still current.
    pub previous_version: i64,
    pub source_version: i64,
    pub manifest_hash: String,
    pub package_size_kb: i64,
    pub time: String,
    pub action_in_progress: i64,
    /// The state of DPs with nothing installed yet, and of those holding an older version.
    pub dp_state: i64,
    pub dp_state_if_installed: i64,
    pub dp_message: String,
    /// The status message recorded for each retargeted DP (the DP's name is appended).
    pub message_id: i64,
    pub message_state: i64,
    pub severity: i64,
}

/// Target a package on a DP, at the package's current version.
#[derive(Debug, Clone)]
pub struct NewTarget {
    pub package_id: String,
    pub nal_path: String,
    pub site_code: String,
    /// The state when nothing is installed yet, and when an older version is.
    pub state: i64,
    pub state_if_installed: i64,
    pub redistribute: bool,
    pub time: String,
    pub message: String,
}

/// A state change of an existing package-on-DP row.
#[derive(Debug, Clone)]
pub struct TargetChange {
    pub package_id: String,
    pub nal_path: String,
    /// Apply only if the row is still at this job (`job_seq`); `None`: whatever it is at.
    pub expect_seq: Option<i64>,
    pub state: i64,
    pub time: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct NewStatus {
    pub package_id: String,
    pub nal_path: String,
    pub site_code: String,
    pub message_id: i64,
    pub message_state: i64,
    pub severity: i64,
    pub description: String,
    pub bytes_transferred: i64,
    pub time: String,
}

/// An administrator-editable column of `packages`, with its new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageField {
    Text(PackageText, String),
    Number(PackageNumber, i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageText {
    Name,
    Version,
    Manufacturer,
    Language,
    Description,
    SourcePath,
    RefreshSchedule,
    ScheduleCheckedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageNumber {
    SourceFlag,
    Flags,
    Priority,
}

impl PackageField {
    /// The column; the only names that ever reach the UPDATE statement.
    pub fn column(&self) -> &'static str {
        match self {
            PackageField::Text(t, _) => match t {
                PackageText::Name => "name",
                PackageText::Version => "version",
                PackageText::Manufacturer => "manufacturer",
                PackageText::Language => "language",
                PackageText::Description => "description",
                PackageText::SourcePath => "pkg_source_path",
                PackageText::RefreshSchedule => "refresh_schedule",
                PackageText::ScheduleCheckedAt => "schedule_checked_at",
            },
            PackageField::Number(n, _) => match n {
                PackageNumber::SourceFlag => "pkg_source_flag",
                PackageNumber::Flags => "pkg_flags",
                PackageNumber::Priority => "priority",
            },
        }
    }
}

/// What a DP reported for a job, as the row should now be.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub package_id: String,
    pub nal_path: String,
    /// The job the report is about; the row changes only if it is still at this job.
    pub job_seq: i64,
    pub state: i64,
    /// Set when a version was installed (also stamps `last_copied`).
    pub installed_version: Option<i64>,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    /// A finished removal deletes the row.
    pub remove_row: bool,
    /// The next install must check every chunk the DP holds (damage was found and left).
    pub needs_repair: bool,
    /// The worker that followed the job; its lease ends here.
    pub lease_owner: String,
    pub time: String,
    pub message: String,
}
