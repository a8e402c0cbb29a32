//! pkgdist's error codes, in the shape of ConfigMgr's `SMS_ExtendedStatus.ErrorCode`.
//!
//! ConfigMgr packs severity, facility, action, object and reason into 32 bits (see the SDK's
//! `Ssperrcode.h`): bits 31–30 severity, 27–22 facility, 21–16 action, 15–8 object, 7–0 reason.
//! Its numeric values for each field are not public, so pkgdist defines its own within that
//! layout and lists every code in `docs/errors.md`. A failing method returns the code's
//! `ReturnValue` (a small positive number, stable across releases) and the full `ErrorCode`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Severity {
    /// The caller can carry on (e.g. a bad parameter it can correct).
    Functional = 1,
    /// The caller can carry on with unrelated work only.
    Minor = 2,
    /// The caller should stop.
    Major = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Facility {
    Internal = 1,
    File = 2,
    Database = 3,
    Security = 4,
    Request = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    Open = 1,
    Read = 2,
    Persist = 3,
    Delete = 4,
    Execute = 5,
    Parse = 6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Object {
    Parameter = 1,
    Instance = 2,
    Class = 3,
    Method = 4,
    Source = 5,
    Token = 6,
    Query = 7,
    Body = 8,
}

/// Every error the management API can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorKind {
    UnknownClass,
    UnknownInstance,
    UnknownMethod,
    MalformedKey,
    MalformedQuery,
    UnknownProperty,
    InvalidValue,
    ReadOnlyProperty,
    MissingProperty,
    MalformedBody,
    BodyTooLarge,
    NameTaken,
    NotAllowed,
    PackageNotInGroup,
    SourceMissing,
    SourceUnreadable,
    NoSource,
    SiteMismatch,
    InvalidState,
    Unauthenticated,
    Forbidden,
    Storage,
    Internal,
    /// The instance changed while the request was handled; calling again may succeed.
    Conflict,
    /// The source folder is outside the folders packages may be made from.
    SourceNotAllowed,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 25] = [
        ErrorKind::UnknownClass,
        ErrorKind::UnknownInstance,
        ErrorKind::UnknownMethod,
        ErrorKind::MalformedKey,
        ErrorKind::MalformedQuery,
        ErrorKind::UnknownProperty,
        ErrorKind::InvalidValue,
        ErrorKind::ReadOnlyProperty,
        ErrorKind::MissingProperty,
        ErrorKind::MalformedBody,
        ErrorKind::BodyTooLarge,
        ErrorKind::NameTaken,
        ErrorKind::NotAllowed,
        ErrorKind::PackageNotInGroup,
        ErrorKind::SourceMissing,
        ErrorKind::SourceUnreadable,
        ErrorKind::NoSource,
        ErrorKind::SiteMismatch,
        ErrorKind::InvalidState,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::Storage,
        ErrorKind::Internal,
        ErrorKind::Conflict,
        ErrorKind::SourceNotAllowed,
    ];

    /// (ReturnValue, HTTP status, severity, facility, action, object, short name)
    fn parts(self) -> (i32, u16, Severity, Facility, Action, Object, &'static str) {
        use Action as A;
        use Facility as F;
        use Object as O;
        use Severity as S;
        match self {
            ErrorKind::UnknownClass => (1, 404, S::Functional, F::Request, A::Open, O::Class, "UnknownClass"),
            ErrorKind::UnknownInstance => (
                2,
                404,
                S::Functional,
                F::Request,
                A::Open,
                O::Instance,
                "UnknownInstance",
            ),
            ErrorKind::UnknownMethod => (
                3,
                404,
                S::Functional,
                F::Request,
                A::Execute,
                O::Method,
                "UnknownMethod",
            ),
            ErrorKind::MalformedKey => (4, 400, S::Functional, F::Request, A::Parse, O::Instance, "MalformedKey"),
            ErrorKind::MalformedQuery => (5, 400, S::Functional, F::Request, A::Parse, O::Query, "MalformedQuery"),
            ErrorKind::UnknownProperty => (
                6,
                400,
                S::Functional,
                F::Request,
                A::Parse,
                O::Parameter,
                "UnknownProperty",
            ),
            ErrorKind::InvalidValue => (
                7,
                400,
                S::Functional,
                F::Request,
                A::Parse,
                O::Parameter,
                "InvalidValue",
            ),
            ErrorKind::ReadOnlyProperty => (
                8,
                400,
                S::Functional,
                F::Request,
                A::Persist,
                O::Parameter,
                "ReadOnlyProperty",
            ),
            ErrorKind::MissingProperty => (
                9,
                400,
                S::Functional,
                F::Request,
                A::Parse,
                O::Parameter,
                "MissingProperty",
            ),
            ErrorKind::MalformedBody => (10, 400, S::Functional, F::Request, A::Parse, O::Body, "MalformedBody"),
            ErrorKind::BodyTooLarge => (11, 413, S::Functional, F::Request, A::Read, O::Body, "BodyTooLarge"),
            ErrorKind::NameTaken => (
                12,
                409,
                S::Functional,
                F::Database,
                A::Persist,
                O::Instance,
                "NameTaken",
            ),
            ErrorKind::NotAllowed => (13, 405, S::Functional, F::Request, A::Execute, O::Class, "NotAllowed"),
            ErrorKind::PackageNotInGroup => (
                14,
                409,
                S::Functional,
                F::Database,
                A::Execute,
                O::Instance,
                "PackageNotInGroup",
            ),
            ErrorKind::SourceMissing => (15, 422, S::Functional, F::File, A::Open, O::Source, "SourceMissing"),
            ErrorKind::SourceUnreadable => (16, 422, S::Functional, F::File, A::Read, O::Source, "SourceUnreadable"),
            ErrorKind::NoSource => (17, 409, S::Functional, F::Request, A::Execute, O::Source, "NoSource"),
            ErrorKind::SiteMismatch => (
                18,
                400,
                S::Functional,
                F::Request,
                A::Parse,
                O::Parameter,
                "SiteMismatch",
            ),
            ErrorKind::Unauthenticated => (19, 401, S::Major, F::Security, A::Open, O::Token, "Unauthenticated"),
            ErrorKind::Forbidden => (20, 403, S::Major, F::Security, A::Execute, O::Token, "Forbidden"),
            ErrorKind::Storage => (21, 500, S::Major, F::File, A::Persist, O::Instance, "Storage"),
            ErrorKind::Internal => (22, 500, S::Major, F::Internal, A::Execute, O::Instance, "Internal"),
            ErrorKind::InvalidState => (
                23,
                409,
                S::Functional,
                F::Database,
                A::Execute,
                O::Instance,
                "InvalidState",
            ),
            ErrorKind::Conflict => (24, 409, S::Functional, F::Database, A::Execute, O::Instance, "Conflict"),
            ErrorKind::SourceNotAllowed => (
                25,
                403,
                S::Functional,
                F::Security,
                A::Open,
                O::Source,
                "SourceNotAllowed",
            ),
        }
    }

    /// The method's non-zero `ReturnValue`.
    pub fn return_value(self) -> i32 {
        self.parts().0
    }

    pub fn http_status(self) -> u16 {
        self.parts().1
    }

    pub fn name(self) -> &'static str {
        self.parts().6
    }

    /// The 32-bit `SMS_ExtendedStatus.ErrorCode`.
    pub fn error_code(self) -> u32 {
        let (rv, _, sev, fac, act, obj, _) = self.parts();
        ((sev as u32) << 30) | ((fac as u32) << 22) | ((act as u32) << 16) | ((obj as u32) << 8) | (rv as u32 & 0xFF)
    }
}

impl ErrorKind {
    /// When it happens, and what the administrator does about it (docs/errors.md).
    pub fn help(self) -> (&'static str, &'static str) {
        match self {
            ErrorKind::UnknownClass => (
                "The class name is not one the API serves (class and method names match in any case).",
                "Check the spelling against docs/api.md, e.g. `SMS_Package`.",
            ),
            ErrorKind::UnknownInstance => (
                "No instance has the given key (a PackageID, NALPath, GroupID, …), or a method names one that does not exist.",
                "List the class to find the right key.",
            ),
            ErrorKind::UnknownMethod => (
                "The class has no such method, or it was called on the class instead of an instance (or the other way round).",
                "See the class's methods in docs/api.md; the message says how to call it.",
            ),
            ErrorKind::MalformedKey => (
                "The `('key')` part of the path cannot be read, or a composite key is incomplete.",
                "Quote string keys, double inner quotes (`''`), and name every part of a composite key.",
            ),
            ErrorKind::MalformedQuery => (
                "`$filter`, `$orderby`, `$top` or `$skip` cannot be read.",
                "The message gives the position; see the OData subset in docs/api.md.",
            ),
            ErrorKind::UnknownProperty => (
                "A query, body or method names a property or parameter the class does not have.",
                "Check the name and its casing against docs/api.md.",
            ),
            ErrorKind::InvalidValue => (
                "A value has the wrong type or is out of range (Priority 1–3, a relative PkgSourcePath, …).",
                "Correct the value the message names.",
            ),
            ErrorKind::ReadOnlyProperty => (
                "The body sets a read-only property or a key.",
                "Leave it out; keys change by deleting and creating.",
            ),
            ErrorKind::MissingProperty => (
                "A required property or parameter is missing.",
                "Add the property the message names.",
            ),
            ErrorKind::MalformedBody => (
                "The request body is not a JSON object.",
                "Send `Content-Type: application/json` with an object body.",
            ),
            ErrorKind::BodyTooLarge => (
                "The body is larger than `max-body-bytes` in site.toml (1 MiB by default).",
                "Send less, or raise the limit.",
            ),
            ErrorKind::NameTaken => (
                "A name that must be unique (DP, DP group) is already used.",
                "Choose another name, or change the existing instance.",
            ),
            ErrorKind::NotAllowed => (
                "The class does not allow this operation (creating a status row, deleting SMS_Site, …), or the HTTP verb does not fit the path.",
                "See which operations the class allows in docs/api.md.",
            ),
            ErrorKind::PackageNotInGroup => (
                "ReDistributePackage or RemovePackages named a package that is not assigned to the group.",
                "Assign it with AddPackages first, or use the right group.",
            ),
            ErrorKind::SourceMissing => (
                "The package source folder does not exist or is not a folder.",
                "Create the folder or correct PkgSourcePath.",
            ),
            ErrorKind::SourceUnreadable => (
                "The source cannot be snapshotted: unreadable, a name or link target that is not UTF-8, a file changing while read.",
                "Fix what the message names and call again; nothing was recorded.",
            ),
            ErrorKind::NoSource => (
                "RefreshPkgSource on a package without a source folder (PkgSourceFlag 1).",
                "Set PkgSourcePath (and PkgSourceFlag 2) first.",
            ),
            ErrorKind::SiteMismatch => (
                "A SiteCode does not match the site of the DP it goes with.",
                "Use the DP's own site code (SMS_DistributionPointInfo.SiteCode).",
            ),
            ErrorKind::Unauthenticated => (
                "No bearer token, or an unknown or revoked one.",
                "Send `Authorization: Bearer <token>`; see `pkgdist token`.",
            ),
            ErrorKind::Forbidden => (
                "A read-only (ReadOnlyAnalyst) token tried to change something or call a method.",
                "Use a FullAdministrator token.",
            ),
            ErrorKind::Storage => (
                "The content library could not record new content (disk full, I/O error).",
                "See the site log; free space or repair the disk, then call again.",
            ),
            ErrorKind::InvalidState => (
                "The instance is not in a state that allows the operation: nothing to cancel, validating content being removed, revoking the last administrator token.",
                "Read the instance's state; the message says what would allow it.",
            ),
            ErrorKind::Conflict => (
                "The instance changed while the request was handled (a job finished, another change landed); nothing was applied.",
                "Read the instance's state again and call again if the operation still applies.",
            ),
            ErrorKind::Internal => (
                "An unexpected failure; the request was not applied.",
                "See the site log and report it.",
            ),
            ErrorKind::SourceNotAllowed => (
                "PkgSourcePath is not inside a folder packages may be made from (allowed-source-roots in site.toml), after its symlinks are resolved.",
                "Move the source into one of those folders, or add its folder to allowed-source-roots and restart the site.",
            ),
        }
    }
}

/// The table of docs/errors.md, generated so that the document lists exactly the codes the
/// code can return.
pub fn errors_markdown() -> String {
    let mut out = String::from(
        "# Error codes\n\n\
         Generated from `crates/pkgdist-core/src/errors.rs` (a test fails when this file is out of date;\n\
         regenerate with `UPDATE_DOCS=1 cargo nextest run -p pkgdist-core errors`).\n\n\
         A failing call answers with an HTTP error status and a body\n\n\
         ```json\n\
         {\"ReturnValue\": 14, \"error\": {\"code\": \"PackageNotInGroup\", \"message\": \"…\"},\n \
         \"ExtendedStatus\": {\"__CLASS\": \"SMS_ExtendedStatus\", \"ErrorCode\": 1086652942, \"Description\": \"…\",\n  \
         \"Operation\": \"SMS_DistributionPointGroup.ReDistributePackage\", \"ParameterInfo\": \"\", \"ObjectInfo\": \"PS100009\", \"ProviderName\": \"pkgdist\"}}\n\
         ```\n\n\
         `ReturnValue` is the method's non-zero SInt32 result, stable across releases. `ErrorCode` packs, as\n\
         ConfigMgr's `SMS_ExtendedStatus.ErrorCode` does, severity (bits 31–30: 1 functional, 2 minor,\n\
         3 major), facility (27–22: 1 internal, 2 file, 3 database, 4 security, 5 request), action\n\
         (21–16: 1 open, 2 read, 3 persist, 4 delete, 5 execute, 6 parse), object (15–8: 1 parameter,\n\
         2 instance, 3 class, 4 method, 5 source, 6 token, 7 query, 8 body) and reason (7–0, equal to\n\
         `ReturnValue`). ConfigMgr's own numeric values for these fields are not published; these are pkgdist's.\n\n\
         A failed call changes nothing.\n\n\
         | ReturnValue | code | HTTP | ErrorCode | when | what to do |\n|---|---|---|---|---|---|\n",
    );
    for k in ErrorKind::ALL {
        let (when, todo) = k.help();
        out.push_str(&format!(
            "| {} | {} | {} | 0x{:08X} | {} | {} |\n",
            k.return_value(),
            k.name(),
            k.http_status(),
            k.error_code(),
            when,
            todo
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_and_decode() {
        let mut rvs = HashSet::new();
        let mut codes = HashSet::new();
        for k in ErrorKind::ALL {
            assert!(rvs.insert(k.return_value()), "{k:?}");
            assert!(codes.insert(k.error_code()), "{k:?}");
            let c = k.error_code();
            assert_eq!(c & 0xFF, k.return_value() as u32);
            assert!((1..=3).contains(&(c >> 30)));
            assert!(k.return_value() != 0);
        }
    }

    /// docs/errors.md is exactly what the code generates.
    #[test]
    fn errors_doc_is_current() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/errors.md");
        let generated = errors_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/errors.md is out of date: UPDATE_DOCS=1 cargo nextest run -p pkgdist-core errors"
        );
    }
}
