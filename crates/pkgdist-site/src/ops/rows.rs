//! Package-on-DP rows: target (and redistribute), change state (remove, validate, cancel),
//! each one transaction with its status messages.

use std::collections::HashMap;

use pkgdist_core::classes::{DpState, MessageState};
use pkgdist_core::dpstate::{self, Action};
use pkgdist_db::{DpRow, NewStatus, NewTarget, PackageRow, TargetChange};

use super::{OpError, Raced, Refusal};
use crate::now;
use crate::state::AppState;

/// VerifyPackage or CancelDistribution on one package-on-DP row, as `pkgdist_core::dpstate`
/// allows it from the row's state.
pub(crate) async fn row_action(state: &AppState, pkg: &str, nal: &str, action: Action) -> Result<(), OpError> {
    let row = state.db.package_dp(pkg, nal).await?.ok_or_else(|| OpError::NotOnDp {
        package: pkg.to_owned(),
        nal: nal.to_owned(),
    })?;
    let dp = pkgdist_core::classes::nal_server(nal).unwrap_or(nal);
    let why = if action == Action::Verify {
        "validation requested: the DP will re-hash the content".to_owned()
    } else {
        format!(
            "distribution cancelled by an administrator; to try again: `pkgdist package distribute {pkg} {dp}` (RefreshNow), or ReDistributePackage on its group"
        )
    };
    let next = dpstate::on_action(row.dp_state(), row.installed_version > 0, action)
        .map_err(|refused| OpError::refused(&format!("{pkg} on {nal}"), Refusal::RowState(refused)))?;
    if !set_state_if(state, &[(pkg.to_owned(), nal.to_owned(), row.job_seq)], next, &why).await? {
        return Err(OpError::Conflict {
            object: format!("{pkg} on {nal}"),
            what: Raced::Row,
        });
    }
    Ok(())
}

/// The DPs named by NAL path, by NAL path (those that exist), read in one query.
pub(crate) async fn dp_map(state: &AppState, nals: &[String]) -> Result<HashMap<String, DpRow>, OpError> {
    Ok(state
        .db
        .dps_by_nal(nals)
        .await?
        .into_iter()
        .map(|d| (d.nal_path.clone(), d))
        .collect())
}

/// The targets of packages on DPs and their status messages, for one transaction.
pub(crate) fn plan(
    pairs: &[(&PackageRow, &DpRow)],
    redistribute: bool,
    time: &str,
    why: &str,
) -> (Vec<NewTarget>, Vec<NewStatus>) {
    let targets = pairs
        .iter()
        .map(|(p, d)| target(p, d, redistribute, time, why))
        .collect();
    let msgs = pairs
        .iter()
        .map(|(p, d)| {
            message(
                &p.package_id,
                d,
                MessageState::InProgress,
                format!("{}.{} {why}", p.package_id, p.source_version),
                time,
            )
        })
        .collect();
    (targets, msgs)
}

/// Puts packages on DPs at their current version (INSTALL_PENDING), with a status message for
/// each, in one transaction.
pub(crate) async fn retarget(
    state: &AppState,
    pairs: &[(&PackageRow, &DpRow)],
    redistribute: bool,
    why: &str,
) -> Result<(), OpError> {
    let (targets, msgs) = plan(pairs, redistribute, &now(), why);
    state.db.target(&targets, &msgs).await?;
    Ok(())
}

/// The state `action` gives a row that is on the DP and calls for work, with or without a
/// version installed (the database picks between the two as it writes).
pub(crate) fn action_state(installed: bool, action: Action) -> u32 {
    dpstate::on_action(Some(DpState::InstallPending), installed, action)
        .unwrap_or(DpState::InstallPending)
        .code()
}

fn target(p: &PackageRow, d: &DpRow, redistribute: bool, time: &str, why: &str) -> NewTarget {
    NewTarget {
        package_id: p.package_id.clone(),
        nal_path: d.nal_path.clone(),
        site_code: d.site_code.clone(),
        state: i64::from(action_state(false, Action::Distribute)),
        state_if_installed: i64::from(action_state(true, Action::Distribute)),
        redistribute,
        time: time.to_owned(),
        message: why.to_owned(),
    }
}

/// State changes of package-on-DP rows, and their status messages.
pub(crate) fn changes(
    dps: &HashMap<String, DpRow>,
    rows: &[(String, String)],
    st: DpState,
    why: &str,
) -> (Vec<TargetChange>, Vec<NewStatus>) {
    let time = now();
    let ms = if st == DpState::InstallFailed {
        MessageState::Error
    } else {
        MessageState::InProgress
    };
    let mut out = (Vec::new(), Vec::new());
    for (p, n) in rows {
        out.0.push(TargetChange {
            package_id: p.clone(),
            nal_path: n.clone(),
            expect_seq: None,
            state: i64::from(st.code()),
            time: time.clone(),
            message: why.to_owned(),
        });
        if let Some(d) = dps.get(n) {
            out.1.push(message(p, d, ms, format!("{p}: {why}"), &time));
        }
    }
    out
}

pub(crate) async fn set_state(
    state: &AppState,
    rows: &[(String, String)],
    st: DpState,
    why: &str,
) -> Result<(), OpError> {
    let dps = dp_map(state, &nals_of(rows.iter().map(|(_, n)| n))).await?;
    let (c, m) = changes(&dps, rows, st, why);
    state.db.set_states(&c, &m).await?;
    Ok(())
}

/// The distinct NAL paths among `nals`.
fn nals_of<'a>(nals: impl Iterator<Item = &'a String>) -> Vec<String> {
    let set: std::collections::BTreeSet<&String> = nals.collect();
    set.into_iter().cloned().collect()
}

/// [`set_state`] for rows still at the jobs (`job_seq`) the decision was taken on; false,
/// changing nothing, if any has moved on meanwhile.
pub(crate) async fn set_state_if(
    state: &AppState,
    rows: &[(String, String, i64)],
    st: DpState,
    why: &str,
) -> Result<bool, OpError> {
    let pairs: Vec<(String, String)> = rows.iter().map(|(p, n, _)| (p.clone(), n.clone())).collect();
    let dps = dp_map(state, &nals_of(pairs.iter().map(|(_, n)| n))).await?;
    let (mut c, m) = changes(&dps, &pairs, st, why);
    for (change, (_, _, seq)) in c.iter_mut().zip(rows) {
        change.expect_seq = Some(*seq);
    }
    Ok(state.db.set_states(&c, &m).await?)
}

/// `SMS_DistributionDPStatus.MessageID` of "queued for a DP" messages.
pub(crate) const MSG_QUEUED: i64 = 2357;

/// A "queued" status message about package `pkg` on DP `d`.
pub(crate) fn message(pkg: &str, d: &DpRow, st: MessageState, text: String, time: &str) -> NewStatus {
    dp_status(pkg, d, MSG_QUEUED, st, text, 0, time)
}

/// A status message about package `pkg` on DP `d` (the DP's name is appended to `text`).
pub(crate) fn dp_status(
    pkg: &str,
    d: &DpRow,
    message_id: i64,
    st: MessageState,
    text: String,
    bytes: u64,
    time: &str,
) -> NewStatus {
    NewStatus {
        package_id: pkg.into(),
        nal_path: d.nal_path.clone(),
        site_code: d.site_code.clone(),
        message_id,
        message_state: st as i64,
        severity: i64::from(st.severity()),
        description: format!("{text} ({})", d.name),
        bytes_transferred: i64::try_from(bytes).unwrap_or(i64::MAX),
        time: time.to_owned(),
    }
}
