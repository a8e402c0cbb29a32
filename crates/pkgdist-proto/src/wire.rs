//! Bodies on the wire. Property names are ConfigMgr's, with its casing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `GET /AdminService/wmi/<Class>`: `{"@odata.context": …, "value": [ … ]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    #[serde(rename = "@odata.context")]
    pub context: String,
    pub value: Vec<Map<String, Value>>,
}

/// The part of `SMS_ExtendedStatus` pkgdist fills in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct ExtendedStatus {
    #[serde(rename = "__CLASS")]
    pub class: String,
    pub ErrorCode: u32,
    pub Description: String,
    pub Operation: String,
    pub ParameterInfo: String,
    pub ObjectInfo: String,
    pub ProviderName: String,
}

/// Every failure: a non-zero `ReturnValue`, OData's `error`, and the extended status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct ErrorBody {
    pub ReturnValue: i32,
    pub error: ODataError,
    pub ExtendedStatus: ExtendedStatus,
}

impl ErrorBody {
    /// The message of an error body, or the text as it came when it is not one: what a
    /// daemon shows of another's refusal.
    pub fn message_of(text: &str) -> String {
        serde_json::from_str::<ErrorBody>(text)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| text.trim().to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ODataError {
    /// The error's short name (`UnknownInstance`, `PackageNotInGroup`, …); see docs/errors.md.
    pub code: String,
    pub message: String,
}

/// The role a management token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Reads and writes everything, calls every method.
    FullAdministrator,
    /// Reads only.
    ReadOnlyAnalyst,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::FullAdministrator => "FullAdministrator",
            Role::ReadOnlyAnalyst => "ReadOnlyAnalyst",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "FullAdministrator" => Some(Role::FullAdministrator),
            "ReadOnlyAnalyst" => Some(Role::ReadOnlyAnalyst),
            _ => None,
        }
    }
}

/// What a daemon writes to its `--ready-file` once it listens (atomically: temp + rename).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub addr: String,
    pub pid: u32,
}
