//! Identifiers in ConfigMgr's shapes: site codes, PackageIDs and content IDs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a site code, PackageID or content ID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("invalid site code {0:?}: a site code is 3 characters, A-Z or 0-9, starting with a letter")]
    SiteCode(String),
    #[error(
        "invalid PackageID {0:?}: a PackageID is a 3-character site code followed by 5 uppercase hex digits, e.g. PS100001"
    )]
    PackageId(String),
    #[error(
        "invalid content ID {0:?}: a content ID is <PackageID>.<SourceVersion>, e.g. PS100001.3, with SourceVersion 1 or more"
    )]
    ContentId(String),
}

/// A ConfigMgr site code: three characters, uppercase letters and digits, first a letter.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteCode([u8; 3]);

impl SiteCode {
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored, so this cannot fail; fall back to "" rather than panic.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl FromStr for SiteCode {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        let ok =
            b.len() == 3 && b[0].is_ascii_uppercase() && b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !ok {
            return Err(IdError::SiteCode(s.to_owned()));
        }
        Ok(Self([b[0], b[1], b[2]]))
    }
}

/// A package's key: site code + 5 uppercase hex digits (`PS100001`), as ConfigMgr shows them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageId {
    site: SiteCode,
    serial: u32,
}

impl PackageId {
    /// The largest serial that fits in 5 hex digits.
    pub const MAX_SERIAL: u32 = 0xF_FFFF;

    pub fn new(site: SiteCode, serial: u32) -> Result<Self, IdError> {
        if serial > Self::MAX_SERIAL {
            return Err(IdError::PackageId(format!("{}{serial:X}", site.as_str())));
        }
        Ok(Self { site, serial })
    }

    pub fn site(&self) -> SiteCode {
        self.site
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }
}

impl FromStr for PackageId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = || IdError::PackageId(s.to_owned());
        if s.len() != 8 || !s.is_ascii() {
            return Err(err());
        }
        let site: SiteCode = s[..3].parse().map_err(|_| err())?;
        let hex = &s[3..];
        if !hex.bytes().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)) {
            return Err(err());
        }
        let serial = u32::from_str_radix(hex, 16).map_err(|_| err())?;
        Ok(Self { site, serial })
    }
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:05X}", self.site.as_str(), self.serial)
    }
}

/// One version of one package's content: `<PackageID>.<SourceVersion>`, e.g. `PS100001.3`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId {
    pub package: PackageId,
    pub version: u32,
}

impl ContentId {
    pub fn new(package: PackageId, version: u32) -> Result<Self, IdError> {
        if version == 0 {
            return Err(IdError::ContentId(format!("{package}.0")));
        }
        Ok(Self { package, version })
    }
}

impl FromStr for ContentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = || IdError::ContentId(s.to_owned());
        let (pkg, ver) = s.split_once('.').ok_or_else(err)?;
        let package: PackageId = pkg.parse().map_err(|_| err())?;
        // Canonical decimal only: no sign, no leading zeros, so that one version has one name.
        if ver.is_empty() || ver.starts_with('0') || !ver.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        let version: u32 = ver.parse().map_err(|_| err())?;
        Self::new(package, version).map_err(|_| err())
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.package, self.version)
    }
}

macro_rules! string_serde {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

impl fmt::Display for SiteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

string_serde!(SiteCode, PackageId, ContentId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_id_round_trip() {
        let id: PackageId = "PS100001".parse().unwrap();
        assert_eq!(id.site().as_str(), "PS1");
        assert_eq!(id.serial(), 1);
        assert_eq!(id.to_string(), "PS100001");
        let id = PackageId::new("CM2".parse().unwrap(), 0xABCDE).unwrap();
        assert_eq!(id.to_string(), "CM2ABCDE");
    }

    #[test]
    fn package_id_refusals() {
        for bad in [
            "PS10001",
            "ps100001",
            "PS10000G",
            "1PS00001",
            "PS1000011",
            "PS1abcde",
            "PS1-0001",
        ] {
            assert!(bad.parse::<PackageId>().is_err(), "{bad} should be refused");
        }
        assert!(PackageId::new("PS1".parse().unwrap(), 0x10_0000).is_err());
    }

    #[test]
    fn content_id_round_trip_and_refusals() {
        let c: ContentId = "PS100001.3".parse().unwrap();
        assert_eq!(c.version, 3);
        assert_eq!(c.to_string(), "PS100001.3");
        for bad in [
            "PS100001",
            "PS100001.0",
            "PS100001.03",
            "PS100001.-1",
            "PS100001.x",
            "PS100001.",
            "PS100001.99999999999",
        ] {
            assert!(bad.parse::<ContentId>().is_err(), "{bad} should be refused");
        }
    }
}
