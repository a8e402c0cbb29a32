//! The distribution settings (`PKGDIST_DistributionSettings`): the site's `[distribution]`
//! with the administrator's changes on top, kept in the database and in force at once.

use super::OpError;
use crate::state::AppState;
use crate::{DISTRIBUTION_SETTINGS, SiteError, config};

/// The settings an administrator changes; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct SettingsChange {
    pub max_packages: Option<u64>,
    pub max_threads_per_package: Option<u64>,
    pub retry_count: Option<u64>,
    pub retry_delay_mins: Option<u64>,
    pub retry_delay_secs: Option<u64>,
}

/// Applies `change`, checked against ConfigMgr's ranges as the whole it makes.
pub async fn update(state: &AppState, change: SettingsChange) -> Result<(), OpError> {
    let mut o = crate::distribution_overrides(&state.db).await.map_err(|e| match e {
        SiteError::Db(db) => OpError::Db(db),
        other => OpError::Internal(other.to_string()),
    })?;
    if let Some(v) = change.max_packages {
        o.max_packages = Some(usize::try_from(v).unwrap_or(usize::MAX));
    }
    if let Some(v) = change.max_threads_per_package {
        o.max_threads_per_package = Some(usize::try_from(v).unwrap_or(usize::MAX));
    }
    if let Some(v) = change.retry_count {
        o.retry_count = Some(u32::try_from(v).unwrap_or(u32::MAX));
    }
    if let Some(v) = change.retry_delay_mins {
        if !(1..=1440).contains(&v) {
            return Err(OpError::invalid(
                "DelayBeforeRetryingMins",
                "DelayBeforeRetryingMins must be 1-1440",
            ));
        }
        o.retry_delay_secs = Some(v * 60);
    }
    if let Some(v) = change.retry_delay_secs {
        if let Some(mins) = change.retry_delay_mins
            && mins * 60 != v
        {
            return Err(OpError::invalid(
                "DelayBeforeRetryingSecs",
                format!(
                    "DelayBeforeRetryingMins ({mins}) and DelayBeforeRetryingSecs ({v}) disagree: give one of them"
                ),
            ));
        }
        o.retry_delay_secs = Some(v);
    }
    let next: config::Distribution = state.dist().with(&o);
    next.check().map_err(|e| OpError::invalid("", e.to_string()))?;
    let json = serde_json::to_string(&o).map_err(|e| OpError::Internal(e.to_string()))?;
    state.db.set_setting(DISTRIBUTION_SETTINGS, &json).await?;
    state.set_dist(next);
    state.work.notify_one();
    tracing::info!(settings = %json, "distribution settings changed");
    Ok(())
}
