//! The management API's part of the hierarchy, `SMS_Site`: this site and the sites below it
//! as instances, and the operations that register, change and forget child sites. (What only
//! a package's owner or a DP's own site may do is checked in `crate::ops`.)

use std::collections::HashMap;

use pkgdist_db::SiteRow;
use serde_json::{Value, json};

use crate::classes::{Object, obj};
use crate::error::ApiResult;
use crate::ops::{OpError, Refusal, Thing};
use crate::state::AppState;
use crate::{auth, now};

// ---- SMS_Site ----

/// ConfigMgr's `SMS_Site.Type` for a site `depth` levels below the top.
fn site_type(depth: u32, has_children: bool) -> u32 {
    match depth {
        0 if has_children => 4,
        0 | 1 => 2,
        _ => 1,
    }
}

pub async fn site_objects(state: &AppState) -> ApiResult<Vec<Object>> {
    let sites = state.db.sites().await?;
    let own = state.site_code.to_string();
    let pos = state.position();
    let parents: HashMap<&str, &str> = sites
        .iter()
        .map(|s| (s.site_code.as_str(), s.parent_code.as_str()))
        .collect();
    let has_children = |code: &str| sites.iter().any(|s| s.parent_code == code);
    // Levels below this site, following parents up to it.
    let below = |start: &str| {
        let mut code = start.to_owned();
        let mut n = 0;
        while code != own && n <= sites.len() {
            code = parents
                .get(code.as_str())
                .map_or_else(|| own.clone(), |p| (*p).to_owned());
            n += 1;
        }
        n
    };
    let mut out = vec![obj(json!({
        "SiteCode": own,
        "SiteName": state.site_name,
        "Type": site_type(pos.depth, has_children(&own)),
        "ReportingSiteCode": pos.parent.unwrap_or_default(),
        "ServerName": Value::Null,
        "Version": env!("CARGO_PKG_VERSION"),
        "Enrolled": true,
        "RateLimitBytesPerSecond": 0,
        "LastReportTime": Value::Null,
    }))];
    for s in &sites {
        let depth = pos.depth + u32::try_from(below(&s.site_code)).unwrap_or(u32::MAX);
        out.push(site_object(s, site_type(depth, has_children(&s.site_code))));
    }
    Ok(out)
}

pub(crate) fn site_object(s: &SiteRow, ty: u32) -> Object {
    obj(json!({
        "SiteCode": s.site_code,
        "SiteName": s.site_name,
        "Type": ty,
        "ReportingSiteCode": s.parent_code,
        "ServerName": s.url,
        "Version": Value::Null,
        "Enrolled": s.site_code != s.via_site || s.credential_hash.is_some(),
        "RateLimitBytesPerSecond": s.rate_bytes_per_sec,
        "LastReportTime": s.last_report_at,
    }))
}

/// A site link's rate limit as given: 0 (unlimited) or at least 1 KiB/s.
fn rate(v: Option<u64>) -> Result<Option<i64>, OpError> {
    let Some(v) = v else {
        return Ok(None);
    };
    if v != 0 && v < 1024 {
        return Err(OpError::invalid(
            "RateLimitBytesPerSecond",
            "RateLimitBytesPerSecond must be 0 (unlimited) or at least 1024",
        ));
    }
    Ok(Some(i64::try_from(v).unwrap_or(i64::MAX)))
}

/// A child site as an administrator registers it.
#[derive(Debug, Clone, Default)]
pub struct NewSite {
    pub code: String,
    /// `None`: the code.
    pub name: Option<String>,
    pub rate_bytes_per_sec: Option<u64>,
}

/// Registers a child site; the answer carries its one-time enrollment token.
pub async fn create_site(state: &AppState, new: &NewSite) -> Result<(SiteRow, String), OpError> {
    let code = new.code.trim().to_ascii_uppercase();
    code.parse::<pkgdist_core::SiteCode>()
        .map_err(|e| OpError::invalid("SiteCode", format!("SiteCode: {e}")))?;
    if code == state.site_code.as_str() || state.position().parent.as_deref() == Some(code.as_str()) {
        return Err(OpError::invalid(
            "SiteCode",
            format!("{code} is this site or its parent; a child needs a code of its own"),
        ));
    }
    let token = auth::generate();
    let row = SiteRow {
        site_code: code.clone(),
        site_name: new.name.clone().unwrap_or_else(|| code.clone()),
        parent_code: state.site_code.to_string(),
        via_site: code.clone(),
        url: None,
        enrollment_token_hash: Some(auth::hash(&token)),
        credential_hash: None,
        cert_sha256: None,
        status_seq: 0,
        rate_bytes_per_sec: rate(new.rate_bytes_per_sec)?.unwrap_or(0),
        applied_seq: 0,
        last_report_at: None,
        created_at: now(),
    };
    state.db.insert_site(&row).await?;
    tracing::info!(site = %code, "child site registered");
    Ok((row, state.enrollment_token(token)))
}

/// Child site `code` (not this site, not one further below), or why not.
async fn child(state: &AppState, code: &str, verb: &'static str) -> Result<SiteRow, OpError> {
    if code == state.site_code.as_str() {
        return Err(OpError::refused(code, Refusal::OwnSite { verb }));
    }
    let s = state
        .db
        .site(code)
        .await?
        .ok_or_else(|| OpError::not_found(Thing::Site, code))?;
    if s.site_code != s.via_site {
        return Err(OpError::refused(
            code,
            Refusal::BelowChild {
                via: s.via_site.clone(),
                parent: s.parent_code.clone(),
                verb,
            },
        ));
    }
    Ok(s)
}

/// Changes a child site's link: its rate limit (its name is the child's own).
pub async fn update_site(
    state: &AppState,
    code: &str,
    name: Option<&str>,
    rate_bytes_per_sec: Option<u64>,
) -> Result<SiteRow, OpError> {
    child(state, code, "changed").await?;
    if name.is_some() {
        return Err(OpError::invalid(
            "SiteName",
            "SiteName is the child's own (its site.toml); it shows here from its reports",
        ));
    }
    if let Some(r) = rate(rate_bytes_per_sec)? {
        state.db.set_site_rate(code, r).await?;
    }
    state
        .db
        .site(code)
        .await?
        .ok_or_else(|| OpError::not_found(Thing::Site, code))
}

/// Forgets a child site, with everything known through it.
pub async fn delete_site(state: &AppState, code: &str) -> Result<(), OpError> {
    child(state, code, "deleted").await?;
    state.db.delete_site(code).await?;
    tracing::info!(site = %code, "child site deleted, with everything known through it");
    Ok(())
}

/// Site `code` and every site below it, as this site knows them (a site's `via_site` is the
/// child it is reached through).
pub(crate) async fn subtree(state: &AppState, code: &str) -> ApiResult<std::collections::HashSet<String>> {
    let mut below: std::collections::HashSet<String> = state
        .db
        .sites()
        .await?
        .into_iter()
        .filter(|s| s.via_site == code)
        .map(|s| s.site_code)
        .collect();
    below.insert(code.to_owned());
    Ok(below)
}

/// Takes the packages owned in child `child`'s subtree (the sites it reports, `reported_sites`,
/// are in it), as it reports them when they change:
/// new ones inserted, changed ones updated (read-only here: only the owner changes them), and
/// those no longer listed deleted (off the DPs here and elsewhere below first). A package claiming an owner outside the subtree, or an ID
/// another site owns here, is refused (logged) and the rest taken.
pub(crate) async fn packages_from_below(
    state: &AppState,
    child: &str,
    reported_sites: &[&str],
    packages: &[crate::link::PackageMeta],
) -> ApiResult<()> {
    // The subtree as known here, and as this report tells it (it is applied after the
    // packages, and may be the first to name the owner).
    let mut below = subtree(state, child).await?;
    below.extend(reported_sites.iter().map(|s| (*s).to_owned()));
    let mut changed = false;
    for meta in packages {
        // A package ID names its owner: a child cannot claim one of another site's numbers.
        let owner_of_id = meta
            .package_id
            .parse::<pkgdist_core::PackageId>()
            .ok()
            .map(|p| p.site());
        if owner_of_id.is_none_or(|s| s.as_str() != meta.source_site) {
            tracing::warn!(child, package = %meta.package_id, owner = %meta.source_site, "a child reported a package whose ID is not its owner's; ignored");
            continue;
        }
        if !below.contains(&meta.source_site) {
            tracing::warn!(child, package = %meta.package_id, owner = %meta.source_site, "a child reported a package owned outside its subtree; ignored");
            continue;
        }
        match state.db.upsert_package_from_below(&meta.row()).await {
            Ok(c) => changed |= c,
            Err(pkgdist_db::DbError::Conflict(what)) => {
                tracing::error!(child, package = %meta.package_id, %what, "package from below refused: its ID is already used here");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let listed: std::collections::HashSet<&str> = packages.iter().map(|m| m.package_id.as_str()).collect();
    let owners: Vec<String> = below.iter().cloned().collect();
    for p in state.db.packages_owned_by(&owners, false).await? {
        if !listed.contains(p.package_id.as_str())
            && crate::ops::packages::deleted_at_owner(state, &p.package_id).await?
        {
            tracing::info!(package = %p.package_id, owner = %p.source_site, "package deleted below: deleting it here, off this site's DPs first");
            changed = true;
        }
    }
    if changed {
        state.work.notify_one();
    }
    Ok(())
}
