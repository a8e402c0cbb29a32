//! Distribution points: register (with a one-time enrollment token), change settings (rate
//! limits, schedules, pull sources) and delete.
//!
//! A DP of a site below this one is managed at its own site; a DP that pull DPs fetch from
//! cannot be deleted until they have other sources; pull DPs' sources never form a loop.

use std::collections::{HashMap, HashSet};

use pkgdist_core::availability::{Availability, parse_hourly_percent};
use pkgdist_core::classes::nal_path;
use pkgdist_db::{DpRow, PullSourceRow};

use super::packages::check_schedule;
use super::{Invalid, OpError, Refusal, Thing};
use crate::state::AppState;
use crate::{auth, now};

/// The administrator-settable properties of a DP; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct DpSettings {
    pub description: Option<String>,
    pub priority: Option<i64>,
    pub repair_damaged: Option<bool>,
    pub prestaging: Option<bool>,
    pub rate_bytes_per_sec: Option<u64>,
    pub rate_mode: Option<i64>,
    pub pulse_block_kb: Option<i64>,
    pub pulse_delay_secs: Option<i64>,
    pub hourly_percent: Option<String>,
    pub availability: Option<String>,
    pub validation_schedule: Option<String>,
    pub pull: PullSettings,
}

/// Whether a DP pulls, and from which DPs of its site (NAL paths), lowest rank first.
#[derive(Debug, Clone, Default)]
pub struct PullSettings {
    pub is_pull: Option<bool>,
    pub sources: Option<Vec<String>>,
    /// One per source; all 1 when not given.
    pub ranks: Option<Vec<i64>>,
}

/// The DP `nal`, or [`OpError::NotFound`].
pub(crate) async fn dp(state: &AppState, nal: &str) -> Result<DpRow, OpError> {
    state
        .db
        .dp(nal)
        .await?
        .ok_or_else(|| OpError::not_found(Thing::DistributionPoint, nal))
}

/// Refuses a change to a DP of a site below this one: its own site manages it.
fn check_own_dp(d: &DpRow, verb: &'static str) -> Result<(), OpError> {
    match &d.via_site {
        Some(via) => Err(OpError::refused(
            &d.nal_path,
            Refusal::DpOfChildSite {
                name: d.name.clone(),
                site: d.site_code.clone(),
                via: via.clone(),
                verb,
            },
        )),
        None => Ok(()),
    }
}

/// Registers a DP of this site; the answer carries its one-time enrollment token.
pub async fn create(state: &AppState, name: &str, settings: &DpSettings) -> Result<(DpRow, String), OpError> {
    let name = name.trim();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
    if !valid {
        return Err(OpError::invalid(
            "Name",
            "Name must be a host name: letters, digits, '-' and '.'",
        ));
    }
    let token = auth::generate();
    let site = state.site_code.to_string();
    let mut d = DpRow::new(nal_path(name, &site), name.to_owned(), site, now());
    d.enrollment_token_hash = Some(auth::hash(&token));
    apply(&mut d, settings)?;
    let sources = pull_sources(state, &mut d, &settings.pull).await?;
    state.db.insert_dp(&d, &sources).await?;
    tracing::info!(dp = %d.name, "distribution point registered");
    Ok((d, state.enrollment_token(token)))
}

/// Changes DP `nal`'s settings, in one transaction with its pull sources.
pub async fn update(state: &AppState, nal: &str, settings: &DpSettings) -> Result<DpRow, OpError> {
    let mut d = dp(state, nal).await?;
    check_own_dp(&d, "changed")?;
    // Written back only if the schedule changes: the scheduler owns it otherwise.
    d.validation_checked_at = None;
    apply(&mut d, settings)?;
    // Pull sources are rewritten only when the change is about them, so a change of another
    // setting never undoes a concurrent change of sources.
    let p = &settings.pull;
    let sources = if p.is_pull.is_some() || p.sources.is_some() || p.ranks.is_some() {
        Some(pull_sources(state, &mut d, p).await?)
    } else {
        None
    };
    if !state.db.update_dp(&d, sources.as_deref()).await? {
        return Err(OpError::not_found(Thing::DistributionPoint, nal));
    }
    state.work.notify_one();
    Ok(d)
}

/// Deletes DP `nal` with its rows; refused while pull DPs fetch from it.
pub async fn delete(state: &AppState, nal: &str) -> Result<(), OpError> {
    let d = dp(state, nal).await?;
    check_own_dp(&d, "deleted")?;
    let users: Vec<String> = state
        .db
        .pull_dps_of(&d.nal_path)
        .await?
        .into_iter()
        .map(|s| s.nal_path)
        .collect();
    if !users.is_empty() {
        let names = names_of(state, &users).await?;
        return Err(OpError::refused(
            &d.nal_path,
            Refusal::SourceOfPullDps {
                name: d.name.clone(),
                users: names,
            },
        ));
    }
    state.db.delete_dp(nal).await?;
    tracing::info!(dp = %d.name, "distribution point deleted");
    Ok(())
}

/// The DPs' names, in the order of `nals` (a NAL path stands for a DP no longer there).
async fn names_of(state: &AppState, nals: &[String]) -> Result<Vec<String>, OpError> {
    let dps = super::rows::dp_map(state, nals).await?;
    Ok(nals
        .iter()
        .map(|n| dps.get(n).map_or_else(|| n.clone(), |d| d.name.clone()))
        .collect())
}

/// The settings applied to `d`, checked.
fn apply(d: &mut DpRow, s: &DpSettings) -> Result<(), OpError> {
    if let Some(v) = &s.description {
        d.description.clone_from(v);
    }
    if let Some(v) = s.priority {
        d.priority = v;
    }
    if let Some(v) = s.repair_damaged {
        d.repair_damaged = i64::from(v);
    }
    if let Some(v) = s.prestaging {
        d.prestaging = i64::from(v);
    }
    if let Some(v) = s.rate_bytes_per_sec {
        let Ok(rate @ (0 | 1024..)) = i64::try_from(v) else {
            return Err(OpError::invalid(
                "RateLimitBytesPerSecond",
                format!("RateLimitBytesPerSecond is {v}: use 0 (unlimited) or at least 1024"),
            ));
        };
        d.rate_bytes_per_sec = rate;
        if s.rate_mode.is_none() {
            d.rate_mode = if rate > 0 { 3 } else { 0 };
        }
    }
    if let Some(v) = s.pulse_block_kb {
        if !(1..=10_240).contains(&v) {
            return Err(OpError::invalid(
                "PulseBlockSizeKB",
                format!("PulseBlockSizeKB is {v}: use 1-10240"),
            ));
        }
        d.pulse_block_kb = v;
    }
    if let Some(v) = s.pulse_delay_secs {
        if !(0..=3600).contains(&v) {
            return Err(OpError::invalid(
                "PulseDelaySeconds",
                format!("PulseDelaySeconds is {v}: use 0-3600"),
            ));
        }
        d.pulse_delay_secs = v;
    }
    if let Some(v) = &s.hourly_percent {
        parse_hourly_percent(v)
            .map_err(|e| OpError::invalid("HourlyPercentages", format!("HourlyPercentages: {e}")))?;
        d.hourly_percent.clone_from(v);
    }
    if let Some(v) = s.rate_mode {
        d.rate_mode = v;
    }
    let mode_ok = match d.rate_mode {
        0 => Ok(()),
        1 if d.pulse_block_kb > 0 => Ok(()),
        1 => Err("pulse mode (1) needs PulseBlockSizeKB"),
        2 if !d.hourly_percent.is_empty() => Ok(()),
        2 => Err("limited by hour (2) needs HourlyPercentages"),
        3 if d.rate_bytes_per_sec > 0 => Ok(()),
        3 => Err("mode 3 needs RateLimitBytesPerSecond above 0"),
        _ => Err("RateLimitMode is 0 unlimited, 1 pulse, 2 limited by hour or 3 bytes per second"),
    };
    mode_ok.map_err(|why| OpError::invalid("RateLimitMode", why))?;
    if let Some(v) = &s.availability {
        let a = Availability::parse(v)
            .map_err(|e| OpError::invalid("AvailabilitySchedule", format!("AvailabilitySchedule: {e}")))?;
        d.availability = a.format();
    }
    if let Some(v) = &s.validation_schedule {
        if !v.is_empty() {
            check_schedule(v, "ValidationSchedule")?;
        }
        if *v != d.validation_schedule {
            d.validation_schedule.clone_from(v);
            // Occurrences before the change are not owed.
            d.validation_checked_at = Some(now());
        }
    }
    Ok(())
}

const SOURCES: &str = "SourceDistributionPoints";
const RANKS: &str = "SourceDPRanks";

/// Applies `pull` to `d` (its `is_pull`), checked: the sources are DPs of the same site, not
/// `d` itself, and no chain of pull DPs loops back. Returns the DP's sources as they will be.
async fn pull_sources(state: &AppState, d: &mut DpRow, pull: &PullSettings) -> Result<Vec<PullSourceRow>, OpError> {
    if pull.sources.is_none() && pull.ranks.is_some() {
        return Err(OpError::invalid(
            RANKS,
            "SourceDPRanks needs SourceDistributionPoints: give both, one rank per source",
        ));
    }
    if let Some(v) = pull.is_pull {
        d.is_pull = i64::from(v);
    }
    if !d.pulls() {
        if pull.sources.as_ref().is_some_and(|g| !g.is_empty()) {
            return Err(OpError::invalid(
                SOURCES,
                "SourceDistributionPoints is for pull DPs: set IsPullDP true with it",
            ));
        }
        return Ok(Vec::new());
    }
    let sources = match &pull.sources {
        None => state.db.pull_sources_of(&d.nal_path).await?,
        Some(nals) => checked_sources(state, d, nals, pull.ranks.as_deref()).await?,
    };
    if sources.is_empty() {
        return Err(OpError::invalid(
            SOURCES,
            "a pull DP needs at least one source: give SourceDistributionPoints (DPs of its site)",
        ));
    }
    // Every pull DP's sources (a small table: pull DPs × their sources), for the loop check.
    let all = state.db.pull_sources().await?;
    if let Some(chain) = find_loop(&d.nal_path, &sources, &all) {
        let names = names_of(state, &chain).await?;
        return Err(OpError::invalid(
            SOURCES,
            format!(
                "these sources would make pull DPs fetch from each other in a loop: {}; a chain of pull DPs must end at a standard DP",
                names.join(" → ")
            ),
        ));
    }
    Ok(sources)
}

/// The sources given for pull DP `d`, each checked.
async fn checked_sources(
    state: &AppState,
    d: &DpRow,
    nals: &[String],
    ranks: Option<&[i64]>,
) -> Result<Vec<PullSourceRow>, OpError> {
    let ranks: Vec<i64> = ranks.map_or_else(|| vec![1; nals.len()], <[i64]>::to_vec);
    if ranks.len() != nals.len() {
        return Err(OpError::invalid(
            RANKS,
            format!(
                "SourceDPRanks has {} entries and SourceDistributionPoints {}: give one rank per source",
                ranks.len(),
                nals.len()
            ),
        ));
    }
    if let Some(r) = ranks.iter().find(|r| !(1..=255).contains(*r)) {
        return Err(OpError::invalid(
            RANKS,
            format!("source rank {r} is out of range: 1-255"),
        ));
    }
    let known = super::rows::dp_map(state, nals).await?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(nals.len());
    for (nal, rank) in nals.iter().zip(ranks) {
        let src = known
            .get(nal)
            .ok_or_else(|| OpError::not_found(Thing::DistributionPoint, nal))?;
        if src.nal_path == d.nal_path {
            return Err(OpError::invalid(
                SOURCES,
                format!("DP {} cannot be its own source", d.name),
            ));
        }
        if src.site_code != d.site_code || src.via_site.is_some() {
            return Err(OpError::Invalid {
                kind: Invalid::SiteMismatch,
                param: SOURCES,
                why: format!(
                    "source DP {} is in site {}, pull DP {} in {}: sources must be DPs of the pull DP's own site",
                    src.name, src.site_code, d.name, d.site_code
                ),
            });
        }
        if !seen.insert(src.nal_path.clone()) {
            return Err(OpError::invalid(
                SOURCES,
                format!("source DP {} is listed twice", src.name),
            ));
        }
        out.push(PullSourceRow {
            nal_path: d.nal_path.clone(),
            source_nal: src.nal_path.clone(),
            rank,
        });
    }
    Ok(out)
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
