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
    Unauthenticated,
    Forbidden,
    Storage,
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 22] = [
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
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::Storage,
        ErrorKind::Internal,
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
}
