//! Small things every node's HTTP side and state files need.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A short plain-text answer (errors of the content routes).
pub fn plain(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into() + "\n",
    )
        .into_response()
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
}

/// Creates a daemon's data folder (and its parents) if missing, and makes it 0700 if others
/// could enter it: it holds the database and secrets, and behind a private folder no other
/// local user can reach them, whatever the modes of the files already there (earlier versions
/// created them 0644). A folder the daemon may not change (another owner's) is left as it is,
/// with a warning; a change is logged with the mode it replaced.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), was = format!("{mode:o}"), "made the data folder private (0700)")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), error = %e, "the data folder is open to other users and cannot be made private; make it 0700")
        }
    }
    Ok(())
}

/// `secs` since the epoch as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(
        |_| String::new(),
        |t| t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    )
}

/// Writes a file so that it is either absent or complete (temp file, fsync, rename, fsync of
/// the folder, so the new name survives a power loss too). With `private` it is created 0600,
/// so a secret is never readable by others, not even for a moment; otherwise it is 0644 (a
/// ready-file a supervisor reads), whatever the process's umask.
pub fn write_file(path: &Path, data: &[u8], private: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(folder)?.sync_all()
}
