//! Bearer tokens: random secrets, stored as BLAKE3 hashes, each with a role.

use std::path::Path;

use pkgdist_db::{Db, TokenRow};
use pkgdist_proto::Role;
use rand::RngCore;

use crate::error::SiteError;
use crate::now;

/// Environment variable whose value becomes the first administrator token on first start.
pub const BOOTSTRAP_ENV: &str = "PKGDIST_BOOTSTRAP_TOKEN";

pub fn hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// A new random token: `pkgd_` + 64 hex digits (256 bits).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("pkgd_{hex}")
}

/// On a site with no token yet, creates the first full-administrator token: from
/// `PKGDIST_BOOTSTRAP_TOKEN` if set, else random and written to `DIR/bootstrap-token` (0600).
pub async fn ensure_bootstrap(db: &Db, dir: &Path) -> Result<(), SiteError> {
    if !db.tokens().await?.is_empty() {
        return Ok(());
    }
    let (token, from_env) = match std::env::var(BOOTSTRAP_ENV) {
        Ok(t) if t.len() >= 16 => (t, true),
        Ok(_) => {
            return Err(SiteError::Config(format!(
                "{BOOTSTRAP_ENV} must be at least 16 characters"
            )));
        }
        Err(_) => (generate(), false),
    };
    if !from_env {
        let path = dir.join("bootstrap-token");
        pkgdist_node::util::write_file(&path, format!("{token}\n").as_bytes(), true)
            .map_err(|e| SiteError::io(&path, e))?;
        tracing::info!(path = %path.display(), "wrote the bootstrap administrator token");
    }
    let row = TokenRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: "bootstrap".into(),
        role: Role::FullAdministrator.as_str().into(),
        created_at: now(),
        revoked_at: None,
    };
    db.insert_token(&row, &hash(&token)).await?;
    Ok(())
}

/// Failed authentications per client (an IPv4 address or an IPv6 /64), counting requests
/// that presented credentials and were refused. The first few in a window are answered at
/// once (a mistyped token); past them each further failure is answered only after a delay
/// that doubles with each (up to [`Failures::MAX_DELAY`]), and logged, so guessing tokens
/// from one address costs seconds per guess and shows in the log. Successes do not reset the
/// count: a holder of one token cannot clear the way for guessing another.
#[derive(Debug, Default)]
pub struct Failures(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, std::time::Instant)>>);

impl Failures {
    /// Failures in a window answered without delay.
    pub const FREE: u32 = 5;
    /// The window failures are counted in.
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
    /// The longest delay.
    pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(8);
    /// Addresses tracked at most; past that, those outside the window are forgotten.
    const MAX_TRACKED: usize = 4096;

    /// Records a failure from `ip`; answers how long to wait before answering it.
    pub fn failed(&self, ip: std::net::IpAddr) -> std::time::Duration {
        // Counted as connections are: an IPv4 address, or an IPv6 /64.
        let ip = pkgdist_node::listen::client_key(ip);
        let now = std::time::Instant::now();
        let mut seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= Self::MAX_TRACKED && !seen.contains_key(&ip) {
            seen.retain(|_, (_, first)| now.duration_since(*first) < Self::WINDOW);
            if seen.len() >= Self::MAX_TRACKED {
                // Still full: forget the client whose window began longest ago, not everyone.
                if let Some(oldest) = seen.iter().min_by_key(|(_, (_, first))| *first).map(|(k, _)| *k) {
                    seen.remove(&oldest);
                }
            }
        }
        let (count, first) = seen.entry(ip).or_insert((0, now));
        if now.duration_since(*first) >= Self::WINDOW {
            (*count, *first) = (0, now);
        }
        *count += 1;
        let over = count.saturating_sub(Self::FREE);
        if over == 0 {
            return std::time::Duration::ZERO;
        }
        if over == 1 || count.is_multiple_of(100) {
            tracing::warn!(client = %ip, failures = *count, "repeated failed authentications: answering them slowly");
        }
        let delay = std::time::Duration::from_millis(250).saturating_mul(1 << over.min(6).saturating_sub(1));
        delay.min(Self::MAX_DELAY)
    }
}
