//! Administrator tokens (`PKGDIST_AdminToken`): created with a role, shown once, kept only
//! as a hash; revoked, never deleted, and never the last live FullAdministrator.

use pkgdist_db::TokenRow;
use pkgdist_proto::Role;

use super::{OpError, Refusal, Thing};
use crate::state::AppState;
use crate::{auth, now};

/// Creates a token; the answer carries the token itself, which is not kept.
pub async fn create(state: &AppState, name: &str, role: Role) -> Result<(TokenRow, String), OpError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(OpError::invalid("Name", "Name cannot be empty"));
    }
    let token = auth::generate();
    let row = TokenRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        role: role.as_str().into(),
        created_at: now(),
        revoked_at: None,
    };
    state.db.insert_token(&row, &auth::hash(&token)).await?;
    tracing::info!(token = %row.id, role = role.as_str(), "administrator token created");
    Ok((row, token))
}

/// Revokes token `id`, unless it is the last live FullAdministrator's.
pub async fn revoke(state: &AppState, id: &str) -> Result<(), OpError> {
    let t = state
        .db
        .token(id)
        .await?
        .ok_or_else(|| OpError::not_found(Thing::Token, id))?;
    let live_admin = t.role == Role::FullAdministrator.as_str() && t.revoked_at.is_none();
    if live_admin && state.db.other_live_admins(id).await? == 0 {
        return Err(OpError::refused(id, Refusal::LastAdministrator));
    }
    state.db.revoke_token(id, &now()).await?;
    tracing::info!(token = %id, "administrator token revoked");
    Ok(())
}
