//! One typed struct per class of the API, with ConfigMgr's property names: what the site
//! answers and what the CLI reads, so neither looks properties up by string. A test holds each
//! struct to the catalog ([`crate::catalog`]), and the site's tests read every class's
//! instances into them and compare their property names (none missing, none unknown).
//!
//! Reading is lenient on purpose, for clients of other versions: a property the site does not
//! send takes its default, one the struct does not know is ignored.
//!
//! Numbers are `i64` whatever their WMI type (UInt32, UInt64): the catalog says the range, and
//! the API never answers a negative one. Properties that can be null are `Option`; properties
//! answered only once, when the instance is created (a token's secret), are `Option` and left
//! out when absent.

use serde::{Deserialize, Serialize};

/// `SMS_PackageBaseclass` and every package class (`SMS_Package`, `SMS_DriverPackage`, …).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Package {
    #[serde(rename = "PackageID")]
    pub package_id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Manufacturer")]
    pub manufacturer: String,
    #[serde(rename = "MIFFilename")]
    pub mif_filename: String,
    #[serde(rename = "MIFName")]
    pub mif_name: String,
    #[serde(rename = "MIFPublisher")]
    pub mif_publisher: String,
    #[serde(rename = "MIFVersion")]
    pub mif_version: String,
    #[serde(rename = "Language")]
    pub language: String,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "PkgSourcePath")]
    pub pkg_source_path: String,
    #[serde(rename = "PkgSourceFlag")]
    pub pkg_source_flag: i64,
    #[serde(rename = "SourceVersion")]
    pub source_version: i64,
    #[serde(rename = "SourceDate")]
    pub source_date: Option<String>,
    #[serde(rename = "LastRefreshTime")]
    pub last_refresh_time: Option<String>,
    #[serde(rename = "PackageSize")]
    pub package_size: i64,
    #[serde(rename = "PkgFlags")]
    pub pkg_flags: i64,
    #[serde(rename = "Priority")]
    pub priority: i64,
    #[serde(rename = "ActionInProgress")]
    pub action_in_progress: i64,
    #[serde(rename = "SourceSite")]
    pub source_site: String,
    #[serde(rename = "RefreshSchedule")]
    pub refresh_schedule: String,
    #[serde(rename = "PackageType")]
    pub package_type: i64,
    #[serde(rename = "ManifestHash")]
    pub manifest_hash: Option<String>,
}

/// `SMS_DistributionPointInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DistributionPointInfo {
    #[serde(rename = "NALPath")]
    pub nal_path: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "ServerName")]
    pub server_name: String,
    #[serde(rename = "SiteCode")]
    pub site_code: String,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "IsPullDP")]
    pub is_pull_dp: bool,
    #[serde(rename = "SourceDistributionPoints")]
    pub source_distribution_points: Vec<String>,
    #[serde(rename = "SourceDPRanks")]
    pub source_dp_ranks: Vec<i64>,
    #[serde(rename = "Priority")]
    pub priority: i64,
    #[serde(rename = "GroupCount")]
    pub group_count: i64,
    #[serde(rename = "Url")]
    pub url: Option<String>,
    #[serde(rename = "Enrolled")]
    pub enrolled: bool,
    #[serde(rename = "EnrollmentToken", default, skip_serializing_if = "Option::is_none")]
    pub enrollment_token: Option<String>,
    #[serde(rename = "PreStagingAllowed")]
    pub pre_staging_allowed: bool,
    #[serde(rename = "RepairDamagedContent")]
    pub repair_damaged_content: bool,
    #[serde(rename = "ValidationSchedule")]
    pub validation_schedule: String,
    #[serde(rename = "RateLimitMode")]
    pub rate_limit_mode: i64,
    #[serde(rename = "RateLimitBytesPerSecond")]
    pub rate_limit_bytes_per_second: i64,
    #[serde(rename = "PulseBlockSizeKB")]
    pub pulse_block_size_kb: i64,
    #[serde(rename = "PulseDelaySeconds")]
    pub pulse_delay_seconds: i64,
    #[serde(rename = "HourlyPercentages")]
    pub hourly_percentages: String,
    #[serde(rename = "AvailabilitySchedule")]
    pub availability_schedule: String,
    #[serde(rename = "ThroughputKBps")]
    pub throughput_kbps: Option<i64>,
}

/// `SMS_DistributionPoint`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DistributionPoint {
    #[serde(rename = "PackageID")]
    pub package_id: String,
    #[serde(rename = "ServerNALPath")]
    pub server_nal_path: String,
    #[serde(rename = "SiteCode")]
    pub site_code: String,
    #[serde(rename = "SourceSite")]
    pub source_site: String,
    #[serde(rename = "RefreshNow")]
    pub refresh_now: bool,
    #[serde(rename = "LastRefreshTime")]
    pub last_refresh_time: String,
    #[serde(rename = "Status")]
    pub status: i64,
    #[serde(rename = "PackageType")]
    pub package_type: i64,
    #[serde(rename = "ObjectTypeID")]
    pub object_type_id: i64,
}

/// `SMS_DistributionPointGroup`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DistributionPointGroup {
    #[serde(rename = "GroupID")]
    pub group_id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "MemberCount")]
    pub member_count: i64,
    #[serde(rename = "HasMember")]
    pub has_member: bool,
    #[serde(rename = "ContentCount")]
    pub content_count: i64,
    #[serde(rename = "ContentInSync")]
    pub content_in_sync: bool,
    #[serde(rename = "OutOfSyncContentCount")]
    pub out_of_sync_content_count: i64,
    #[serde(rename = "SourceSite")]
    pub source_site: String,
    #[serde(rename = "CreatedOn")]
    pub created_on: String,
    #[serde(rename = "ModifiedOn")]
    pub modified_on: String,
}

/// `SMS_DPGroupMembers`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DpGroupMembers {
    #[serde(rename = "GroupID")]
    pub group_id: String,
    #[serde(rename = "DPNALPath")]
    pub dp_nal_path: String,
}

/// `SMS_DPGroupContentInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DpGroupContentInfo {
    #[serde(rename = "GroupID")]
    pub group_id: String,
    #[serde(rename = "PackageID")]
    pub package_id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "ObjectID")]
    pub object_id: String,
    #[serde(rename = "ObjectType")]
    pub object_type: i64,
    #[serde(rename = "ObjectTypeID")]
    pub object_type_id: i64,
    #[serde(rename = "SourceSize")]
    pub source_size: i64,
}

/// `SMS_PackageStatusDistPointsSummarizer`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PackageStatusDistPointsSummarizer {
    #[serde(rename = "PackageID")]
    pub package_id: String,
    #[serde(rename = "ServerNALPath")]
    pub server_nal_path: String,
    #[serde(rename = "SiteCode")]
    pub site_code: String,
    #[serde(rename = "State")]
    pub state: i64,
    #[serde(rename = "SourceVersion")]
    pub source_version: i64,
    #[serde(rename = "TargetVersion")]
    pub target_version: i64,
    #[serde(rename = "LastCopied")]
    pub last_copied: Option<String>,
    #[serde(rename = "SummaryDate")]
    pub summary_date: String,
    #[serde(rename = "PackageType")]
    pub package_type: i64,
    #[serde(rename = "Attempts")]
    pub attempts: i64,
    #[serde(rename = "NextRetry")]
    pub next_retry: Option<String>,
    #[serde(rename = "WaitsFor")]
    pub waits_for: String,
    #[serde(rename = "LastMessage")]
    pub last_message: String,
    #[serde(rename = "RetriesRemaining")]
    pub retries_remaining: i64,
    #[serde(rename = "BytesReceived")]
    pub bytes_received: i64,
    #[serde(rename = "PercentComplete")]
    pub percent_complete: i64,
}

/// `SMS_PackageStatusDetailSummarizer`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PackageStatusDetailSummarizer {
    #[serde(rename = "PackageID")]
    pub package_id: String,
    #[serde(rename = "SiteCode")]
    pub site_code: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "SourceVersion")]
    pub source_version: i64,
    #[serde(rename = "Targeted")]
    pub targeted: i64,
    #[serde(rename = "Installed")]
    pub installed: i64,
    #[serde(rename = "Retrying")]
    pub retrying: i64,
    #[serde(rename = "Failed")]
    pub failed: i64,
    #[serde(rename = "SummaryDate")]
    pub summary_date: Option<String>,
}

/// `SMS_PackageStatusRootSummarizer`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PackageStatusRootSummarizer {
    #[serde(rename = "PackageID")]
    pub package_id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "SourceVersion")]
    pub source_version: i64,
    #[serde(rename = "SourceDate")]
    pub source_date: Option<String>,
    #[serde(rename = "SourceSite")]
    pub source_site: String,
    #[serde(rename = "SourceSize")]
    pub source_size: i64,
    #[serde(rename = "SourceCompressedSize")]
    pub source_compressed_size: i64,
    #[serde(rename = "Targeted")]
    pub targeted: i64,
    #[serde(rename = "Installed")]
    pub installed: i64,
    #[serde(rename = "Retrying")]
    pub retrying: i64,
    #[serde(rename = "Failed")]
    pub failed: i64,
}

/// `SMS_DPStatusInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DpStatusInfo {
    #[serde(rename = "NALPath")]
    pub nal_path: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "SiteCode")]
    pub site_code: String,
    #[serde(rename = "IsPullDP")]
    pub is_pull_dp: bool,
    #[serde(rename = "IsPXE")]
    pub is_pxe: bool,
    #[serde(rename = "IsMulticast")]
    pub is_multicast: bool,
    #[serde(rename = "NumberInstalled")]
    pub number_installed: i64,
    #[serde(rename = "NumberInProgress")]
    pub number_in_progress: i64,
    #[serde(rename = "NumberErrors")]
    pub number_errors: i64,
    #[serde(rename = "NumberUnknown")]
    pub number_unknown: i64,
    #[serde(rename = "MessageState")]
    pub message_state: i64,
    #[serde(rename = "MessageCount")]
    pub message_count: i64,
    #[serde(rename = "LastStatusTime")]
    pub last_status_time: Option<String>,
    #[serde(rename = "IsDPMonEnabled")]
    pub is_dp_mon_enabled: bool,
}

/// `SMS_ObjectContentInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectContentInfo {
    #[serde(rename = "ObjectID")]
    pub object_id: String,
    #[serde(rename = "PackageID")]
    pub package_id: String,
    #[serde(rename = "SoftwareName")]
    pub software_name: String,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "ObjectType")]
    pub object_type: i64,
    #[serde(rename = "ObjectTypeID")]
    pub object_type_id: i64,
    #[serde(rename = "SourceVersion")]
    pub source_version: i64,
    #[serde(rename = "SourceSite")]
    pub source_site: String,
    #[serde(rename = "SourceSize")]
    pub source_size: i64,
    #[serde(rename = "DateCreated")]
    pub date_created: String,
    #[serde(rename = "LastUpdateDate")]
    pub last_update_date: Option<String>,
    #[serde(rename = "Targeted")]
    pub targeted: i64,
    #[serde(rename = "NumberSuccess")]
    pub number_success: i64,
    #[serde(rename = "NumberInProgress")]
    pub number_in_progress: i64,
    #[serde(rename = "NumberErrors")]
    pub number_errors: i64,
    #[serde(rename = "NumberUnknown")]
    pub number_unknown: i64,
}

/// `SMS_DPGroupDistributionStatusDetails`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DpGroupDistributionStatusDetails {
    #[serde(rename = "ID")]
    pub id: i64,
    #[serde(rename = "GroupID")]
    pub group_id: String,
    #[serde(rename = "PackageID")]
    pub package_id: String,
    #[serde(rename = "ObjectID")]
    pub object_id: String,
    #[serde(rename = "ContentName")]
    pub content_name: String,
    #[serde(rename = "ObjectType")]
    pub object_type: i64,
    #[serde(rename = "ObjectTypeID")]
    pub object_type_id: i64,
    #[serde(rename = "DPName")]
    pub dp_name: String,
    #[serde(rename = "DPNALPath")]
    pub dp_nal_path: String,
    #[serde(rename = "SiteCode")]
    pub site_code: String,
    #[serde(rename = "MessageState")]
    pub message_state: i64,
    #[serde(rename = "MessageID")]
    pub message_id: i64,
    #[serde(rename = "MessageSeverity")]
    pub message_severity: i64,
    #[serde(rename = "MessageFullID")]
    pub message_full_id: i64,
    #[serde(rename = "StatusMsgID")]
    pub status_msg_id: i64,
    #[serde(rename = "StatusTime")]
    pub status_time: String,
    #[serde(rename = "Description")]
    pub description: String,
}

/// `SMS_DistributionDPStatus`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DistributionDpStatus {
    #[serde(rename = "ID")]
    pub id: i64,
    #[serde(rename = "PackageID")]
    pub package_id: String,
    #[serde(rename = "ObjectID")]
    pub object_id: String,
    #[serde(rename = "ObjectTypeID")]
    pub object_type_id: Option<i64>,
    #[serde(rename = "NalPath")]
    pub nal_path: String,
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "SiteCode")]
    pub site_code: String,
    #[serde(rename = "MessageID")]
    pub message_id: i64,
    #[serde(rename = "MessageState")]
    pub message_state: i64,
    #[serde(rename = "MessageSeverity")]
    pub message_severity: i64,
    #[serde(rename = "LastUpdateDate")]
    pub last_update_date: String,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "BytesTransferred")]
    pub bytes_transferred: i64,
}

/// `SMS_StatusMessage`: an audit message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusMessage {
    #[serde(rename = "RecordID")]
    pub record_id: i64,
    #[serde(rename = "Component")]
    pub component: String,
    #[serde(rename = "MachineName")]
    pub machine_name: String,
    #[serde(rename = "MessageID")]
    pub message_id: i64,
    #[serde(rename = "MessageType")]
    pub message_type: i64,
    #[serde(rename = "Severity")]
    pub severity: i64,
    #[serde(rename = "SiteCode")]
    pub site_code: String,
    #[serde(rename = "Time")]
    pub time: String,
    #[serde(rename = "TokenID")]
    pub token_id: String,
    #[serde(rename = "TokenName")]
    pub token_name: String,
    #[serde(rename = "HttpMethod")]
    pub http_method: String,
    #[serde(rename = "Target")]
    pub target: String,
    #[serde(rename = "HttpStatus")]
    pub http_status: i64,
    #[serde(rename = "Description")]
    pub description: String,
}

/// `SMS_Site`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Site {
    #[serde(rename = "SiteCode")]
    pub site_code: String,
    #[serde(rename = "SiteName")]
    pub site_name: String,
    #[serde(rename = "Type")]
    pub r#type: i64,
    #[serde(rename = "ReportingSiteCode")]
    pub reporting_site_code: String,
    #[serde(rename = "ServerName")]
    pub server_name: Option<String>,
    #[serde(rename = "Version")]
    pub version: Option<String>,
    #[serde(rename = "Enrolled")]
    pub enrolled: bool,
    #[serde(rename = "EnrollmentToken", default, skip_serializing_if = "Option::is_none")]
    pub enrollment_token: Option<String>,
    #[serde(rename = "RateLimitBytesPerSecond")]
    pub rate_limit_bytes_per_second: i64,
    #[serde(rename = "LastReportTime")]
    pub last_report_time: Option<String>,
}

/// `PKGDIST_SiteContent`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SiteContent {
    #[serde(rename = "PackageID")]
    pub package_id: String,
    #[serde(rename = "SourceVersion")]
    pub source_version: i64,
    #[serde(rename = "State")]
    pub state: i64,
    #[serde(rename = "BytesReceived")]
    pub bytes_received: i64,
    #[serde(rename = "ChunksFetched")]
    pub chunks_fetched: i64,
    #[serde(rename = "ChunksTotal")]
    pub chunks_total: i64,
    #[serde(rename = "Attempts")]
    pub attempts: i64,
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "LastUpdateDate")]
    pub last_update_date: String,
}

/// `PKGDIST_DistributionSettings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DistributionSettings {
    #[serde(rename = "SiteCode")]
    pub site_code: String,
    #[serde(rename = "MaximumPackageCount")]
    pub maximum_package_count: i64,
    #[serde(rename = "MaximumThreadsPerPackage")]
    pub maximum_threads_per_package: i64,
    #[serde(rename = "RetryCount")]
    pub retry_count: i64,
    #[serde(rename = "DelayBeforeRetryingMins")]
    pub delay_before_retrying_mins: i64,
    #[serde(rename = "DelayBeforeRetryingSecs")]
    pub delay_before_retrying_secs: i64,
}

/// `PKGDIST_AdminToken`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminToken {
    #[serde(rename = "TokenID")]
    pub token_id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Role")]
    pub role: String,
    #[serde(rename = "CreatedOn")]
    pub created_on: String,
    #[serde(rename = "RevokedOn")]
    pub revoked_on: Option<String>,
    #[serde(rename = "Token", default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Every class with a struct: (class name, the struct's property names as serialized from
/// its default value, write-only ones included).
pub fn property_names() -> Vec<(&'static str, Vec<String>)> {
    fn names<T: Serialize + Default>(write_only: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = match serde_json::to_value(T::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        v.extend(write_only.iter().map(|s| (*s).to_owned()));
        v
    }
    vec![
        ("SMS_PackageBaseclass", names::<Package>(&[])),
        (
            "SMS_DistributionPointInfo",
            names::<DistributionPointInfo>(&["EnrollmentToken"]),
        ),
        ("SMS_DistributionPoint", names::<DistributionPoint>(&[])),
        ("SMS_DistributionPointGroup", names::<DistributionPointGroup>(&[])),
        ("SMS_DPGroupMembers", names::<DpGroupMembers>(&[])),
        ("SMS_DPGroupContentInfo", names::<DpGroupContentInfo>(&[])),
        (
            "SMS_PackageStatusDistPointsSummarizer",
            names::<PackageStatusDistPointsSummarizer>(&[]),
        ),
        (
            "SMS_PackageStatusDetailSummarizer",
            names::<PackageStatusDetailSummarizer>(&[]),
        ),
        (
            "SMS_PackageStatusRootSummarizer",
            names::<PackageStatusRootSummarizer>(&[]),
        ),
        ("SMS_DPStatusInfo", names::<DpStatusInfo>(&[])),
        ("SMS_ObjectContentInfo", names::<ObjectContentInfo>(&[])),
        (
            "SMS_DPGroupDistributionStatusDetails",
            names::<DpGroupDistributionStatusDetails>(&[]),
        ),
        ("SMS_DistributionDPStatus", names::<DistributionDpStatus>(&[])),
        ("SMS_StatusMessage", names::<StatusMessage>(&[])),
        ("SMS_Site", names::<Site>(&["EnrollmentToken"])),
        ("PKGDIST_SiteContent", names::<SiteContent>(&[])),
        ("PKGDIST_DistributionSettings", names::<DistributionSettings>(&[])),
        ("PKGDIST_AdminToken", names::<AdminToken>(&["Token"])),
    ]
}

impl PackageStatusDistPointsSummarizer {
    /// `State` as the typed state of a package on a DP (`None` for a code this version does
    /// not know).
    pub fn dp_state(&self) -> Option<pkgdist_core::classes::DpState> {
        pkgdist_core::classes::DpState::of_row(self.state)
    }
}

#[cfg(test)]
mod tests {
    /// Each struct has exactly the catalog's properties of its class.
    #[test]
    fn structs_match_the_catalog() {
        let listed = super::property_names();
        for (class, mut names) in listed.clone() {
            let def = crate::catalog::class(class).expect("a class of the catalog");
            let mut want: Vec<String> = def.props.iter().map(|p| p.name.to_owned()).collect();
            names.sort();
            want.sort();
            assert_eq!(names, want, "{class}");
        }
        // Every class with properties has a struct.
        for def in crate::catalog::CLASSES.iter().filter(|c| !c.props.is_empty()) {
            let names = |c: &crate::catalog::ClassDef| c.props.iter().map(|p| p.name).collect::<Vec<_>>();
            let package = crate::catalog::class("SMS_PackageBaseclass").map(names);
            // The package classes share `Package`.
            let covered = listed.iter().any(|(c, _)| *c == def.name) || package == Some(names(def));
            assert!(covered, "{} has no struct", def.name);
        }
    }
}
