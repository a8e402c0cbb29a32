//! Audit messages: one per change made through the management API, naming the token that
//! made it (migration 0011). Written after the change succeeded, by the API's authentication
//! layer, so every route that changes something is covered without each remembering to.

use crate::{Db, Result};

/// An audit message to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    pub time: String,
    pub site_code: String,
    /// The host of the site process that recorded it.
    pub machine_name: String,
    /// ConfigMgr's audit message IDs: 30000 created, 30001 modified (a method call included),
    /// 30002 deleted.
    pub message_id: i64,
    pub token_id: String,
    pub token_name: String,
    /// The HTTP method of the request.
    pub http_method: String,
    /// What the request named: the WMI path after `/AdminService/wmi/`.
    pub target: String,
    /// The HTTP status it was answered with.
    pub status: i64,
    pub description: String,
}

impl Db {
    /// Records an audit message; answers its ID.
    pub async fn add_audit(&self, m: &NewAudit) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO audit_messages (time, site_code, machine_name, message_id, token_id, token_name,
                http_method, target, status, description)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(m.time.clone())
        .bind(m.site_code.clone())
        .bind(m.machine_name.clone())
        .bind(m.message_id)
        .bind(m.token_id.clone())
        .bind(m.token_name.clone())
        .bind(m.http_method.clone())
        .bind(m.target.clone())
        .bind(m.status)
        .bind(m.description.clone())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Deletes audit messages older than `before` (through the time index); answers how many.
    pub async fn prune_audit(&self, before: &str) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM audit_messages WHERE time < $1")
            .bind(before.to_owned())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
