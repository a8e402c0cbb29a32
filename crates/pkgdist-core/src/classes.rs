//! ConfigMgr's enumerations that pkgdist uses, with their documented numbers.

use serde::{Deserialize, Serialize};

/// The package classes and their `PackageType` / `ObjectTypeID` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PackageClass {
    Package,
    DriverPackage,
    SoftwareUpdatesPackage,
    ImagePackage,
    BootImagePackage,
    OperatingSystemInstallPackage,
}

impl PackageClass {
    pub const ALL: [PackageClass; 6] = [
        PackageClass::Package,
        PackageClass::DriverPackage,
        PackageClass::SoftwareUpdatesPackage,
        PackageClass::ImagePackage,
        PackageClass::BootImagePackage,
        PackageClass::OperatingSystemInstallPackage,
    ];

    pub fn class_name(self) -> &'static str {
        match self {
            PackageClass::Package => "SMS_Package",
            PackageClass::DriverPackage => "SMS_DriverPackage",
            PackageClass::SoftwareUpdatesPackage => "SMS_SoftwareUpdatesPackage",
            PackageClass::ImagePackage => "SMS_ImagePackage",
            PackageClass::BootImagePackage => "SMS_BootImagePackage",
            PackageClass::OperatingSystemInstallPackage => "SMS_OperatingSystemInstallPackage",
        }
    }

    /// `PackageType`: 0 regular, 3 driver, 5 software update, 257 image, 258 boot image,
    /// 259 OS install.
    pub fn package_type(self) -> u32 {
        match self {
            PackageClass::Package => 0,
            PackageClass::DriverPackage => 3,
            PackageClass::SoftwareUpdatesPackage => 5,
            PackageClass::ImagePackage => 257,
            PackageClass::BootImagePackage => 258,
            PackageClass::OperatingSystemInstallPackage => 259,
        }
    }

    /// `ObjectTypeID` (the secured class id in status classes).
    pub fn object_type_id(self) -> u32 {
        match self {
            PackageClass::Package => 2,
            PackageClass::OperatingSystemInstallPackage => 14,
            PackageClass::ImagePackage => 18,
            PackageClass::BootImagePackage => 19,
            PackageClass::DriverPackage => 23,
            PackageClass::SoftwareUpdatesPackage => 24,
        }
    }

    pub fn from_class_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.class_name() == name)
    }

    pub fn from_package_type(t: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.package_type() == t)
    }
}

/// `SMS_PackageStatusDistPointsSummarizer.State`: one package on one DP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u32)]
pub enum DpState {
    Installed = 0,
    InstallPending = 1,
    InstallRetrying = 2,
    InstallFailed = 3,
    RemovalPending = 4,
    RemovalRetrying = 5,
    RemovalFailed = 6,
    ContentUpdating = 7,
    ContentMonitoring = 8,
}

impl DpState {
    pub const ALL: [DpState; 9] = [
        DpState::Installed,
        DpState::InstallPending,
        DpState::InstallRetrying,
        DpState::InstallFailed,
        DpState::RemovalPending,
        DpState::RemovalRetrying,
        DpState::RemovalFailed,
        DpState::ContentUpdating,
        DpState::ContentMonitoring,
    ];

    pub const fn code(self) -> u32 {
        self as u32
    }

    /// REMOVAL_PENDING, REMOVAL_RETRYING or REMOVAL_FAILED: the package is leaving the DP.
    pub const fn is_removal(self) -> bool {
        matches!(
            self,
            DpState::RemovalPending | DpState::RemovalRetrying | DpState::RemovalFailed
        )
    }

    /// The state a row's code names, if any.
    pub fn of_row(code: i64) -> Option<Self> {
        u32::try_from(code).ok().and_then(Self::from_code)
    }

    pub fn from_code(c: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == c)
    }

    pub fn name(self) -> &'static str {
        match self {
            DpState::Installed => "INSTALLED",
            DpState::InstallPending => "INSTALL_PENDING",
            DpState::InstallRetrying => "INSTALL_RETRYING",
            DpState::InstallFailed => "INSTALL_FAILED",
            DpState::RemovalPending => "REMOVAL_PENDING",
            DpState::RemovalRetrying => "REMOVAL_RETRYING",
            DpState::RemovalFailed => "REMOVAL_FAILED",
            DpState::ContentUpdating => "CONTENT_UPDATING",
            DpState::ContentMonitoring => "CONTENT_MONITORING",
        }
    }
}

/// `SMS_DistributionDPStatus.MessageState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u32)]
pub enum MessageState {
    Success = 1,
    InProgress = 2,
    Error = 3,
}

/// `MessageSeverity` values that go with each message state.
impl MessageState {
    pub fn severity(self) -> u32 {
        match self {
            MessageState::Success => 0x4000_0000,
            MessageState::InProgress => 0x4000_0000,
            MessageState::Error => 0xC000_0000,
        }
    }
}

/// `PkgSourceFlag`.
pub mod source_flag {
    pub const STORAGE_NEEDS_SPECIFYING: u32 = 0;
    pub const STORAGE_NO_SOURCE: u32 = 1;
    pub const STORAGE_DIRECT: u32 = 2;
    pub const STORAGE_COMPRESS: u32 = 3;
    pub const STORAGE_LOCAL: u32 = 4;
}

/// `ActionInProgress`.
pub mod action {
    pub const NONE: u32 = 0;
    pub const UPDATE: u32 = 1;
    pub const ADD: u32 = 2;
    pub const DELETE: u32 = 3;
}

/// A ConfigMgr-shaped NAL path for a DP server:
/// `["Display=\\NAME\"]MSWNET:["SMS_SITE=PS1"]\\NAME\`.
pub fn nal_path(server: &str, site: &str) -> String {
    format!("[\"Display=\\\\{server}\\\"]MSWNET:[\"SMS_SITE={site}\"]\\\\{server}\\")
}

/// The server name inside a NAL path (`Display=\\NAME\`), if it has one.
pub fn nal_server(nal: &str) -> Option<&str> {
    let start = nal.find("Display=\\\\")? + "Display=\\\\".len();
    let end = nal[start..].find('\\')? + start;
    Some(&nal[start..end])
}

/// The site code inside a NAL path, if it has one.
pub fn nal_site(nal: &str) -> Option<&str> {
    let start = nal.find("SMS_SITE=")? + "SMS_SITE=".len();
    let end = nal[start..].find('"')? + start;
    Some(&nal[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_path_shape() {
        let nal = nal_path("dp1.example", "PS1");
        assert_eq!(nal_server(&nal), Some("dp1.example"));
        assert_eq!(nal_site(&nal), Some("PS1"));
        assert_eq!(nal_server("nal-dp1"), None);
        assert_eq!(
            nal,
            r#"["Display=\\dp1.example\"]MSWNET:["SMS_SITE=PS1"]\\dp1.example\"#
        );
        assert_eq!(nal_site(&nal), Some("PS1"));
        assert_eq!(nal_site("garbage"), None);
    }

    #[test]
    fn enums_round_trip() {
        for c in PackageClass::ALL {
            assert_eq!(PackageClass::from_class_name(c.class_name()), Some(c));
            assert_eq!(PackageClass::from_package_type(c.package_type()), Some(c));
        }
        for s in DpState::ALL {
            assert_eq!(DpState::from_code(s.code()), Some(s));
        }
    }
}
