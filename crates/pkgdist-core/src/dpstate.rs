//! The state machine of one package on one DP (`SMS_PackageStatusDistPointsSummarizer.State`),
//! as pure functions: what an administrator's action does to a row, which job a state calls
//! for, and what a job's outcome makes of it.
//!
//! The site's API and its distribution manager both go through these functions, and the
//! model test in `dpstate/tests.rs` drives random sequences of actions, job outcomes and damage
//! through them, so the rules live in one place that can be checked.

use crate::classes::DpState;

/// Something an administrator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `AddDistributionPoints`, or a DP group gaining the package or the DP.
    Distribute,
    /// `ReDistributePackage` / `RefreshNow`: send it again, checking every chunk.
    Redistribute,
    /// `RefreshPkgSource` recorded a new version.
    NewVersion,
    /// Deleting the `SMS_DistributionPoint`, or a group losing it.
    Remove,
    /// `VerifyPackage`, or the DP's validation schedule.
    Verify,
    /// `CancelDistribution`.
    Cancel,
}

/// Why an action does not apply to a row in its current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the package is being removed from this DP ({0}); there is nothing to validate")]
    Removing(&'static str),
    #[error("there is no distribution to this DP in progress to cancel (it is {0})")]
    NotInProgress(&'static str),
    #[error("nothing is installed on this DP yet to validate (it is {0}); validate once it is installed")]
    NothingInstalled(&'static str),
    #[error("the package is not on this DP")]
    NotTargeted,
}

/// The row's next state after `action`; `current` is `None` when the package is not on the DP,
/// `installed` whether some version of it is installed there.
pub fn on_action(current: Option<DpState>, installed: bool, action: Action) -> Result<DpState, Refused> {
    use DpState::*;
    let fresh = if installed { ContentUpdating } else { InstallPending };
    match (action, current) {
        (Action::Distribute | Action::Redistribute, _) => Ok(fresh),
        (Action::NewVersion, None) => Err(Refused::NotTargeted),
        // A package on its way out of a DP is not sent a newer version.
        (Action::NewVersion, Some(s @ (RemovalPending | RemovalRetrying | RemovalFailed))) => Ok(s),
        (Action::NewVersion, Some(_)) => Ok(fresh),
        (Action::Remove, None) => Err(Refused::NotTargeted),
        (Action::Remove, Some(_)) => Ok(RemovalPending),
        (Action::Verify, None) => Err(Refused::NotTargeted),
        (Action::Verify, Some(s @ (RemovalPending | RemovalRetrying | RemovalFailed))) => {
            Err(Refused::Removing(s.name()))
        }
        // An install under way would be cancelled by a validation of what is not there yet.
        (Action::Verify, Some(s @ (InstallPending | InstallRetrying | ContentUpdating))) => {
            Err(Refused::NothingInstalled(s.name()))
        }
        (Action::Verify, Some(s)) if !installed => Err(Refused::NothingInstalled(s.name())),
        (Action::Verify, Some(_)) => Ok(ContentMonitoring),
        (Action::Cancel, None) => Err(Refused::NotTargeted),
        (Action::Cancel, Some(InstallPending | InstallRetrying | ContentUpdating)) => Ok(InstallFailed),
        (Action::Cancel, Some(s)) => Err(Refused::NotInProgress(s.name())),
    }
}

/// The kinds of job a DP runs for the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Install,
    Validate,
    Remove,
}

/// The job a row in `state` calls for, if any (whether it is due yet is the retry time's
/// business).
pub fn work_for(state: DpState) -> Option<Work> {
    use DpState::*;
    match state {
        InstallPending | InstallRetrying | ContentUpdating => Some(Work::Install),
        ContentMonitoring => Some(Work::Validate),
        RemovalPending | RemovalRetrying => Some(Work::Remove),
        Installed | InstallFailed | RemovalFailed => None,
    }
}

/// What a job reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The job ran to its end. For a validation, `damaged` says whether it found damaged or
    /// missing files, and `repaired` whether the DP then repaired them and verified the repair.
    Succeeded { damaged: bool, repaired: bool },
    /// The job could not be done (DP unreachable, source error, …): an attempt is spent.
    /// `damage_found`: a validation found damage before it failed (its repair failed).
    Failed { damage_found: bool },
}

/// The row as the outcome finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowState {
    pub installed_version: u32,
    pub target_version: u32,
    pub attempts: u32,
    /// The next install must be a repair one (damage was found and left).
    pub repair_pending: bool,
}

/// What becomes of the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub state: DpState,
    /// Set when the job made `version` the one installed on the DP.
    pub installed_version: Option<u32>,
    pub attempts: u32,
    /// A retry is to be scheduled (`*_RETRYING`, or a validation to run again).
    pub retry: bool,
    /// The row goes: the package has left the DP.
    pub remove_row: bool,
    /// The next install of this row must be a repair (`ReDistributePackage`-style) one.
    pub needs_repair: bool,
}

/// The row's next state after job `work` on `version` ended with `outcome`, with at most
/// `retry_count` attempts in all.
pub fn on_outcome(work: Work, version: u32, row: RowState, outcome: Outcome, retry_count: u32) -> After {
    use DpState::*;
    let mut after = After {
        state: InstallFailed,
        installed_version: None,
        attempts: 0,
        retry: false,
        remove_row: false,
        needs_repair: false,
    };
    match outcome {
        Outcome::Failed { damage_found } => {
            let attempts = row.attempts.saturating_add(1);
            let left = attempts < retry_count.max(1);
            let repair = row.repair_pending || damage_found;
            after.attempts = attempts;
            after.retry = left;
            after.needs_repair = damage_found;
            after.state = match (work, left) {
                (Work::Remove, true) => RemovalRetrying,
                (Work::Remove, false) => RemovalFailed,
                // A retry repeats the same job: a validation stays a validation.
                (Work::Validate, true) => ContentMonitoring,
                // A validation that never ran found nothing: the content is as it was (unless
                // damage is known, which only a repair install clears).
                (Work::Validate, false) if repair => InstallFailed,
                (Work::Validate, false) if row.installed_version == 0 => InstallPending,
                (Work::Validate, false) if row.installed_version == row.target_version => Installed,
                (Work::Validate, false) => ContentUpdating,
                (Work::Install, true) => InstallRetrying,
                (Work::Install, false) => InstallFailed,
            };
            if work == Work::Validate && !left && calls_for_install(after.state) {
                // Back to an install still due: a fresh job, with every attempt ahead of it.
                after.attempts = 0;
            }
        }
        Outcome::Succeeded { damaged, repaired } => {
            after.state = match work {
                Work::Install if version == row.target_version => Installed,
                // An older version arrived while a newer one was targeted: that one is still due.
                Work::Install => ContentUpdating,
                Work::Remove => RemovalPending,
                Work::Validate if damaged && !repaired => InstallFailed,
                // Sound (or repaired): the DP is current only if what it holds is the target.
                Work::Validate if version == row.target_version && (repaired || row.installed_version == version) => {
                    Installed
                }
                Work::Validate if row.installed_version == 0 && !repaired => InstallPending,
                Work::Validate => ContentUpdating,
            };
            // A repair leaves the DP holding the version, verified.
            after.installed_version = (work == Work::Install || repaired).then_some(version);
            after.remove_row = work == Work::Remove;
            // Damage found and left: the next install must check every chunk it already
            // holds, or it would reuse the damaged ones.
            after.needs_repair = work == Work::Validate && damaged && !repaired;
        }
    }
    after
}

fn calls_for_install(s: DpState) -> bool {
    work_for(s) == Some(Work::Install)
}

#[cfg(test)]
mod tests;
