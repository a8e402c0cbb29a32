//! The site's operations: everything that changes what the site records, as functions over
//! typed inputs and rows. The HTTP adapters (`crate::adapters`), the scheduler, the
//! distribution manager and the site link all call these; none of them decides anything on an
//! error's text, only on [`OpError`]'s variants.
//!
//! Invariants every operation keeps:
//! - it checks everything first and changes nothing when it fails;
//! - what it changes in the database it changes in one transaction (the content library,
//!   written before the database, is the one exception: a crash between the two leaves an
//!   unreferenced version, which the next refresh steps past and garbage collection reclaims);
//! - what it records carries its status messages in the same transaction.
//!
//! | module | operations |
//! |---|---|
//! | [`packages`] | create, change, refresh (RefreshPkgSource and schedules), delete, distribute |
//! | [`rows`] | package-on-DP rows: target, redistribute, remove, validate, cancel |
//! | [`dps`] | register, change and delete distribution points |
//! | [`groups`] | DP groups and their methods |
//! | [`settings`] | the distribution settings |
//! | [`tokens`] | administrator tokens |
//!
//! Child sites and pull DPs' sources are in `crate::hierarchy`, on the same error type.

pub mod dps;
pub mod groups;
pub mod packages;
pub mod rows;
pub mod settings;
pub mod tokens;

use pkgdist_core::dpstate;
use pkgdist_core::errors::ErrorKind;
use pkgdist_db::DbError;

use crate::error::ApiError;

/// What kind of thing an operation could not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thing {
    Package,
    DistributionPoint,
    Group,
    /// A DP named as a group's member that is not one.
    GroupMember,
    Site,
    Token,
}

impl Thing {
    fn describe(self, key: &str) -> String {
        match self {
            Thing::Package => format!("no package {key}"),
            Thing::DistributionPoint => format!("no distribution point {key}; see SMS_DistributionPointInfo"),
            Thing::Group => format!("no distribution point group {key}"),
            Thing::GroupMember => format!("{key} is not a member of the group"),
            Thing::Site => format!("no site {key} below this one; see SMS_Site"),
            Thing::Token => format!("no administrator token {key}"),
        }
    }
}

/// How an input value is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Out of range, malformed, or at odds with another value.
    Value,
    /// Absent though needed.
    Missing,
    /// A site code that is not the DP's own site.
    SiteMismatch,
}

/// What is wrong with a package's source folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceProblem {
    Missing,
    NotAFolder,
    /// The folder (or something in it) cannot be read; the reason is the system's.
    Unreadable(String),
    /// The folder is outside `allowed-source-roots` (site.toml), listed here.
    NotAllowed(Vec<String>),
    /// The folder is, is inside or holds this private folder (the server's own data).
    Private(String),
}

/// Why an operation refuses to act on something that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The package belongs to another site (its SourceSite); only the owner changes it.
    OwnedElsewhere { owner: String, verb: &'static str },
    /// The DP belongs to a site below this one.
    DpOfChildSite {
        name: String,
        site: String,
        via: String,
        verb: &'static str,
    },
    /// Pull DPs fetch from this DP (their names).
    SourceOfPullDps { name: String, users: Vec<String> },
    /// This site itself, through SMS_Site.
    OwnSite { verb: &'static str },
    /// A site further below, which only its parent manages.
    BelowChild {
        via: String,
        parent: String,
        verb: &'static str,
    },
    /// Revoking the last live FullAdministrator token.
    LastAdministrator,
    /// A refresh of a package without a source folder.
    NoSource,
    /// The package is at the highest SourceVersion.
    VersionsExhausted,
    /// The package is not assigned to the group.
    NotInGroup,
    /// The row's state does not allow the action (`dpstate::on_action`).
    RowState(dpstate::Refused),
}

/// What changed under an operation between its reading and its writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raced {
    /// A package-on-DP row: a job finished or another change landed.
    Row,
    /// A package was deleted or changed while its source was read.
    Package,
}

/// Why an operation did not happen. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{}", .thing.describe(.key))]
    NotFound { thing: Thing, key: String },
    #[error("package {package} is not on DP {nal}")]
    NotOnDp { package: String, nal: String },
    /// An input the operation cannot take; `param` names the property or parameter.
    #[error("{why}")]
    Invalid {
        kind: Invalid,
        param: &'static str,
        why: String,
    },
    #[error("{}", source_text(.path, .problem))]
    Source { path: String, problem: SourceProblem },
    #[error("{}", refusal_text(.object, .reason))]
    Refused { object: String, reason: Refusal },
    #[error("{}", raced_text(.object, *.what))]
    Conflict { object: String, what: Raced },
    /// The content library failed; `what` says at what.
    #[error("{what}: {source}")]
    Library {
        what: String,
        source: pkgdist_content::ContentError,
    },
    /// A failure that is a bug or a broken machine, not the request's (a task that panicked).
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn source_text(path: &str, problem: &SourceProblem) -> String {
    match problem {
        SourceProblem::Missing => format!("the source folder {path} does not exist; create it or fix PkgSourcePath"),
        SourceProblem::NotAFolder => {
            format!("{path} is not a folder; PkgSourcePath names the package's source folder")
        }
        SourceProblem::Unreadable(why) => format!("cannot read the source {path}: {why}"),
        SourceProblem::Private(private) => format!(
            "{path} cannot be a package source: it is, holds or is inside {private}, the server's own data (tokens, keys, database); choose a folder apart from it"
        ),
        SourceProblem::NotAllowed(roots) if roots.is_empty() => format!(
            "{path} cannot be a package source: this site takes sources from no folder yet; list the folders packages may be made from in allowed-source-roots (site.toml) and restart the site"
        ),
        SourceProblem::NotAllowed(roots) => format!(
            "{path} is not inside a folder packages may be made from ({}); move the source there, or add its folder to allowed-source-roots in site.toml and restart the site",
            roots.join(", ")
        ),
    }
}

fn refusal_text(object: &str, reason: &Refusal) -> String {
    match reason {
        Refusal::OwnedElsewhere { owner, verb } => {
            format!("package {object} belongs to site {owner} (its SourceSite); it can only be {verb} there")
        }
        Refusal::DpOfChildSite { name, site, via, verb } => {
            format!("DP {name} belongs to site {site} (reached through {via}); it can only be {verb} at its own site")
        }
        Refusal::SourceOfPullDps { name, users } => format!(
            "DP {name} is a source of pull DP(s) {}: give them other sources (`pkgdist dp set … --pull-from`) first",
            users.join(", ")
        ),
        Refusal::OwnSite { verb } => format!(
            "{object} is this site: it cannot be {verb} through SMS_Site (site.toml names it; PKGDIST_DistributionSettings holds its settings)"
        ),
        Refusal::BelowChild { via, parent, verb } => {
            format!("site {object} is below child {via}; it can only be {verb} at its parent, {parent}")
        }
        Refusal::LastAdministrator => "this is the last live FullAdministrator token: revoking it would lock every administrator out. Create another first".into(),
        Refusal::NoSource => format!(
            "package {object} has no source folder to refresh; set PkgSourcePath (and PkgSourceFlag 2) first"
        ),
        Refusal::VersionsExhausted => format!("package {object} has reached the highest SourceVersion"),
        Refusal::NotInGroup => {
            format!("package {object} is not assigned to this group; add it with AddPackages first")
        }
        Refusal::RowState(r) => format!("{object}: {r}"),
    }
}

fn raced_text(object: &str, what: Raced) -> String {
    match what {
        Raced::Row => format!(
            "{object} changed while the request was handled (a job finished or another change landed); look at its state and try again"
        ),
        Raced::Package => {
            format!("package {object} was deleted or changed while its source was being read; nothing was recorded")
        }
    }
}

impl OpError {
    pub(crate) fn not_found(thing: Thing, key: &str) -> Self {
        OpError::NotFound {
            thing,
            key: key.to_owned(),
        }
    }

    pub(crate) fn invalid(param: &'static str, why: impl Into<String>) -> Self {
        OpError::Invalid {
            kind: Invalid::Value,
            param,
            why: why.into(),
        }
    }

    pub(crate) fn missing(param: &'static str, why: impl Into<String>) -> Self {
        OpError::Invalid {
            kind: Invalid::Missing,
            param,
            why: why.into(),
        }
    }

    pub(crate) fn refused(object: &str, reason: Refusal) -> Self {
        OpError::Refused {
            object: object.to_owned(),
            reason,
        }
    }

    /// Worth trying again as it is: the database failed, or something changed under the
    /// operation.
    pub fn transient(&self) -> bool {
        matches!(self, OpError::Db(_) | OpError::Conflict { .. })
    }

    /// The API's error kind for this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpError::NotFound { .. } | OpError::NotOnDp { .. } => ErrorKind::UnknownInstance,
            OpError::Invalid { kind, .. } => match kind {
                Invalid::Value => ErrorKind::InvalidValue,
                Invalid::Missing => ErrorKind::MissingProperty,
                Invalid::SiteMismatch => ErrorKind::SiteMismatch,
            },
            OpError::Source { problem, .. } => match problem {
                SourceProblem::Missing | SourceProblem::NotAFolder => ErrorKind::SourceMissing,
                SourceProblem::Unreadable(_) => ErrorKind::SourceUnreadable,
                SourceProblem::NotAllowed(_) | SourceProblem::Private(_) => ErrorKind::SourceNotAllowed,
            },
            OpError::Refused { reason, .. } => match reason {
                Refusal::NoSource => ErrorKind::NoSource,
                Refusal::NotInGroup => ErrorKind::PackageNotInGroup,
                _ => ErrorKind::InvalidState,
            },
            OpError::Conflict { .. } => ErrorKind::Conflict,
            OpError::Library { .. } => ErrorKind::Storage,
            OpError::Internal(_) => ErrorKind::Internal,
            OpError::Db(DbError::Conflict(_)) => ErrorKind::NameTaken,
            OpError::Db(DbError::Deleting(_)) => ErrorKind::InvalidState,
            OpError::Db(_) => ErrorKind::Internal,
        }
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        let kind = e.kind();
        let message = e.to_string();
        match e {
            OpError::Db(db) => db.into(),
            OpError::Internal(what) => ApiError::internal(what),
            OpError::Library { .. } => {
                tracing::error!(error = %message, "content library failure");
                ApiError::new(kind, message)
            }
            OpError::NotFound { key, .. } => ApiError::new(kind, message).object(key),
            OpError::NotOnDp { package, nal } => ApiError::new(kind, message).object(format!("{package} on {nal}")),
            OpError::Invalid { param, .. } => ApiError::new(kind, message).param(param),
            OpError::Source { .. } => ApiError::new(kind, message).param("PkgSourcePath"),
            OpError::Refused { object, .. } | OpError::Conflict { object, .. } => {
                ApiError::new(kind, message).object(object)
            }
        }
    }
}
