//! A model test of the per-DP state machine: random sequences of administrator actions, job
//! outcomes and damage on the DP, run against a model of what the DP really holds.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone, Copy)]
enum Event {
    Act(Action),
    /// Bytes on the DP go bad behind everyone's back.
    Damage,
    JobSucceeds,
    JobFails,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => prop_oneof![
            Just(Action::Distribute),
            Just(Action::Redistribute),
            Just(Action::NewVersion),
            Just(Action::Remove),
            Just(Action::Verify),
            Just(Action::Cancel),
        ]
        .prop_map(Event::Act),
        1 => Just(Event::Damage),
        4 => Just(Event::JobSucceeds),
        3 => Just(Event::JobFails),
    ]
}

#[derive(Debug, Clone)]
struct Row {
    state: DpState,
    target: u32,
    installed: u32,
    attempts: u32,
    repair: bool,
}

#[derive(Debug)]
struct Model {
    version: u32,
    row: Option<Row>,
    /// Versions the DP holds, and whether their bytes are sound.
    dp: BTreeMap<u32, bool>,
    /// The DP's repair setting (RepairDamagedContent).
    repair_setting: bool,
    retry_count: u32,
    /// The site has been told the DP's content is damaged and nothing has repaired it since.
    known_damage: bool,
    /// Damage happened that no full check has looked at since.
    unchecked_damage: bool,
}

impl Model {
    fn new(repair_setting: bool, retry_count: u32) -> Self {
        Model {
            version: 1,
            row: None,
            dp: BTreeMap::new(),
            repair_setting,
            retry_count,
            known_damage: false,
            unchecked_damage: false,
        }
    }

    fn apply(&mut self, ev: Event) {
        match ev {
            Event::Act(a) => self.act(a),
            Event::Damage => {
                if let Some(sound) = self.dp.values_mut().last() {
                    *sound = false;
                    self.unchecked_damage = true;
                }
            }
            Event::JobSucceeds => self.job(true),
            Event::JobFails => self.job(false),
        }
    }

    fn act(&mut self, a: Action) {
        if a == Action::NewVersion {
            self.version += 1;
        }
        let current = self.row.as_ref().map(|r| r.state);
        let installed = self.row.as_ref().is_some_and(|r| r.installed > 0);
        let Ok(next) = on_action(current, installed, a) else {
            return;
        };
        let row = self.row.get_or_insert(Row {
            state: next,
            target: self.version,
            installed: 0,
            attempts: 0,
            repair: false,
        });
        let leaving = matches!(
            row.state,
            DpState::RemovalPending | DpState::RemovalRetrying | DpState::RemovalFailed
        );
        if a == Action::NewVersion && leaving {
            return; // as Db::record_version: rows on their way out are left alone
        }
        if matches!(a, Action::Distribute | Action::Redistribute | Action::NewVersion) {
            row.target = self.version;
        }
        if a == Action::Redistribute {
            row.repair = true;
        }
        row.state = next;
        row.attempts = 0;
    }

    fn job(&mut self, ok: bool) {
        let Some(row) = self.row.as_mut() else { return };
        let Some(work) = work_for(row.state) else { return };
        let version = if work == Work::Validate && row.installed > 0 {
            row.installed
        } else {
            row.target
        };
        let rs = RowState {
            installed_version: row.installed,
            target_version: row.target,
            attempts: row.attempts,
            repair_pending: row.repair,
        };
        let outcome = if !ok {
            // A validation with repair on can find damage and then fail to repair it.
            let damage_found = work == Work::Validate && self.repair_setting && self.dp.get(&version) != Some(&true);
            if damage_found {
                self.known_damage = true;
                self.unchecked_damage = self.dp.values().any(|sound| !sound);
            }
            Outcome::Failed { damage_found }
        } else {
            match work {
                Work::Install => {
                    // A repair install checks every chunk it holds; a plain one reuses them.
                    let inherits_damage = !row.repair && self.dp.values().any(|sound| !sound);
                    self.dp.insert(version, !inherits_damage);
                    if row.repair {
                        self.dp.values_mut().for_each(|s| *s = true);
                        self.known_damage = false;
                        self.unchecked_damage = false;
                    }
                    Outcome::Succeeded {
                        damaged: false,
                        repaired: false,
                    }
                }
                Work::Validate => {
                    let damaged = self.dp.get(&version) != Some(&true);
                    let repaired = damaged && self.repair_setting;
                    if repaired {
                        self.dp.insert(version, true);
                    }
                    // The check covers this version only; an older one kept for downloads in
                    // flight may still hold damage nobody has looked at.
                    self.unchecked_damage = self.dp.values().any(|sound| !sound);
                    self.known_damage = damaged && !repaired;
                    Outcome::Succeeded { damaged, repaired }
                }
                Work::Remove => {
                    self.dp.clear();
                    self.known_damage = false;
                    self.unchecked_damage = false;
                    Outcome::Succeeded {
                        damaged: false,
                        repaired: false,
                    }
                }
            }
        };
        let after = on_outcome(work, version, rs, outcome, self.retry_count);
        if after.remove_row {
            self.row = None;
            return;
        }
        row.state = after.state;
        row.attempts = after.attempts;
        if let Some(v) = after.installed_version {
            row.installed = v;
            if work == Work::Install {
                row.repair = false;
            }
        }
        if after.needs_repair {
            row.repair = true;
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let Some(row) = &self.row else { return Ok(()) };
        prop_assert_eq!(DpState::from_code(row.state.code()), Some(row.state));
        prop_assert!(row.attempts <= self.retry_count, "{row:?}");
        if matches!(row.state, DpState::InstallRetrying | DpState::RemovalRetrying) {
            prop_assert!(
                row.attempts >= 1 && row.attempts < self.retry_count,
                "retrying with no attempt spent or none left: {row:?}"
            );
        }
        if row.state == DpState::Installed {
            prop_assert_eq!(row.installed, row.target, "INSTALLED at another version: {:?}", row);
            prop_assert!(
                self.dp.contains_key(&row.target),
                "INSTALLED with nothing on the DP: {row:?}"
            );
            prop_assert!(
                !self.known_damage,
                "INSTALLED although a validation found damage: {row:?}"
            );
            let sound = self.dp.get(&row.target) == Some(&true);
            prop_assert!(
                sound || self.unchecked_damage,
                "INSTALLED with content that fails verification, and no damage unseen since a check: {:?} {:?}",
                row,
                self.dp
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn no_sequence_reaches_a_wrong_state(
        repair in any::<bool>(),
        retry_count in 1u32..5,
        events in proptest::collection::vec(event(), 1..60),
    ) {
        let mut m = Model::new(repair, retry_count);
        for ev in events {
            m.apply(ev);
            m.check()?;
        }
    }
}

#[test]
fn retries_count_down_then_fail() {
    let row = RowState {
        installed_version: 0,
        target_version: 1,
        attempts: 0,
        repair_pending: false,
    };
    let failed = Outcome::Failed { damage_found: false };
    let a = on_outcome(Work::Install, 1, row, failed, 2);
    assert_eq!((a.state, a.attempts, a.retry), (DpState::InstallRetrying, 1, true));
    let row = RowState { attempts: 1, ..row };
    let b = on_outcome(Work::Install, 1, row, failed, 2);
    assert_eq!((b.state, b.attempts, b.retry), (DpState::InstallFailed, 2, false));
}

#[test]
fn damage_without_repair_fails_and_demands_a_repair_install() {
    let row = RowState {
        installed_version: 3,
        target_version: 3,
        attempts: 0,
        repair_pending: false,
    };
    let found = Outcome::Succeeded {
        damaged: true,
        repaired: false,
    };
    let a = on_outcome(Work::Validate, 3, row, found, 100);
    assert_eq!(a.state, DpState::InstallFailed);
    assert!(a.needs_repair);
    let fixed = Outcome::Succeeded {
        damaged: true,
        repaired: true,
    };
    let b = on_outcome(Work::Validate, 3, row, fixed, 100);
    assert_eq!((b.state, b.needs_repair), (DpState::Installed, false));
    // A repair that fails keeps the damage known.
    let c = on_outcome(Work::Validate, 3, row, Outcome::Failed { damage_found: true }, 1);
    assert_eq!((c.state, c.needs_repair), (DpState::InstallFailed, true));
    // A validation that never ran changes nothing about the content.
    let d = on_outcome(Work::Validate, 3, row, Outcome::Failed { damage_found: false }, 1);
    assert_eq!(d.state, DpState::Installed);
}

#[test]
fn actions_refused_where_configmgr_refuses_them() {
    assert!(matches!(
        on_action(Some(DpState::Installed), true, Action::Cancel),
        Err(Refused::NotInProgress("INSTALLED"))
    ));
    assert!(matches!(
        on_action(Some(DpState::RemovalPending), true, Action::Verify),
        Err(Refused::Removing(_))
    ));
    assert!(matches!(
        on_action(Some(DpState::InstallPending), true, Action::Verify),
        Err(Refused::NothingInstalled(_))
    ));
    assert!(matches!(
        on_action(Some(DpState::InstallFailed), false, Action::Verify),
        Err(Refused::NothingInstalled(_))
    ));
    assert_eq!(
        on_action(Some(DpState::Installed), true, Action::NewVersion),
        Ok(DpState::ContentUpdating)
    );
    assert_eq!(
        on_action(Some(DpState::InstallFailed), false, Action::NewVersion),
        Ok(DpState::InstallPending)
    );
    assert_eq!(
        on_action(Some(DpState::ContentUpdating), true, Action::Cancel),
        Ok(DpState::InstallFailed)
    );
}
