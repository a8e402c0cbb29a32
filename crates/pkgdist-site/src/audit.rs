//! Audit status messages: every change made through the management API is recorded with the
//! token (name and ID) that made it, as ConfigMgr's SMS Provider records audit messages
//! (MessageType 768) for what administrators do. They are read as `SMS_StatusMessage`.
//!
//! Recorded by the authentication layer once a changing request has succeeded, so no route
//! can forget: what changes is told by the request's target and the catalog (a method marked
//! `changes_nothing` is not recorded, whatever the HTTP method). A refused or failed request
//! changed nothing and is logged instead. The message is written after the change: a site that dies in between has
//! made the change without its audit message (the log has the request).

use axum::http::Method;
use pkgdist_db::NewAudit;

use crate::state::AppState;

/// What a change did, as ConfigMgr numbers its audit messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// 30000: an instance was created.
    Created,
    /// 30001: an instance was changed, or a method was called (a method changes something).
    Modified,
    /// 30002: an instance was deleted.
    Deleted,
}

impl Action {
    pub fn message_id(self) -> i64 {
        match self {
            Action::Created => 30000,
            Action::Modified => 30001,
            Action::Deleted => 30002,
        }
    }
}

/// The longest target kept (a path is the client's to choose).
const MAX_TARGET: usize = 512;

/// Who made a change: the token's name and ID.
#[derive(Debug, Clone)]
pub struct Who {
    pub token_id: String,
    pub token_name: String,
}

/// Records that `who` did `action` to `target` (answered `status`). A failure to record is
/// logged, never the request's failure: the change is made.
pub async fn record(state: &AppState, who: &Who, action: Action, method: &Method, target: &str, status: u16) {
    let target: String = percent_decoded(target).chars().take(MAX_TARGET).collect();
    let verb = match action {
        Action::Created => "created an instance of",
        Action::Modified if target.contains('.') || target.contains('/') => "called a method on",
        Action::Modified => "modified",
        Action::Deleted => "deleted",
    };
    let m = NewAudit {
        time: crate::now(),
        site_code: state.site_code.to_string(),
        machine_name: host_name().to_owned(),
        message_id: action.message_id(),
        token_id: who.token_id.clone(),
        token_name: who.token_name.clone(),
        http_method: method.as_str().to_owned(),
        target: target.clone(),
        status: i64::from(status),
        description: format!(
            "token {:?} ({}) {verb} {target} ({method} answered {status})",
            who.token_name, who.token_id
        ),
    };
    if let Err(e) = state.db.add_audit(&m).await {
        tracing::error!(error = %e, token = %who.token_name, %target, "cannot record an audit message");
    }
}

/// This machine's host name, read once.
fn host_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    })
}

/// A path as its client meant it (`%27` as `'`); bytes that do not decode to UTF-8 are
/// replaced.
pub(crate) fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_kept_as_meant() {
        assert_eq!(percent_decoded("SMS_Package(%27P01%27)"), "SMS_Package('P01')");
        assert_eq!(percent_decoded("a%zz%4"), "a%zz%4");
        assert_eq!(percent_decoded("%E2%82%AC"), "€");
    }
}
