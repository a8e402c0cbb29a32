//! Distribution point groups: create, rename, delete, and the methods of
//! `SMS_DistributionPointGroup` as one typed [`GroupChange`].
//!
//! A group change reads only the group's own members and packages (a few thousand rows at
//! most, never the whole package-on-DP table) and writes the links, the targets or removals
//! they imply and their status messages in one transaction. Group sync state is not written
//! here: the database's triggers keep it (migration 0006).

use std::collections::{HashMap, HashSet};

use pkgdist_core::classes::DpState;
use pkgdist_db::{DpRow, GroupRow, PackageRow};

use super::rows::{changes, dp_map, plan, retarget};
use super::{OpError, Refusal, Thing};
use crate::now;
use crate::state::AppState;

/// One of `SMS_DistributionPointGroup`'s methods, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// AddDistributionPoints; `with_packages`: the group's packages go to the new members.
    AddMembers { nals: Vec<String>, with_packages: bool },
    /// RemoveDistributionPoints; `remove_packages`: the group's packages leave them.
    RemoveMembers { nals: Vec<String>, remove_packages: bool },
    /// AddPackages: each goes to every member.
    AddPackages { ids: Vec<String> },
    /// RemovePackages; `from_dps`: they leave every member.
    RemovePackages { ids: Vec<String>, from_dps: bool },
    /// ReDistributePackage: every member gets a complete, verified copy again.
    Redistribute { id: String },
    /// RefreshDPGroup: every package is sent to every member again.
    Refresh,
}

/// The group `id`, or [`OpError::NotFound`].
async fn group(state: &AppState, id: &str) -> Result<GroupRow, OpError> {
    state
        .db
        .group(id)
        .await?
        .ok_or_else(|| OpError::not_found(Thing::Group, id))
}

fn checked_name(name: &str) -> Result<String, OpError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(OpError::invalid("Name", "Name cannot be empty"));
    }
    Ok(name.to_owned())
}

pub async fn create(state: &AppState, name: &str, description: &str) -> Result<GroupRow, OpError> {
    let g = GroupRow {
        group_id: format!("{{{}}}", uuid::Uuid::new_v4().to_string().to_uppercase()),
        name: checked_name(name)?,
        description: description.to_owned(),
        source_site: state.site_code.to_string(),
        created_on: now(),
        modified_on: now(),
    };
    state.db.insert_group(&g).await?;
    Ok(g)
}

/// Renames or describes group `id`; `None` leaves a property as it is.
pub async fn update(
    state: &AppState,
    id: &str,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<GroupRow, OpError> {
    let mut g = group(state, id).await?;
    if let Some(v) = name {
        g.name = checked_name(v)?;
    }
    if let Some(v) = description {
        v.clone_into(&mut g.description);
    }
    g.modified_on = now();
    if !state.db.update_group(&g).await? {
        return Err(OpError::not_found(Thing::Group, id));
    }
    Ok(g)
}

/// Deletes group `id`. Its packages stay on its DPs, as in ConfigMgr.
pub async fn delete(state: &AppState, id: &str) -> Result<(), OpError> {
    if !state.db.delete_group(id).await? {
        return Err(OpError::not_found(Thing::Group, id));
    }
    Ok(())
}

/// The refusal for package `id` that the group does not hold: not assigned, or no such package.
async fn not_in_group(state: &AppState, id: &str) -> OpError {
    match state.db.package(id).await {
        Ok(Some(_)) => OpError::refused(id, Refusal::NotInGroup),
        Ok(None) => OpError::not_found(Thing::Package, id),
        Err(e) => e.into(),
    }
}

/// Applies one of the group's methods.
pub async fn change(state: &AppState, group_id: &str, change: &GroupChange) -> Result<(), OpError> {
    group(state, group_id).await?;
    let members: Vec<DpRow> = state.db.group_member_dps(group_id).await?;
    let packages: Vec<PackageRow> = state.db.group_package_rows(group_id).await?;
    let member_map: HashMap<String, DpRow> = members.iter().map(|d| (d.nal_path.clone(), d.clone())).collect();
    let time = now();
    // Targets and their status messages, written in the same transaction as the change.
    let plan = |pairs: &[(&PackageRow, &DpRow)], why: &str| plan(pairs, false, &time, why);
    match change {
        GroupChange::AddMembers { nals, with_packages } => {
            let known = dp_map(state, nals).await?;
            let new: Vec<&DpRow> = nals
                .iter()
                .map(|n| {
                    known
                        .get(n)
                        .ok_or_else(|| OpError::not_found(Thing::DistributionPoint, n))
                })
                .collect::<Result<_, _>>()?;
            let pairs: Vec<(&PackageRow, &DpRow)> = if *with_packages {
                new.iter().flat_map(|d| packages.iter().map(move |p| (p, *d))).collect()
            } else {
                Vec::new()
            };
            let (t, m) = plan(&pairs, "queued: the DP joined a group that holds the package");
            state.db.add_group_members(group_id, nals, &t, &m).await?;
        }
        GroupChange::RemoveMembers { nals, remove_packages } => {
            if let Some(n) = nals.iter().find(|n| !member_map.contains_key(*n)) {
                return Err(OpError::not_found(Thing::GroupMember, n));
            }
            let mut rows: Vec<(String, String)> = Vec::new();
            if *remove_packages {
                let in_group: HashSet<&str> = packages.iter().map(|p| p.package_id.as_str()).collect();
                for n in nals {
                    for r in state.db.dp_rows(n).await? {
                        if in_group.contains(r.package_id.as_str()) {
                            rows.push((r.package_id, r.nal_path));
                        }
                    }
                }
            }
            let (c, m) = changes(
                &member_map,
                &rows,
                DpState::RemovalPending,
                "removal queued: the DP left the group",
            );
            state.db.remove_group_members(group_id, nals, &c, &m).await?;
        }
        GroupChange::AddPackages { ids } => {
            let mut new = Vec::with_capacity(ids.len());
            for i in ids {
                new.push(super::packages::package(state, i).await?);
            }
            let pairs: Vec<(&PackageRow, &DpRow)> =
                new.iter().flat_map(|p| members.iter().map(move |d| (p, d))).collect();
            let (t, m) = plan(&pairs, "queued: the package was added to the DP's group");
            state.db.add_group_packages(group_id, ids, &t, &m).await?;
        }
        GroupChange::RemovePackages { ids, from_dps } => {
            for i in ids {
                if !packages.iter().any(|p| p.package_id == *i) {
                    return Err(not_in_group(state, i).await);
                }
            }
            let mut rows: Vec<(String, String)> = Vec::new();
            if *from_dps {
                for i in ids {
                    for r in state.db.package_rows(i).await? {
                        if member_map.contains_key(&r.nal_path) {
                            rows.push((r.package_id, r.nal_path));
                        }
                    }
                }
            }
            let (c, m) = changes(
                &member_map,
                &rows,
                DpState::RemovalPending,
                "removal queued: the package left the DP's group",
            );
            state.db.remove_group_packages(group_id, ids, &c, &m).await?;
        }
        GroupChange::Redistribute { id } => {
            let Some(p) = packages.iter().find(|p| p.package_id == *id) else {
                return Err(not_in_group(state, id).await);
            };
            let pairs: Vec<(&PackageRow, &DpRow)> = members.iter().map(|d| (p, d)).collect();
            retarget(
                state,
                &pairs,
                true,
                "redistribution: every file will be sent and verified again",
            )
            .await?;
        }
        GroupChange::Refresh => {
            let pairs: Vec<(&PackageRow, &DpRow)> = packages
                .iter()
                .flat_map(|p| members.iter().map(move |d| (p, d)))
                .collect();
            retarget(state, &pairs, false, "queued: the group was refreshed").await?;
        }
    }
    Ok(())
}
