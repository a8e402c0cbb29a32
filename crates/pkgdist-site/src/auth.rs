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
