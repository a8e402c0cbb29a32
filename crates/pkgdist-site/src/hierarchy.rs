//! The management API's part of the hierarchy: `SMS_Site` (this site and the sites below it;
//! registering and forgetting children), what only a package's owner or a DP's own site may
//! do, and pull DPs' sources.

use std::collections::{HashMap, HashSet};

use pkgdist_core::errors::ErrorKind;
use pkgdist_db::{DpRow, PullSourceRow, SiteRow};
use serde_json::{Map, Value, json};

use crate::classes::{Object, obj};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::{auth, now};

/// Refuses a change to a package owned by another site: only the owner reads its source and
/// records versions (ConfigMgr's SourceSite).
pub async fn check_owned(state: &AppState, id: &str, verb: &str) -> ApiResult<()> {
    if let Some(p) = state.db.package(id).await?
        && p.source_site != state.site_code.as_str()
    {
        return Err(ApiError::new(
            ErrorKind::InvalidState,
            format!(
                "package {id} belongs to site {} (its SourceSite); it can only be {verb} there",
                p.source_site
            ),
        )
        .object(id));
    }
    Ok(())
}

/// Refuses a change to a DP of a site below this one: its own site manages it.
pub fn check_own_dp(d: &DpRow, verb: &str) -> ApiResult<()> {
    match &d.via_site {
        Some(via) => Err(ApiError::new(
            ErrorKind::InvalidState,
            format!(
                "DP {} belongs to site {} (reached through {via}); it can only be {verb} at its own site",
                d.name, d.site_code
            ),
        )
        .object(d.nal_path.clone())),
        None => Ok(()),
    }
}

/// Refuses to delete a DP that pull DPs fetch from: they would be left without it, silently.
pub async fn check_not_a_source(state: &AppState, d: &DpRow) -> ApiResult<()> {
    let users: Vec<String> = state
        .db
        .pull_dps_of(&d.nal_path)
        .await?
        .into_iter()
        .map(|s| s.nal_path)
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    let dps = state.db.dps_by_nal(&users).await?;
    let names: Vec<&str> = users
        .iter()
        .map(|n| {
            dps.iter()
                .find(|x| &x.nal_path == n)
                .map_or(n.as_str(), |x| x.name.as_str())
        })
        .collect();
    Err(ApiError::new(
        ErrorKind::InvalidState,
        format!(
            "DP {} is a source of pull DP(s) {}: give them other sources (`pkgdist dp set … --pull-from`) first",
            d.name,
            names.join(", ")
        ),
    )
    .object(d.nal_path.clone()))
}

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

fn site_object(s: &SiteRow, ty: u32) -> Object {
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

fn rate(body: &Map<String, Value>) -> ApiResult<Option<i64>> {
    let Some(v) = body.get("RateLimitBytesPerSecond").and_then(Value::as_u64) else {
        return Ok(None);
    };
    if v != 0 && v < 1024 {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "RateLimitBytesPerSecond must be 0 (unlimited) or at least 1024",
        )
        .param("RateLimitBytesPerSecond"));
    }
    Ok(Some(i64::try_from(v).unwrap_or(i64::MAX)))
}

/// Registers a child site; the answer carries its one-time enrollment token.
pub async fn create_site(state: &AppState, body: &Map<String, Value>) -> ApiResult<Object> {
    let code = body
        .get("SiteCode")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase();
    code.parse::<pkgdist_core::SiteCode>()
        .map_err(|e| ApiError::new(ErrorKind::InvalidValue, format!("SiteCode: {e}")).param("SiteCode"))?;
    if code == state.site_code.as_str() || state.position().parent.as_deref() == Some(code.as_str()) {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!("{code} is this site or its parent; a child needs a code of its own"),
        )
        .param("SiteCode"));
    }
    let token = auth::generate();
    let row = SiteRow {
        site_code: code.clone(),
        site_name: body.get("SiteName").and_then(Value::as_str).unwrap_or(&code).to_owned(),
        parent_code: state.site_code.to_string(),
        via_site: code.clone(),
        url: None,
        enrollment_token_hash: Some(auth::hash(&token)),
        credential_hash: None,
        rate_bytes_per_sec: rate(body)?.unwrap_or(0),
        applied_seq: 0,
        last_report_at: None,
        created_at: now(),
    };
    state.db.insert_site(&row).await?;
    tracing::info!(site = %code, "child site registered");
    let mut o = site_object(&row, 2);
    o.insert("EnrollmentToken".into(), json!(token));
    Ok(o)
}

fn child_only(s: &SiteRow, verb: &str) -> ApiResult<()> {
    if s.site_code == s.via_site {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::InvalidState,
        format!(
            "site {} is below child {}; it can only be {verb} at its parent, {}",
            s.site_code, s.via_site, s.parent_code
        ),
    )
    .object(s.site_code.clone()))
}

fn own_site(code: &str, verb: &str) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidState,
        format!(
            "{code} is this site: it cannot be {verb} through SMS_Site (site.toml names it; PKGDIST_DistributionSettings holds its settings)"
        ),
    )
    .object(code.to_owned())
}

pub async fn update_site(state: &AppState, code: &str, body: &Map<String, Value>) -> ApiResult<Object> {
    if code == state.site_code.as_str() {
        return Err(own_site(code, "changed"));
    }
    let s = state.db.site(code).await?.ok_or_else(|| unknown_site(code))?;
    child_only(&s, "changed")?;
    if body.contains_key("SiteName") {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "SiteName is the child's own (its site.toml); it shows here from its reports",
        )
        .param("SiteName"));
    }
    if let Some(r) = rate(body)? {
        state.db.set_site_rate(code, r).await?;
    }
    let fresh = state.db.site(code).await?.ok_or_else(|| unknown_site(code))?;
    Ok(site_object(&fresh, 2))
}

pub async fn delete_site(state: &AppState, code: &str) -> ApiResult<()> {
    if code == state.site_code.as_str() {
        return Err(own_site(code, "deleted"));
    }
    let s = state.db.site(code).await?.ok_or_else(|| unknown_site(code))?;
    child_only(&s, "deleted")?;
    state.db.delete_site(code).await?;
    tracing::info!(site = %code, "child site deleted, with everything known through it");
    Ok(())
}

fn unknown_site(code: &str) -> ApiError {
    ApiError::new(
        ErrorKind::UnknownInstance,
        format!("no site {code} below this one; see SMS_Site"),
    )
    .object(code.to_owned())
}

// ---- pull DPs ----

/// Reads `IsPullDP`, `SourceDistributionPoints` and `SourceDPRanks` into `d`, checked: the
/// sources are DPs of the same site, not `d` itself, and no chain of pull DPs loops back. The
/// new sources come back for the caller to store with the DP (`None`: unchanged).
pub async fn pull_settings(
    state: &AppState,
    d: &mut DpRow,
    body: &Map<String, Value>,
) -> ApiResult<Option<Vec<PullSourceRow>>> {
    let given = body.get("SourceDistributionPoints").and_then(Value::as_array);
    let ranks = body.get("SourceDPRanks").and_then(Value::as_array);
    if given.is_none() && ranks.is_some() {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "SourceDPRanks needs SourceDistributionPoints: give both, one rank per source",
        )
        .param("SourceDPRanks"));
    }
    // Every pull DP's sources (a small table: pull DPs × their sources), for the loop check.
    let all = state.db.pull_sources().await?;
    let current: Vec<PullSourceRow> = all.iter().filter(|s| s.nal_path == d.nal_path).cloned().collect();
    let sources = match given {
        None => current,
        Some(list) => {
            let nals: Vec<String> = list.iter().filter_map(Value::as_str).map(str::to_owned).collect();
            let ranks: Vec<i64> = match ranks {
                None => vec![1; nals.len()],
                Some(r) => r.iter().filter_map(Value::as_i64).collect(),
            };
            if ranks.len() != nals.len() {
                return Err(ApiError::new(
                    ErrorKind::InvalidValue,
                    format!(
                        "SourceDPRanks has {} entries and SourceDistributionPoints {}: give one rank per source",
                        ranks.len(),
                        nals.len()
                    ),
                )
                .param("SourceDPRanks"));
            }
            if let Some(r) = ranks.iter().find(|r| !(1..=255).contains(*r)) {
                return Err(ApiError::new(
                    ErrorKind::InvalidValue,
                    format!("source rank {r} is out of range: 1-255"),
                )
                .param("SourceDPRanks"));
            }
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for (nal, rank) in nals.into_iter().zip(ranks) {
                let src = state.db.dp(&nal).await?.ok_or_else(|| {
                    ApiError::new(
                        ErrorKind::UnknownInstance,
                        format!("no distribution point {nal} to pull from"),
                    )
                    .param("SourceDistributionPoints")
                })?;
                if src.nal_path == d.nal_path {
                    return Err(ApiError::new(
                        ErrorKind::InvalidValue,
                        format!("DP {} cannot be its own source", d.name),
                    )
                    .param("SourceDistributionPoints"));
                }
                if src.site_code != d.site_code || src.via_site.is_some() {
                    return Err(ApiError::new(
                        ErrorKind::SiteMismatch,
                        format!("source DP {} is in site {}, pull DP {} in {}: sources must be DPs of the pull DP's own site", src.name, src.site_code, d.name, d.site_code),
                    )
                    .param("SourceDistributionPoints"));
                }
                if !seen.insert(src.nal_path.clone()) {
                    return Err(ApiError::new(
                        ErrorKind::InvalidValue,
                        format!("source DP {} is listed twice", src.name),
                    )
                    .param("SourceDistributionPoints"));
                }
                out.push(PullSourceRow {
                    nal_path: d.nal_path.clone(),
                    source_nal: src.nal_path,
                    rank,
                });
            }
            out
        }
    };
    if let Some(v) = body.get("IsPullDP").and_then(Value::as_bool) {
        d.is_pull = i64::from(v);
    }
    if d.is_pull == 0 {
        if given.is_some_and(|g| !g.is_empty()) {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                "SourceDistributionPoints is for pull DPs: set IsPullDP true with it",
            )
            .param("SourceDistributionPoints"));
        }
        return Ok(Some(Vec::new()));
    }
    if sources.is_empty() {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "a pull DP needs at least one source: give SourceDistributionPoints (DPs of its site)",
        )
        .param("SourceDistributionPoints"));
    }
    if let Some(chain) = find_loop(&d.nal_path, &sources, &all) {
        let names = state.db.dps().await?;
        let name = |n: &str| {
            names
                .iter()
                .find(|x| x.nal_path == n)
                .map_or_else(|| n.to_owned(), |x| x.name.clone())
        };
        let text: Vec<String> = chain.iter().map(|n| name(n)).collect();
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!(
                "these sources would make pull DPs fetch from each other in a loop: {}; a chain of pull DPs must end at a standard DP",
                text.join(" → ")
            ),
        )
        .param("SourceDistributionPoints"));
    }
    Ok(Some(sources))
}

/// A chain `dp → … → dp` through pull sources, if `dp` taking `sources` makes one (the rest
/// as in `all`); `GetChainedPullDPs`' check.
fn find_loop(dp: &str, sources: &[PullSourceRow], all: &[PullSourceRow]) -> Option<Vec<String>> {
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in all.iter().filter(|s| s.nal_path != dp).chain(sources) {
        edges
            .entry(s.nal_path.as_str())
            .or_default()
            .push(s.source_nal.as_str());
    }
    // Depth-first from dp, keeping the path.
    let mut path = vec![dp];
    let mut done: HashSet<&str> = HashSet::new();
    fn walk<'a>(
        at: &'a str,
        goal: &str,
        edges: &HashMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> bool {
        for &next in edges.get(at).map(Vec::as_slice).unwrap_or_default() {
            path.push(next);
            if next == goal {
                return true;
            }
            if done.insert(next) && walk(next, goal, edges, path, done) {
                return true;
            }
            path.pop();
        }
        false
    }
    walk(dp, dp, &edges, &mut path, &mut done).then(|| path.iter().map(|s| (*s).to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(a: &str, b: &str) -> PullSourceRow {
        PullSourceRow {
            nal_path: a.into(),
            source_nal: b.into(),
            rank: 1,
        }
    }

    #[test]
    fn loops_are_found_with_their_chain() {
        let all = vec![edge("b", "c"), edge("c", "a")];
        assert_eq!(
            find_loop("a", &[edge("a", "b")], &all),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        // A chain that ends at a standard DP is fine, however long.
        let all = vec![edge("b", "c"), edge("c", "std")];
        assert_eq!(find_loop("a", &[edge("a", "b")], &all), None);
        // a's old sources do not count: they are being replaced.
        let all = vec![edge("a", "b"), edge("b", "std")];
        assert_eq!(find_loop("a", &[edge("a", "std")], &all), None);
        // Two sources, the second loops.
        let all = vec![edge("c", "a")];
        assert!(find_loop("a", &[edge("a", "std"), edge("a", "c")], &all).is_some());
    }
}
