//! Create, update, delete and methods: what each class allows, validated against the catalog
//! before anything changes, and applied in one database transaction.
//!
//! This layer records intent: rows, states and status messages. Moving content to the DPs is
//! the job of the distribution points and the distribution manager.

use std::collections::HashMap;
use std::path::Path;

use pkgdist_content::{ContentError, SnapshotOptions};
use pkgdist_core::classes::{DpState, MessageState, PackageClass, nal_path, nal_site, source_flag};
use pkgdist_core::dpstate::Action;
use pkgdist_core::errors::ErrorKind;
use pkgdist_core::{ContentId, PackageId, schedule};
use pkgdist_db::{
    DpRow, GroupRow, NewStatus, NewVersion, PackageField, PackageNumber, PackageRow, PackageText, TokenRow,
};
use pkgdist_proto::Role;
use pkgdist_proto::catalog::{ClassDef, MethodDef};
use serde_json::{Map, Value, json};

use crate::auth;
use crate::classes::{self, ClassId, Object};
use crate::error::{ApiError, ApiResult};
use crate::hierarchy;
use crate::now;
use crate::ops::{self, action_state, changes, dp_map, retarget, row_action, set_state};
use crate::state::AppState;

// ---- validation ----

/// Checks a create or update body against the class: known, writable, right type; on create,
/// everything required is present.
fn check_body(class: &ClassDef, body: &Map<String, Value>, creating: bool) -> ApiResult<()> {
    for (k, v) in body {
        let p = class.prop(k).ok_or_else(|| {
            ApiError::new(
                ErrorKind::UnknownProperty,
                format!("{} has no property {k:?} (names are case-sensitive)", class.name),
            )
            .param(k)
        })?;
        if !p.writable {
            return Err(
                ApiError::new(ErrorKind::ReadOnlyProperty, format!("{}.{k} is read-only", class.name)).param(k),
            );
        }
        if !creating && class.key.contains(&p.name) {
            return Err(ApiError::new(
                ErrorKind::ReadOnlyProperty,
                format!(
                    "{}.{k} is part of the key and cannot change; delete and create instead",
                    class.name
                ),
            )
            .param(k));
        }
        if !p.ty.accepts(v) {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                format!("{}.{k} must be a {}, got {v}", class.name, p.ty.name()),
            )
            .param(k));
        }
    }
    if creating {
        for p in class.props.iter().filter(|p| p.required) {
            if !body.contains_key(p.name) {
                return Err(ApiError::new(
                    ErrorKind::MissingProperty,
                    format!("{} needs {} to be created", class.name, p.name),
                )
                .param(p.name));
            }
        }
    }
    Ok(())
}

fn check_params(method: &MethodDef, params: &Map<String, Value>) -> ApiResult<()> {
    for (k, v) in params {
        let p = method.params.iter().find(|p| p.name == *k).ok_or_else(|| {
            let known: Vec<&str> = method.params.iter().map(|p| p.name).collect();
            ApiError::new(
                ErrorKind::UnknownProperty,
                format!(
                    "{} has no parameter {k:?} (it takes: {})",
                    method.name,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            )
            .param(k)
        })?;
        if !p.ty.accepts(v) {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                format!("parameter {k} of {} must be a {}, got {v}", method.name, p.ty.name()),
            )
            .param(k));
        }
    }
    for p in method.params.iter().filter(|p| p.required) {
        if !params.contains_key(p.name) {
            return Err(ApiError::new(
                ErrorKind::MissingProperty,
                format!("{} needs the parameter {}", method.name, p.name),
            )
            .param(p.name));
        }
    }
    Ok(())
}

fn text<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn int(m: &Map<String, Value>, k: &str) -> Option<i64> {
    m.get(k).and_then(Value::as_i64)
}

fn flag(m: &Map<String, Value>, k: &str, default: bool) -> bool {
    m.get(k).and_then(Value::as_bool).unwrap_or(default)
}

fn strings(m: &Map<String, Value>, k: &str) -> Vec<String> {
    m.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn ok(extra: Value) -> Object {
    let mut m = Map::new();
    m.insert("ReturnValue".into(), json!(0));
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    m
}

fn key_text(o: &Object, k: &str) -> String {
    o.get(k).and_then(Value::as_str).unwrap_or_default().to_owned()
}

// ---- entry points ----

pub async fn create(state: &AppState, class: &'static ClassDef, body: Map<String, Value>) -> ApiResult<Object> {
    if !class.create {
        return Err(ApiError::new(
            ErrorKind::NotAllowed,
            format!("{} instances cannot be created", class.name),
        ));
    }
    check_body(class, &body, true)?;
    match ClassId::of(class.name) {
        Some(ClassId::Package(pc)) => create_package(state, pc, &body).await,
        Some(ClassId::DistributionPointInfo) => create_dp(state, &body).await,
        Some(ClassId::Site) => hierarchy::create_site(state, &body).await,
        Some(ClassId::DistributionPoint) => {
            let (pkg, nal, site) = (
                key_text(&body, "PackageID"),
                key_text(&body, "ServerNALPath"),
                key_text(&body, "SiteCode"),
            );
            add_dps(state, &pkg, &[site], std::slice::from_ref(&nal)).await?;
            classes::get_written(
                state,
                "SMS_DistributionPoint",
                &[("PackageID", &pkg), ("ServerNALPath", &nal)],
            )
            .await
        }
        Some(ClassId::Group) => {
            let g = GroupRow {
                group_id: format!("{{{}}}", uuid::Uuid::new_v4().to_string().to_uppercase()),
                name: non_empty(&body, "Name")?,
                description: text(&body, "Description").unwrap_or_default().to_owned(),
                source_site: state.site_code.to_string(),
                created_on: now(),
                modified_on: now(),
            };
            state.db.insert_group(&g).await?;
            classes::get_written(state, class.name, &[("GroupID", &g.group_id)]).await
        }
        Some(ClassId::AdminToken) => {
            let role = text(&body, "Role").and_then(Role::parse).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidValue,
                    "Role must be FullAdministrator or ReadOnlyAnalyst",
                )
                .param("Role")
            })?;
            let token = auth::generate();
            let row = TokenRow {
                id: uuid::Uuid::new_v4().to_string(),
                name: non_empty(&body, "Name")?,
                role: role.as_str().into(),
                created_at: now(),
                revoked_at: None,
            };
            state.db.insert_token(&row, &auth::hash(&token)).await?;
            let mut o = classes::get_written(state, class.name, &[("TokenID", &row.id)]).await?;
            o.insert("Token".into(), json!(token));
            Ok(o)
        }
        _ => Err(ApiError::new(
            ErrorKind::NotAllowed,
            format!("{} instances cannot be created", class.name),
        )),
    }
}

pub async fn update(
    state: &AppState,
    class: &'static ClassDef,
    current: Object,
    body: Map<String, Value>,
) -> ApiResult<Object> {
    if !class.update {
        return Err(ApiError::new(
            ErrorKind::NotAllowed,
            format!("{} instances cannot be changed", class.name),
        ));
    }
    check_body(class, &body, false)?;
    match ClassId::of(class.name) {
        Some(ClassId::Package(_)) => update_package(state, class, &current, &body).await,
        Some(ClassId::DistributionPointInfo) => {
            let nal = key_text(&current, "NALPath");
            let mut d = state.db.dp(&nal).await?.ok_or_else(|| gone(&nal))?;
            hierarchy::check_own_dp(&d, "changed")?;
            // Written back only if the schedule changes: the scheduler owns it otherwise.
            d.validation_checked_at = None;
            apply_dp_settings(&mut d, &body)?;
            let sources = hierarchy::pull_settings(state, &mut d, &body).await?;
            if !state.db.update_dp(&d, sources.as_deref()).await? {
                return Err(gone(&nal));
            }
            state.work.notify_one();
            classes::get_written(state, class.name, &[("NALPath", &d.nal_path)]).await
        }
        Some(ClassId::DistributionPoint) => {
            let (pkg, nal) = (key_text(&current, "PackageID"), key_text(&current, "ServerNALPath"));
            if flag(&body, "RefreshNow", false) {
                let p = state.db.package(&pkg).await?.ok_or_else(|| gone(&pkg))?;
                let d = state.db.dp(&nal).await?.ok_or_else(|| gone(&nal))?;
                retarget(
                    state,
                    &[(&p, &d)],
                    false,
                    "RefreshNow: re-sending the current version to this DP",
                )
                .await?;
            }
            classes::get(state, class.name, &[("PackageID", &pkg), ("ServerNALPath", &nal)])
                .await?
                .ok_or_else(|| gone(&format!("{pkg} on {nal}")))
        }
        Some(ClassId::Group) => {
            let id = key_text(&current, "GroupID");
            let mut g = state.db.group(&id).await?.ok_or_else(|| gone(&id))?;
            if let Some(v) = text(&body, "Name") {
                g.name = v.trim().to_owned();
                if g.name.is_empty() {
                    return Err(ApiError::new(ErrorKind::InvalidValue, "Name cannot be empty").param("Name"));
                }
            }
            if let Some(v) = text(&body, "Description") {
                g.description = v.to_owned();
            }
            g.modified_on = now();
            state.db.update_group(&g).await?;
            classes::get(state, class.name, &[("GroupID", &g.group_id)])
                .await?
                .ok_or_else(|| gone(&g.group_id))
        }
        Some(ClassId::Settings) => update_settings(state, &body).await,
        Some(ClassId::Site) => hierarchy::update_site(state, &key_text(&current, "SiteCode"), &body).await,
        _ => Err(ApiError::new(
            ErrorKind::NotAllowed,
            format!("{} instances cannot be changed", class.name),
        )),
    }
}

/// PATCH of a package: validated as it will be, then only the properties given are written,
/// so a concurrent change to another property is not undone.
async fn update_package(
    state: &AppState,
    class: &'static ClassDef,
    current: &Object,
    body: &Map<String, Value>,
) -> ApiResult<Object> {
    let id = key_text(current, "PackageID");
    hierarchy::check_owned(state, &id, "changed").await?;
    let mut p = state.db.package(&id).await?.ok_or_else(|| gone(&id))?;
    let fields = package_changes(body);
    // Validate the package as it will be; then write only what changed, so a concurrent
    // change to another property is not undone.
    for f in &fields {
        apply(&mut p, f);
    }
    if p.name.is_empty() {
        return Err(ApiError::new(ErrorKind::InvalidValue, "Name cannot be empty").param("Name"));
    }
    check_package(&p)?;
    if !state.db.update_package_fields(&id, &fields).await? {
        return Err(gone(&id));
    }
    classes::get(state, class.name, &[("PackageID", &id)])
        .await?
        .ok_or_else(|| gone(&id))
}

/// Changes the distribution settings: checked, kept in the database, in force at once.
async fn update_settings(state: &AppState, body: &Map<String, Value>) -> ApiResult<Object> {
    let mut o = crate::distribution_overrides(&state.db)
        .await
        .map_err(|e| ApiError::new(ErrorKind::Storage, e.to_string()))?;
    let num = |k: &str| body.get(k).and_then(Value::as_u64);
    if let Some(v) = num("MaximumPackageCount") {
        o.max_packages = Some(usize::try_from(v).unwrap_or(usize::MAX));
    }
    if let Some(v) = num("MaximumThreadsPerPackage") {
        o.max_threads_per_package = Some(usize::try_from(v).unwrap_or(usize::MAX));
    }
    if let Some(v) = num("RetryCount") {
        o.retry_count = Some(u32::try_from(v).unwrap_or(u32::MAX));
    }
    if let Some(v) = num("DelayBeforeRetryingMins") {
        if !(1..=1440).contains(&v) {
            return Err(
                ApiError::new(ErrorKind::InvalidValue, "DelayBeforeRetryingMins must be 1-1440")
                    .param("DelayBeforeRetryingMins"),
            );
        }
        o.retry_delay_secs = Some(v * 60);
    }
    if let Some(v) = num("DelayBeforeRetryingSecs") {
        if let Some(mins) = num("DelayBeforeRetryingMins")
            && mins * 60 != v
        {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                format!(
                    "DelayBeforeRetryingMins ({mins}) and DelayBeforeRetryingSecs ({v}) disagree: give one of them"
                ),
            )
            .param("DelayBeforeRetryingSecs"));
        }
        o.retry_delay_secs = Some(v);
    }
    let next = state.dist().with(&o);
    next.check().map_err(|e| ApiError::new(ErrorKind::InvalidValue, e))?;
    let json = serde_json::to_string(&o).map_err(ApiError::internal)?;
    state.db.set_setting(crate::DISTRIBUTION_SETTINGS, &json).await?;
    state.set_dist(next);
    state.work.notify_one();
    tracing::info!(settings = %json, "distribution settings changed");
    Ok(classes::settings_object(state))
}

pub async fn delete(state: &AppState, class: &'static ClassDef, current: Object) -> ApiResult<()> {
    if !class.delete {
        return Err(ApiError::new(
            ErrorKind::NotAllowed,
            format!("{} instances cannot be deleted", class.name),
        ));
    }
    match ClassId::of(class.name) {
        Some(ClassId::Package(_)) => {
            let id = key_text(&current, "PackageID");
            hierarchy::check_owned(state, &id, "deleted").await?;
            delete_package(state, &id).await
        }
        Some(ClassId::DistributionPointInfo) => {
            let nal = key_text(&current, "NALPath");
            if let Some(d) = state.db.dp(&nal).await? {
                hierarchy::check_own_dp(&d, "deleted")?;
                hierarchy::check_not_a_source(state, &d).await?;
            }
            state.db.delete_dp(&nal).await?;
            Ok(())
        }
        Some(ClassId::Site) => hierarchy::delete_site(state, &key_text(&current, "SiteCode")).await,
        Some(ClassId::DistributionPoint) => {
            // As in ConfigMgr, removal is deferred: the row shows REMOVAL_PENDING until the DP
            // has released the content.
            let (pkg, nal) = (key_text(&current, "PackageID"), key_text(&current, "ServerNALPath"));
            Ok(set_state(state, &[(pkg, nal)], DpState::RemovalPending, "removal queued").await?)
        }
        Some(ClassId::Group) => {
            state.db.delete_group(&key_text(&current, "GroupID")).await?;
            Ok(())
        }
        Some(ClassId::AdminToken) => {
            let id = key_text(&current, "TokenID");
            let live_admin = current.get("Role").and_then(Value::as_str) == Some(Role::FullAdministrator.as_str())
                && current.get("RevokedOn").is_none_or(Value::is_null);
            if live_admin && state.db.other_live_admins(&id).await? == 0 {
                return Err(ApiError::new(
                    ErrorKind::InvalidState,
                    "this is the last live FullAdministrator token: revoking it would lock every administrator out. Create another first",
                )
                .object(id));
            }
            state.db.revoke_token(&id, &now()).await?;
            Ok(())
        }
        _ => Err(ApiError::new(
            ErrorKind::NotAllowed,
            format!("{} instances cannot be deleted", class.name),
        )),
    }
}

/// Deletes a package and releases its versions from the library.
pub(crate) async fn delete_package(state: &AppState, id: &str) -> ApiResult<()> {
    // Not while its source is being refreshed.
    let lock = state.refresh_lock(id);
    let _one_at_a_time = lock.lock().await;
    state.db.delete_package(id).await?;
    // The database is the truth: the package is gone. Releasing its versions in the library
    // lets garbage collection reclaim chunks no other package uses; if that fails, the
    // versions stay as unreferenced-by-the-site data and a warning says so.
    if let Ok(pid) = id.parse::<PackageId>() {
        let lib = state.library.clone();
        let released = tokio::task::spawn_blocking(move || -> Result<(), ContentError> {
            for v in lib.versions()?.into_iter().filter(|c| c.package == pid) {
                lib.release(v)?;
            }
            Ok(())
        })
        .await;
        if !matches!(released, Ok(Ok(()))) {
            tracing::warn!(package = %id, "deleted, but its content versions could not be released from the library");
        }
    }
    Ok(())
}

pub async fn call(
    state: &AppState,
    class: &'static ClassDef,
    instance: Option<Object>,
    method: &MethodDef,
    params: Map<String, Value>,
) -> ApiResult<Object> {
    check_params(method, &params)?;
    let instance = instance.unwrap_or_default();
    match (ClassId::of(class.name), method.name) {
        (Some(ClassId::Package(_)), "RefreshPkgSource") => refresh(state, &key_text(&instance, "PackageID")).await,
        (Some(ClassId::Package(_)), "AddDistributionPoints") => {
            let (sites, nals) = (strings(&params, "SiteCode"), strings(&params, "NALPath"));
            add_dps(state, &key_text(&instance, "PackageID"), &sites, &nals).await?;
            Ok(ok(json!({})))
        }
        (Some(ClassId::DistributionPoint), "VerifyPackage" | "CancelDistribution") => {
            let (pkg, nal) = (key_text(&params, "PackageID"), key_text(&params, "NALPath"));
            let action = if method.name == "VerifyPackage" {
                Action::Verify
            } else {
                Action::Cancel
            };
            row_action(state, &pkg, &nal, action).await?;
            Ok(ok(json!({})))
        }
        (Some(ClassId::Group), m) => group_method(state, &key_text(&instance, "GroupID"), m, &params).await,
        (Some(ClassId::ScheduleMethods), "ReadFromString") => {
            let tokens = schedule::read_from_string(text(&params, "StringData").unwrap_or_default())
                .map_err(|e| ApiError::new(ErrorKind::InvalidValue, format!("StringData: {e}")).param("StringData"))?;
            let data: Vec<Value> = tokens.iter().map(|t| Value::Object(t.to_json())).collect();
            Ok(ok(json!({"TokenData": data})))
        }
        (Some(ClassId::ScheduleMethods), "WriteToString") => {
            let list = params
                .get("TokenData")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut tokens = Vec::with_capacity(list.len());
            for (i, v) in list.iter().enumerate() {
                let m = v.as_object().cloned().unwrap_or_default();
                tokens.push(schedule::ScheduleToken::from_json(&m, i + 1).map_err(|e| {
                    ApiError::new(ErrorKind::InvalidValue, format!("TokenData: {e}")).param("TokenData")
                })?);
            }
            if tokens.is_empty() {
                return Err(
                    ApiError::new(ErrorKind::InvalidValue, "TokenData is empty: give at least one token")
                        .param("TokenData"),
                );
            }
            let s = schedule::write_to_string(&tokens)
                .map_err(|e| ApiError::new(ErrorKind::InvalidValue, format!("TokenData: {e}")).param("TokenData"))?;
            Ok(ok(json!({"StringData": s})))
        }
        _ => Err(ApiError::new(
            ErrorKind::UnknownMethod,
            format!("{}.{} is not implemented", class.name, method.name),
        )),
    }
}

// ---- packages ----

/// The package columns a PATCH body changes.
fn package_changes(body: &Map<String, Value>) -> Vec<PackageField> {
    let mut out = Vec::new();
    for (prop, col) in [
        ("Name", PackageText::Name),
        ("Version", PackageText::Version),
        ("Manufacturer", PackageText::Manufacturer),
        ("Language", PackageText::Language),
        ("Description", PackageText::Description),
        ("PkgSourcePath", PackageText::SourcePath),
    ] {
        if let Some(v) = text(body, prop) {
            let v = if prop == "Name" { v.trim() } else { v };
            out.push(PackageField::Text(col, v.to_owned()));
        }
    }
    for (prop, col) in [
        ("PkgSourceFlag", PackageNumber::SourceFlag),
        ("PkgFlags", PackageNumber::Flags),
        ("Priority", PackageNumber::Priority),
    ] {
        if let Some(v) = int(body, prop) {
            out.push(PackageField::Number(col, v));
        }
    }
    if let Some(v) = text(body, "RefreshSchedule") {
        out.push(PackageField::Text(PackageText::RefreshSchedule, v.trim().to_owned()));
        // Occurrences before now are not owed: the schedule starts counting from here.
        out.push(PackageField::Text(PackageText::ScheduleCheckedAt, now()));
    }
    out
}

/// A change applied to a row in memory (to validate the result before writing it).
fn apply(p: &mut PackageRow, f: &PackageField) {
    match f {
        PackageField::Text(t, v) => {
            let slot = match t {
                PackageText::Name => &mut p.name,
                PackageText::Version => &mut p.version,
                PackageText::Manufacturer => &mut p.manufacturer,
                PackageText::Language => &mut p.language,
                PackageText::Description => &mut p.description,
                PackageText::SourcePath => &mut p.pkg_source_path,
                PackageText::RefreshSchedule => &mut p.refresh_schedule,
                PackageText::ScheduleCheckedAt => {
                    p.schedule_checked_at = Some(v.clone());
                    return;
                }
            };
            *slot = v.clone();
        }
        PackageField::Number(n, v) => match n {
            PackageNumber::SourceFlag => p.pkg_source_flag = *v,
            PackageNumber::Flags => p.pkg_flags = *v,
            PackageNumber::Priority => p.priority = *v,
        },
    }
}

fn non_empty(body: &Map<String, Value>, k: &str) -> ApiResult<String> {
    let v = text(body, k).unwrap_or_default().trim().to_owned();
    if v.is_empty() {
        return Err(ApiError::new(ErrorKind::InvalidValue, format!("{k} cannot be empty")).param(k));
    }
    Ok(v)
}

fn gone(what: &str) -> ApiError {
    ApiError::new(ErrorKind::UnknownInstance, format!("{what} no longer exists")).object(what)
}

/// Most tokens a package's RefreshSchedule may hold, as in ConfigMgr.
const MAX_SCHEDULE_TOKENS: usize = 15;

/// Checks an interval string given for property `param`.
fn check_schedule(text: &str, param: &'static str) -> ApiResult<()> {
    let tokens = schedule::read_from_string(text)
        .map_err(|e| ApiError::new(ErrorKind::InvalidValue, format!("{param}: {e}")).param(param))?;
    if tokens.len() > MAX_SCHEDULE_TOKENS {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!(
                "{param} has {} tokens; at most {MAX_SCHEDULE_TOKENS} are allowed",
                tokens.len()
            ),
        )
        .param(param));
    }
    Ok(())
}

fn check_package(p: &PackageRow) -> ApiResult<()> {
    if !p.refresh_schedule.is_empty() {
        check_schedule(&p.refresh_schedule, "RefreshSchedule")?;
        if p.pkg_source_flag != i64::from(source_flag::STORAGE_DIRECT) {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                "a RefreshSchedule needs PkgSourceFlag 2 (STORAGE_DIRECT) and a PkgSourcePath",
            )
            .param("RefreshSchedule"));
        }
    }
    if !(1..=3).contains(&p.priority) {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "Priority must be 1 (high), 2 (normal) or 3 (low)",
        )
        .param("Priority"));
    }
    if !(0..=4).contains(&p.pkg_source_flag) {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "PkgSourceFlag must be 0 to 4 (2 = STORAGE_DIRECT)",
        )
        .param("PkgSourceFlag"));
    }
    if !p.pkg_source_path.is_empty() && !Path::new(&p.pkg_source_path).is_absolute() {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "PkgSourcePath must be an absolute path on the site server",
        )
        .param("PkgSourcePath"));
    }
    Ok(())
}

/// Checks the source folder exists and is readable before anything is recorded.
fn check_source(path: &str) -> ApiResult<()> {
    match std::fs::read_dir(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::new(
            ErrorKind::SourceMissing,
            format!("the source folder {path} does not exist; create it or fix PkgSourcePath"),
        )
        .param("PkgSourcePath")),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(ApiError::new(
            ErrorKind::SourceMissing,
            format!("{path} is not a folder; PkgSourcePath names the package's source folder"),
        )
        .param("PkgSourcePath")),
        Err(e) => Err(ApiError::new(
            ErrorKind::SourceUnreadable,
            format!("the source folder {path} cannot be read ({e}); check its permissions"),
        )
        .param("PkgSourcePath")),
    }
}

/// Snapshots `source` as `target` on a blocking thread.
/// What a snapshot recorded.
struct Snapshotted {
    manifest: String,
    size_kb: i64,
    /// Identical to the previous version.
    unchanged: bool,
}

async fn snapshot(
    state: &AppState,
    source: &str,
    target: ContentId,
    previous: Option<ContentId>,
) -> ApiResult<Snapshotted> {
    let lib = state.library.clone();
    let src = source.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        lib.snapshot(
            Path::new(&src),
            target,
            &SnapshotOptions {
                previous,
                ..Default::default()
            },
        )
    })
    .await
    .map_err(ApiError::internal)?;
    match out {
        Ok(o) => Ok(Snapshotted {
            manifest: o.manifest_id.to_hex(),
            size_kb: i64::try_from(o.stats.bytes.div_ceil(1024)).unwrap_or(i64::MAX),
            unchanged: o.unchanged,
        }),
        Err(ContentError::Source { path, reason }) => Err(ApiError::new(
            ErrorKind::SourceUnreadable,
            format!("cannot snapshot {}: {reason}", path.display()),
        )
        .param("PkgSourcePath")),
        Err(e) => Err(ApiError::new(
            ErrorKind::Storage,
            format!("the content library could not record {target}: {e}"),
        )),
    }
}

async fn create_package(state: &AppState, pc: PackageClass, body: &Map<String, Value>) -> ApiResult<Object> {
    let path = text(body, "PkgSourcePath").unwrap_or_default().trim().to_owned();
    let flag = int(body, "PkgSourceFlag").unwrap_or(if path.is_empty() {
        i64::from(source_flag::STORAGE_NO_SOURCE)
    } else {
        i64::from(source_flag::STORAGE_DIRECT)
    });
    let mut row = PackageRow {
        package_id: String::new(),
        package_type: i64::from(pc.package_type()),
        name: non_empty(body, "Name")?,
        version: text(body, "Version").unwrap_or_default().to_owned(),
        manufacturer: text(body, "Manufacturer").unwrap_or_default().to_owned(),
        language: text(body, "Language").unwrap_or_default().to_owned(),
        description: text(body, "Description").unwrap_or_default().to_owned(),
        pkg_source_path: path.clone(),
        pkg_source_flag: flag,
        source_version: 0,
        source_date: None,
        last_refresh_time: None,
        package_size: 0,
        pkg_flags: int(body, "PkgFlags").unwrap_or(0),
        priority: int(body, "Priority").unwrap_or(2),
        action_in_progress: 0,
        source_site: state.site_code.to_string(),
        refresh_schedule: text(body, "RefreshSchedule").unwrap_or_default().trim().to_owned(),
        schedule_checked_at: Some(now()),
        manifest_hash: None,
        created_at: now(),
    };
    check_package(&row)?;
    if flag == i64::from(source_flag::STORAGE_NO_SOURCE) && !path.is_empty() {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "PkgSourceFlag 1 (STORAGE_NO_SOURCE) means no source, but PkgSourcePath is set; use PkgSourceFlag 2",
        )
        .param("PkgSourceFlag"));
    }
    if flag == i64::from(source_flag::STORAGE_DIRECT) && path.is_empty() {
        return Err(ApiError::new(
            ErrorKind::MissingProperty,
            "PkgSourceFlag 2 (STORAGE_DIRECT) needs a PkgSourcePath",
        )
        .param("PkgSourcePath"));
    }
    if !path.is_empty() {
        check_source(&path)?;
    }
    let serial = state.db.next_counter("package", 1).await?;
    let pid = u32::try_from(serial)
        .ok()
        .and_then(|s| PackageId::new(state.site_code, s).ok())
        .ok_or_else(|| ApiError::internal("this site has used all 1,048,575 PackageIDs"))?;
    row.package_id = pid.to_string();
    if !path.is_empty() {
        // As ConfigMgr does: a package with a source has SourceVersion 1 from the start.
        let target = ContentId {
            package: pid,
            version: 1,
        };
        let snap = snapshot(state, &path, target, None).await?;
        row.source_version = 1;
        row.manifest_hash = Some(snap.manifest);
        row.package_size = snap.size_kb;
        row.source_date = Some(now());
        row.last_refresh_time = row.source_date.clone();
    }
    state.db.insert_package(&row).await?;
    tracing::info!(package = %row.package_id, class = pc.class_name(), "package created");
    classes::get_written(state, pc.class_name(), &[("PackageID", &row.package_id)]).await
}

/// Who asked for a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `RefreshPkgSource`: always a new version, as in ConfigMgr.
    Method,
    /// The package's RefreshSchedule: a new version only if the source changed.
    Schedule,
}

async fn refresh(state: &AppState, id: &str) -> ApiResult<Object> {
    refresh_package(state, id, Trigger::Method).await
}

/// Re-reads a package's source into the library and records the new version. With
/// [`Trigger::Schedule`], an unchanged source records a status message and nothing else.
pub async fn refresh_package(state: &AppState, id: &str, trigger: Trigger) -> ApiResult<Object> {
    let lock = state.refresh_lock(id);
    let _one_at_a_time = lock.lock().await;
    let p = state.db.package(id).await?.ok_or_else(|| unknown_package(id))?;
    hierarchy::check_owned(state, id, "refreshed").await?;
    if p.pkg_source_path.is_empty() || p.pkg_source_flag == i64::from(source_flag::STORAGE_NO_SOURCE) {
        return Err(ApiError::new(
            ErrorKind::NoSource,
            format!("package {id} has no source folder to refresh; set PkgSourcePath (and PkgSourceFlag 2) first"),
        )
        .object(id));
    }
    check_source(&p.pkg_source_path)?;
    let pid: PackageId = id.parse().map_err(ApiError::internal)?;
    let recorded = u32::try_from(p.source_version).map_err(ApiError::internal)?;
    // A crash between recording content and recording the version leaves the library a version
    // ahead of the database; step past it rather than collide with it forever.
    let lib = state.library.clone();
    let in_library = tokio::task::spawn_blocking(move || lib.latest(pid))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::new(ErrorKind::Storage, format!("the content library cannot be read: {e}")))?
        .map_or(0, |c| c.version);
    let version = recorded.max(in_library).checked_add(1).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidState,
            format!("package {id} has reached the highest SourceVersion"),
        )
    })?;
    let previous = (recorded > 0).then_some(ContentId {
        package: pid,
        version: recorded,
    });
    let target = ContentId { package: pid, version };
    let snap = snapshot(state, &p.pkg_source_path, target, previous).await?;
    if trigger == Trigger::Schedule && snap.unchanged && recorded > 0 {
        // Nothing changed: no version, nothing sent. Forget the identical snapshot.
        let lib = state.library.clone();
        let released = tokio::task::spawn_blocking(move || lib.release(target)).await;
        if !matches!(released, Ok(Ok(_))) {
            tracing::warn!(content = %target, "could not release an unchanged scheduled snapshot");
        }
        let msg = NewStatus {
            package_id: id.to_owned(),
            nal_path: String::new(),
            site_code: state.site_code.to_string(),
            message_id: MSG_UNCHANGED,
            message_state: MessageState::Success as i64,
            severity: i64::from(MessageState::Success.severity()),
            description: format!(
                "scheduled refresh of {id}: the source has not changed since version {recorded}; nothing was sent"
            ),
            bytes_transferred: 0,
            time: now(),
        };
        state.db.add_status(&msg).await?;
        tracing::info!(package = %id, "scheduled refresh: source unchanged");
        return Ok(ok(json!({"SourceVersion": recorded, "Unchanged": true})));
    }
    let why = format!("{target} queued for distribution");
    let nv = new_version(
        id,
        p.source_version,
        i64::from(version),
        snap.manifest,
        snap.size_kb,
        &why,
    );
    let done = state.db.record_version(&nv).await?;
    if !done {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("package {id} was deleted or changed while its source was being read; nothing was recorded"),
        )
        .object(id));
    }
    tracing::info!(content = %target, "source refreshed");
    Ok(ok(json!({"SourceVersion": version})))
}

/// A new version of package `id` (from `previous`), retargeting its DPs with message `why`.
pub(crate) fn new_version(
    id: &str,
    previous: i64,
    version: i64,
    manifest_hash: String,
    size_kb: i64,
    why: &str,
) -> NewVersion {
    let in_progress = MessageState::InProgress;
    NewVersion {
        package_id: id.to_owned(),
        previous_version: previous,
        source_version: version,
        manifest_hash,
        package_size_kb: size_kb,
        time: now(),
        action_in_progress: i64::from(pkgdist_core::classes::action::UPDATE),
        dp_state: i64::from(action_state(false, Action::NewVersion)),
        dp_state_if_installed: i64::from(action_state(true, Action::NewVersion)),
        dp_message: why.to_owned(),
        message_id: MSG_QUEUED,
        message_state: in_progress as i64,
        severity: i64::from(in_progress.severity()),
    }
}

/// `SMS_DistributionDPStatus.MessageID` of "queued for a DP" messages.
const MSG_QUEUED: i64 = 2357;
/// Message of a scheduled refresh that found nothing new (ConfigMgr's "package processed").
const MSG_UNCHANGED: i64 = 2301;

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

/// Targets package `pkg` at DPs given by NAL path, checking each DP's site.
async fn add_dps(state: &AppState, pkg: &str, sites: &[String], nals: &[String]) -> ApiResult<()> {
    if sites.len() != nals.len() {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!(
                "SiteCode has {} entries and NALPath {}: give one site code per DP",
                sites.len(),
                nals.len()
            ),
        )
        .param("SiteCode"));
    }
    let p = state.db.package(pkg).await?.ok_or_else(|| unknown_package(pkg))?;
    let known = dp_map(state, nals).await?;
    let mut dps = Vec::new();
    for (site, nal) in sites.iter().zip(nals) {
        let d = known.get(nal).ok_or_else(|| unknown_dp(nal))?;
        if *site != d.site_code || nal_site(nal) != Some(d.site_code.as_str()) {
            return Err(ApiError::new(
                ErrorKind::SiteMismatch,
                format!(
                    "SiteCode {site} does not match the site of DP {} ({}); SiteCode must be the DP's own site",
                    d.name, d.site_code
                ),
            )
            .param("SiteCode"));
        }
        dps.push(d);
    }
    let pairs: Vec<(&PackageRow, &DpRow)> = dps.iter().map(|d| (&p, *d)).collect();
    Ok(retarget(state, &pairs, false, "queued for distribution").await?)
}

// ---- distribution points ----

async fn create_dp(state: &AppState, body: &Map<String, Value>) -> ApiResult<Object> {
    let name = non_empty(body, "Name")?;
    let valid = name.len() <= 253
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
    if !valid {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "Name must be a host name: letters, digits, '-' and '.'",
        )
        .param("Name"));
    }
    let token = auth::generate();
    let site = state.site_code.to_string();
    let mut d = DpRow::new(nal_path(&name, &site), name, site, now());
    d.enrollment_token_hash = Some(auth::hash(&token));
    apply_dp_settings(&mut d, body)?;
    let sources = hierarchy::pull_settings(state, &mut d, body).await?;
    state.db.insert_dp(&d).await?;
    if let Some(sources) = sources.filter(|s| !s.is_empty()) {
        state.db.set_pull_sources(&d.nal_path, &sources).await?;
    }
    let mut o = classes::get_written(state, "SMS_DistributionPointInfo", &[("NALPath", &d.nal_path)]).await?;
    o.insert("EnrollmentToken".into(), json!(token));
    Ok(o)
}

/// The administrator-settable properties of `SMS_DistributionPointInfo`, checked.
fn apply_dp_settings(d: &mut DpRow, body: &Map<String, Value>) -> ApiResult<()> {
    if let Some(v) = text(body, "Description") {
        d.description = v.to_owned();
    }
    if let Some(v) = int(body, "Priority") {
        d.priority = v;
    }
    if let Some(v) = body.get("RepairDamagedContent").and_then(Value::as_bool) {
        d.repair_damaged = i64::from(v);
    }
    let bad = |param: &'static str, why: String| Err(ApiError::new(ErrorKind::InvalidValue, why).param(param));
    if let Some(v) = body.get("RateLimitBytesPerSecond").and_then(Value::as_u64) {
        let Ok(rate @ (0 | 1024..)) = i64::try_from(v) else {
            return bad(
                "RateLimitBytesPerSecond",
                format!("RateLimitBytesPerSecond is {v}: use 0 (unlimited) or at least 1024"),
            );
        };
        d.rate_bytes_per_sec = rate;
        if !body.contains_key("RateLimitMode") {
            d.rate_mode = if rate > 0 { 3 } else { 0 };
        }
    }
    if let Some(v) = int(body, "PulseBlockSizeKB") {
        if !(1..=10_240).contains(&v) {
            return bad("PulseBlockSizeKB", format!("PulseBlockSizeKB is {v}: use 1-10240"));
        }
        d.pulse_block_kb = v;
    }
    if let Some(v) = int(body, "PulseDelaySeconds") {
        if !(0..=3600).contains(&v) {
            return bad("PulseDelaySeconds", format!("PulseDelaySeconds is {v}: use 0-3600"));
        }
        d.pulse_delay_secs = v;
    }
    if let Some(v) = text(body, "HourlyPercentages") {
        if let Err(e) = pkgdist_core::availability::parse_hourly_percent(v) {
            return bad("HourlyPercentages", format!("HourlyPercentages: {e}"));
        }
        v.clone_into(&mut d.hourly_percent);
    }
    if let Some(v) = int(body, "RateLimitMode") {
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
    if let Err(why) = mode_ok {
        return bad("RateLimitMode", why.into());
    }
    if let Some(v) = text(body, "AvailabilitySchedule") {
        let a = pkgdist_core::availability::Availability::parse(v).map_err(|e| {
            ApiError::new(ErrorKind::InvalidValue, format!("AvailabilitySchedule: {e}")).param("AvailabilitySchedule")
        })?;
        d.availability = a.format();
    }
    if let Some(v) = text(body, "ValidationSchedule") {
        if !v.is_empty() {
            check_schedule(v, "ValidationSchedule")?;
        }
        if v != d.validation_schedule {
            d.validation_schedule = v.to_owned();
            // Occurrences before the change are not owed.
            d.validation_checked_at = Some(now());
        }
    }
    Ok(())
}

// ---- groups ----

async fn group_method(
    state: &AppState,
    group_id: &str,
    method: &str,
    params: &Map<String, Value>,
) -> ApiResult<Object> {
    // The group's own members and packages: a few thousand rows at most, never the whole
    // package-on-DP table.
    let members: Vec<DpRow> = state.db.group_member_dps(group_id).await?;
    let packages: Vec<PackageRow> = state.db.group_package_rows(group_id).await?;
    let member_map: HashMap<String, DpRow> = members.iter().map(|d| (d.nal_path.clone(), d.clone())).collect();
    let time = now();
    // Targets and their status messages, written in the same transaction as the change.
    let plan = |pairs: &[(&PackageRow, &DpRow)], why: &str| ops::plan(pairs, false, &time, why);
    match method {
        "AddDistributionPoints" => {
            let nals = strings(params, "DPNALPath");
            let known = dp_map(state, &nals).await?;
            let new: Vec<&DpRow> = nals
                .iter()
                .map(|n| known.get(n).ok_or_else(|| unknown_dp(n)))
                .collect::<ApiResult<_>>()?;
            let pairs: Vec<(&PackageRow, &DpRow)> = if flag(params, "AddTargetedPackages", true) {
                new.iter().flat_map(|d| packages.iter().map(move |p| (p, *d))).collect()
            } else {
                Vec::new()
            };
            let (t, m) = plan(&pairs, "queued: the DP joined a group that holds the package");
            state.db.add_group_members(group_id, &nals, &t, &m).await?;
        }
        "RemoveDistributionPoints" => {
            let nals = strings(params, "DPNALPath");
            if let Some(n) = nals.iter().find(|n| !member_map.contains_key(*n)) {
                return Err(
                    ApiError::new(ErrorKind::UnknownInstance, format!("{n} is not a member of the group")).object(n),
                );
            }
            let mut rows: Vec<(String, String)> = Vec::new();
            if flag(params, "RemoveTargetedPackages", false) {
                let in_group: std::collections::HashSet<&str> =
                    packages.iter().map(|p| p.package_id.as_str()).collect();
                for n in &nals {
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
            state.db.remove_group_members(group_id, &nals, &c, &m).await?;
        }
        "AddPackages" => {
            let ids = strings(params, "PackageIDs");
            let mut new = Vec::with_capacity(ids.len());
            for i in &ids {
                new.push(state.db.package(i).await?.ok_or_else(|| unknown_package(i))?);
            }
            let pairs: Vec<(&PackageRow, &DpRow)> =
                new.iter().flat_map(|p| members.iter().map(move |d| (p, d))).collect();
            let (t, m) = plan(&pairs, "queued: the package was added to the DP's group");
            state.db.add_group_packages(group_id, &ids, &t, &m).await?;
        }
        "RemovePackages" => {
            let ids = strings(params, "PackageIDs");
            for i in &ids {
                if !packages.iter().any(|p| p.package_id == *i) {
                    return Err(if state.db.package(i).await?.is_some() {
                        not_in_group(i)
                    } else {
                        unknown_package(i)
                    });
                }
            }
            let mut rows: Vec<(String, String)> = Vec::new();
            if flag(params, "RemovePackageFromDPs", true) {
                for i in &ids {
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
            state.db.remove_group_packages(group_id, &ids, &c, &m).await?;
        }
        "ReDistributePackage" => {
            let id = key_text(params, "PackageID");
            let Some(p) = packages.iter().find(|p| p.package_id == id) else {
                return Err(if state.db.package(&id).await?.is_some() {
                    not_in_group(&id)
                } else {
                    unknown_package(&id)
                });
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
        "RefreshDPGroup" => {
            let pairs: Vec<(&PackageRow, &DpRow)> = packages
                .iter()
                .flat_map(|p| members.iter().map(move |d| (p, d)))
                .collect();
            retarget(state, &pairs, false, "queued: the group was refreshed").await?;
        }
        other => {
            return Err(ApiError::new(
                ErrorKind::UnknownMethod,
                format!("SMS_DistributionPointGroup.{other} is not implemented"),
            ));
        }
    }
    Ok(ok(json!({})))
}

fn unknown_dp(nal: &str) -> ApiError {
    ApiError::new(
        ErrorKind::UnknownInstance,
        format!("no distribution point {nal}; see SMS_DistributionPointInfo"),
    )
    .object(nal)
}

fn unknown_package(id: &str) -> ApiError {
    ApiError::new(ErrorKind::UnknownInstance, format!("no package {id}")).object(id)
}

fn not_in_group(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::PackageNotInGroup,
        format!("package {id} is not assigned to this group; add it with AddPackages first"),
    )
    .object(id)
}
