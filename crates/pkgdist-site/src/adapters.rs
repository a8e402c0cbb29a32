//! One adapter per class: what POST, PATCH, DELETE and method calls do to it, registered in
//! [`adapter`], the one table that says so (its reads are `crate::classes::reader`'s table).
//!
//! An adapter is the JSON edge and nothing more: the body is checked against the catalog
//! (known, writable, right type, required present) before anything else runs, turned into the
//! typed input of an operation in `crate::ops`, and the operation's result is read back as the
//! class's instance. Every decision about what may change, and every write, is the
//! operation's. A test holds the table to the catalog, so the OpenAPI document (generated from
//! the catalog) promises exactly what is implemented.

use std::future::Future;
use std::pin::Pin;

use pkgdist_core::classes::DpState;
use pkgdist_core::dpstate::Action;
use pkgdist_core::errors::ErrorKind;
use pkgdist_core::schedule;
use pkgdist_db::{PackageField, PackageNumber, PackageText};
use pkgdist_proto::Role;
use pkgdist_proto::catalog::{ClassDef, MethodDef};
use serde_json::{Map, Value, json};

use crate::classes::{self, ClassId, Object};
use crate::error::{ApiError, ApiResult};
use crate::ops::dps::{DpSettings, PullSettings};
use crate::ops::groups::GroupChange;
use crate::ops::packages::{DpTarget, NewPackage, Trigger};
use crate::ops::settings::SettingsChange;
use crate::ops::{self, rows};
use crate::state::AppState;
use crate::{hierarchy, now};

type Body = Map<String, Value>;
type Answer<'a, T> = Pin<Box<dyn Future<Output = ApiResult<T>> + Send + 'a>>;
/// Creates an instance of the class from a checked body.
type Create = for<'a> fn(&'a AppState, ClassId, Body) -> Answer<'a, Object>;
/// Changes the instance (as read) with a checked body.
type Update = for<'a> fn(&'a AppState, ClassId, Object, Body) -> Answer<'a, Object>;
/// Deletes the instance (as read).
type Delete = for<'a> fn(&'a AppState, Object) -> Answer<'a, ()>;
/// Calls a method on the instance (empty for a static method) with checked parameters.
type Method = for<'a> fn(&'a AppState, Object, Body) -> Answer<'a, Object>;

/// What a class does beyond being read; `None` and absent methods are refused.
pub struct Adapter {
    create: Option<Create>,
    update: Option<Update>,
    delete: Option<Delete>,
    methods: &'static [(&'static str, Method)],
}

const READ_ONLY: Adapter = Adapter {
    create: None,
    update: None,
    delete: None,
    methods: &[],
};

/// The table: every class's adapter.
pub fn adapter(class: ClassId) -> Adapter {
    match class {
        ClassId::Package(_) => Adapter {
            create: Some(create_package),
            update: Some(update_package),
            delete: Some(delete_package),
            methods: &[
                ("RefreshPkgSource", refresh_package),
                ("AddDistributionPoints", package_add_dps),
            ],
        },
        ClassId::DistributionPointInfo => Adapter {
            create: Some(create_dp),
            update: Some(update_dp),
            delete: Some(delete_dp),
            methods: &[],
        },
        ClassId::DistributionPoint => Adapter {
            create: Some(create_row),
            update: Some(update_row),
            delete: Some(delete_row),
            methods: &[("VerifyPackage", verify_row), ("CancelDistribution", cancel_row)],
        },
        ClassId::Group => Adapter {
            create: Some(create_group),
            update: Some(update_group),
            delete: Some(delete_group),
            methods: &[
                ("AddDistributionPoints", group_add_dps),
                ("RemoveDistributionPoints", group_remove_dps),
                ("AddPackages", group_add_packages),
                ("RemovePackages", group_remove_packages),
                ("ReDistributePackage", group_redistribute),
                ("RefreshDPGroup", group_refresh),
            ],
        },
        ClassId::ScheduleMethods => Adapter {
            methods: &[("ReadFromString", read_from_string), ("WriteToString", write_to_string)],
            ..READ_ONLY
        },
        ClassId::Identification => Adapter {
            methods: &[("GetSiteID", get_site_id)],
            ..READ_ONLY
        },
        ClassId::Site => Adapter {
            create: Some(create_site),
            update: Some(update_site),
            delete: Some(delete_site),
            methods: &[],
        },
        ClassId::Settings => Adapter {
            update: Some(update_settings),
            ..READ_ONLY
        },
        ClassId::AdminToken => Adapter {
            create: Some(create_token),
            delete: Some(revoke_token),
            ..READ_ONLY
        },
        ClassId::PackageBase
        | ClassId::GroupMembers
        | ClassId::GroupContent
        | ClassId::DistPointsSummarizer
        | ClassId::DetailSummarizer
        | ClassId::RootSummarizer
        | ClassId::DpStatusInfo
        | ClassId::ObjectContentInfo
        | ClassId::GroupStatusDetails
        | ClassId::DpStatus
        | ClassId::Audit
        | ClassId::SiteContent => READ_ONLY,
    }
}

// ---- entry points (the HTTP layer's) ----

fn class_id(class: &ClassDef) -> ApiResult<ClassId> {
    ClassId::of(class.name).ok_or_else(|| ApiError::new(ErrorKind::UnknownClass, format!("no class {}", class.name)))
}

fn not_allowed(class: &ClassDef, verb: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotAllowed,
        format!("{} instances cannot be {verb}", class.name),
    )
}

pub async fn create(state: &AppState, class: &'static ClassDef, body: Body) -> ApiResult<Object> {
    let id = class_id(class)?;
    let create = adapter(id).create.ok_or_else(|| not_allowed(class, "created"))?;
    check_body(class, &body, true)?;
    create(state, id, body).await
}

pub async fn update(state: &AppState, class: &'static ClassDef, current: Object, body: Body) -> ApiResult<Object> {
    let id = class_id(class)?;
    let update = adapter(id).update.ok_or_else(|| not_allowed(class, "changed"))?;
    check_body(class, &body, false)?;
    update(state, id, current, body).await
}

pub async fn delete(state: &AppState, class: &'static ClassDef, current: Object) -> ApiResult<()> {
    let id = class_id(class)?;
    let delete = adapter(id).delete.ok_or_else(|| not_allowed(class, "deleted"))?;
    delete(state, current).await
}

pub async fn call(
    state: &AppState,
    class: &'static ClassDef,
    instance: Option<Object>,
    method: &MethodDef,
    params: Body,
) -> ApiResult<Object> {
    let id = class_id(class)?;
    let (_, call) = adapter(id)
        .methods
        .iter()
        .find(|(name, _)| *name == method.name)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::UnknownMethod,
                format!("{}.{} is not implemented", class.name, method.name),
            )
        })?;
    let params = canonical_params(method, params)?;
    check_params(method, &params)?;
    call(state, instance.unwrap_or_default(), params).await
}

/// The parameters under their catalog names: WMI matches parameter names in any case, and
/// the SDK itself writes `PackageId` where the class says `PackageID`. Two names that are the
/// same parameter are refused rather than one silently dropped.
fn canonical_params(method: &MethodDef, params: Body) -> ApiResult<Body> {
    let mut out = Body::new();
    for (k, v) in params {
        let name = method
            .params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(&k))
            .map_or(k, |p| p.name.to_owned());
        if out.contains_key(&name) {
            return Err(ApiError::new(
                ErrorKind::MalformedBody,
                format!("the parameter {name} of {} is given twice", method.name),
            )
            .param(&name));
        }
        out.insert(name, v);
    }
    Ok(out)
}

// ---- validation ----

/// Checks a create or update body against the class: known, writable, right type; on create,
/// everything required is present.
fn check_body(class: &ClassDef, body: &Body, creating: bool) -> ApiResult<()> {
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

fn check_params(method: &MethodDef, params: &Body) -> ApiResult<()> {
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

// ---- reading checked bodies (types were checked against the catalog) ----

fn text<'a>(m: &'a Body, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn owned(m: &Body, k: &str) -> Option<String> {
    text(m, k).map(str::to_owned)
}

fn int(m: &Body, k: &str) -> Option<i64> {
    m.get(k).and_then(Value::as_i64)
}

fn uint(m: &Body, k: &str) -> Option<u64> {
    m.get(k).and_then(Value::as_u64)
}

fn flag(m: &Body, k: &str) -> Option<bool> {
    m.get(k).and_then(Value::as_bool)
}

fn strings(m: &Body, k: &str) -> Vec<String> {
    m.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn key_text(o: &Object, k: &str) -> String {
    text(o, k).unwrap_or_default().to_owned()
}

/// The answer of a method: `ReturnValue` 0 and what it returns.
fn ok(extra: Value) -> Object {
    let mut m = Map::new();
    m.insert("ReturnValue".into(), json!(0));
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    m
}

// ---- packages ----

fn create_package(state: &AppState, class: ClassId, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let ClassId::Package(pc) = class else {
            return Err(ApiError::internal("create_package on a class that is not a package"));
        };
        let new = NewPackage {
            class: pc,
            name: text(&body, "Name").unwrap_or_default().to_owned(),
            version: text(&body, "Version").unwrap_or_default().to_owned(),
            manufacturer: text(&body, "Manufacturer").unwrap_or_default().to_owned(),
            language: text(&body, "Language").unwrap_or_default().to_owned(),
            description: text(&body, "Description").unwrap_or_default().to_owned(),
            source_path: text(&body, "PkgSourcePath").unwrap_or_default().to_owned(),
            source_flag: int(&body, "PkgSourceFlag"),
            pkg_flags: int(&body, "PkgFlags").unwrap_or(0),
            priority: int(&body, "Priority").unwrap_or(2),
            refresh_schedule: text(&body, "RefreshSchedule").unwrap_or_default().to_owned(),
        };
        let row = ops::packages::create(state, new).await?;
        classes::get_written(state, pc.class_name(), &[("PackageID", &row.package_id)]).await
    })
}

/// The package columns a PATCH body changes.
fn package_changes(body: &Body) -> Vec<PackageField> {
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

fn update_package(state: &AppState, class: ClassId, current: Object, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let id = key_text(&current, "PackageID");
        ops::packages::update(state, &id, &package_changes(&body)).await?;
        read_back(state, class, &[("PackageID", &id)]).await
    })
}

fn delete_package(state: &AppState, current: Object) -> Answer<'_, ()> {
    Box::pin(async move { Ok(ops::packages::delete(state, &key_text(&current, "PackageID")).await?) })
}

fn refresh_package(state: &AppState, instance: Object, _: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let r = ops::packages::refresh(state, &key_text(&instance, "PackageID"), Trigger::Method).await?;
        Ok(ok(json!({"SourceVersion": r.version})))
    })
}

fn package_add_dps(state: &AppState, instance: Object, params: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let (sites, nals) = (strings(&params, "SiteCode"), strings(&params, "NALPath"));
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
        let to: Vec<DpTarget> = sites
            .into_iter()
            .zip(nals)
            .map(|(site_code, nal_path)| DpTarget { site_code, nal_path })
            .collect();
        ops::packages::distribute(state, &key_text(&instance, "PackageID"), &to).await?;
        Ok(ok(json!({})))
    })
}

/// The instance of `class` with `key` as it is after a change that succeeded: if another
/// request deleted it meanwhile, that is what the answer says.
async fn read_back(state: &AppState, class: ClassId, key: &[(&str, &str)]) -> ApiResult<Object> {
    let name = class.name();
    classes::get(state, name, key).await?.ok_or_else(|| {
        let what: Vec<&str> = key.iter().map(|(_, v)| *v).collect();
        ApiError::new(
            ErrorKind::UnknownInstance,
            format!("{} no longer exists", what.join(" on ")),
        )
        .object(what.join(" on "))
    })
}

// ---- distribution points ----

fn dp_settings(body: &Body) -> DpSettings {
    DpSettings {
        description: owned(body, "Description"),
        priority: int(body, "Priority"),
        repair_damaged: flag(body, "RepairDamagedContent"),
        prestaging: flag(body, "PreStagingAllowed"),
        rate_bytes_per_sec: uint(body, "RateLimitBytesPerSecond"),
        rate_mode: int(body, "RateLimitMode"),
        pulse_block_kb: int(body, "PulseBlockSizeKB"),
        pulse_delay_secs: int(body, "PulseDelaySeconds"),
        hourly_percent: owned(body, "HourlyPercentages"),
        availability: owned(body, "AvailabilitySchedule"),
        validation_schedule: owned(body, "ValidationSchedule"),
        pull: PullSettings {
            is_pull: flag(body, "IsPullDP"),
            sources: body
                .contains_key("SourceDistributionPoints")
                .then(|| strings(body, "SourceDistributionPoints")),
            ranks: body
                .get("SourceDPRanks")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect()),
        },
    }
}

fn create_dp(state: &AppState, class: ClassId, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let (d, token) = ops::dps::create(state, text(&body, "Name").unwrap_or_default(), &dp_settings(&body)).await?;
        let mut o = classes::get_written(state, class.name(), &[("NALPath", &d.nal_path)]).await?;
        o.insert("EnrollmentToken".into(), json!(token));
        Ok(o)
    })
}

fn update_dp(state: &AppState, class: ClassId, current: Object, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let d = ops::dps::update(state, &key_text(&current, "NALPath"), &dp_settings(&body)).await?;
        read_back(state, class, &[("NALPath", &d.nal_path)]).await
    })
}

fn delete_dp(state: &AppState, current: Object) -> Answer<'_, ()> {
    Box::pin(async move { Ok(ops::dps::delete(state, &key_text(&current, "NALPath")).await?) })
}

// ---- a package on a DP ----

fn create_row(state: &AppState, class: ClassId, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let (pkg, nal) = (key_text(&body, "PackageID"), key_text(&body, "ServerNALPath"));
        let to = DpTarget {
            site_code: key_text(&body, "SiteCode"),
            nal_path: nal.clone(),
        };
        ops::packages::distribute(state, &pkg, std::slice::from_ref(&to)).await?;
        classes::get_written(state, class.name(), &[("PackageID", &pkg), ("ServerNALPath", &nal)]).await
    })
}

fn update_row(state: &AppState, class: ClassId, current: Object, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let (pkg, nal) = (key_text(&current, "PackageID"), key_text(&current, "ServerNALPath"));
        if flag(&body, "RefreshNow") == Some(true) {
            ops::packages::refresh_on_dp(state, &pkg, &nal).await?;
        }
        read_back(state, class, &[("PackageID", &pkg), ("ServerNALPath", &nal)]).await
    })
}

/// As in ConfigMgr, removal is deferred: the row shows REMOVAL_PENDING until the DP has
/// released the content.
fn delete_row(state: &AppState, current: Object) -> Answer<'_, ()> {
    Box::pin(async move {
        let (pkg, nal) = (key_text(&current, "PackageID"), key_text(&current, "ServerNALPath"));
        Ok(rows::set_state(state, &[(pkg, nal)], DpState::RemovalPending, "removal queued").await?)
    })
}

fn row_action(state: &AppState, params: Body, action: Action) -> Answer<'_, Object> {
    Box::pin(async move {
        let (pkg, nal) = (key_text(&params, "PackageID"), key_text(&params, "NALPath"));
        rows::row_action(state, &pkg, &nal, action).await?;
        Ok(ok(json!({})))
    })
}

fn verify_row(state: &AppState, _: Object, params: Body) -> Answer<'_, Object> {
    row_action(state, params, Action::Verify)
}

fn cancel_row(state: &AppState, _: Object, params: Body) -> Answer<'_, Object> {
    row_action(state, params, Action::Cancel)
}

// ---- groups ----

fn create_group(state: &AppState, class: ClassId, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let g = ops::groups::create(
            state,
            text(&body, "Name").unwrap_or_default(),
            text(&body, "Description").unwrap_or_default(),
        )
        .await?;
        classes::get_written(state, class.name(), &[("GroupID", &g.group_id)]).await
    })
}

fn update_group(state: &AppState, class: ClassId, current: Object, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let id = key_text(&current, "GroupID");
        ops::groups::update(state, &id, text(&body, "Name"), text(&body, "Description")).await?;
        read_back(state, class, &[("GroupID", &id)]).await
    })
}

fn delete_group(state: &AppState, current: Object) -> Answer<'_, ()> {
    Box::pin(async move { Ok(ops::groups::delete(state, &key_text(&current, "GroupID")).await?) })
}

fn group_change(state: &AppState, instance: Object, change: GroupChange) -> Answer<'_, Object> {
    Box::pin(async move {
        ops::groups::change(state, &key_text(&instance, "GroupID"), &change).await?;
        Ok(ok(json!({})))
    })
}

fn group_add_dps(state: &AppState, instance: Object, params: Body) -> Answer<'_, Object> {
    let change = GroupChange::AddMembers {
        nals: strings(&params, "DPNALPath"),
        with_packages: flag(&params, "AddTargetedPackages").unwrap_or(true),
    };
    group_change(state, instance, change)
}

fn group_remove_dps(state: &AppState, instance: Object, params: Body) -> Answer<'_, Object> {
    let change = GroupChange::RemoveMembers {
        nals: strings(&params, "DPNALPath"),
        remove_packages: flag(&params, "RemoveTargetedPackages").unwrap_or(false),
    };
    group_change(state, instance, change)
}

fn group_add_packages(state: &AppState, instance: Object, params: Body) -> Answer<'_, Object> {
    let change = GroupChange::AddPackages {
        ids: strings(&params, "PackageIDs"),
    };
    group_change(state, instance, change)
}

fn group_remove_packages(state: &AppState, instance: Object, params: Body) -> Answer<'_, Object> {
    let change = GroupChange::RemovePackages {
        ids: strings(&params, "PackageIDs"),
        from_dps: flag(&params, "RemovePackageFromDPs").unwrap_or(true),
    };
    group_change(state, instance, change)
}

fn group_redistribute(state: &AppState, instance: Object, params: Body) -> Answer<'_, Object> {
    let change = GroupChange::Redistribute {
        id: key_text(&params, "PackageID"),
    };
    group_change(state, instance, change)
}

fn group_refresh(state: &AppState, instance: Object, _: Body) -> Answer<'_, Object> {
    group_change(state, instance, GroupChange::Refresh)
}

// ---- the hierarchy ----

fn create_site(state: &AppState, _: ClassId, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let new = hierarchy::NewSite {
            code: key_text(&body, "SiteCode"),
            name: owned(&body, "SiteName"),
            rate_bytes_per_sec: uint(&body, "RateLimitBytesPerSecond"),
        };
        let (row, token) = hierarchy::create_site(state, &new).await?;
        let mut o = hierarchy::site_object(&row, 2);
        o.insert("EnrollmentToken".into(), json!(token));
        Ok(o)
    })
}

fn update_site(state: &AppState, _: ClassId, current: Object, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let row = hierarchy::update_site(
            state,
            &key_text(&current, "SiteCode"),
            text(&body, "SiteName"),
            uint(&body, "RateLimitBytesPerSecond"),
        )
        .await?;
        Ok(hierarchy::site_object(&row, 2))
    })
}

fn delete_site(state: &AppState, current: Object) -> Answer<'_, ()> {
    Box::pin(async move { Ok(hierarchy::delete_site(state, &key_text(&current, "SiteCode")).await?) })
}

// ---- settings and tokens ----

fn update_settings(state: &AppState, _: ClassId, _: Object, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let change = SettingsChange {
            max_packages: uint(&body, "MaximumPackageCount"),
            max_threads_per_package: uint(&body, "MaximumThreadsPerPackage"),
            retry_count: uint(&body, "RetryCount"),
            retry_delay_mins: uint(&body, "DelayBeforeRetryingMins"),
            retry_delay_secs: uint(&body, "DelayBeforeRetryingSecs"),
        };
        ops::settings::update(state, change).await?;
        Ok(classes::settings_object(state))
    })
}

fn create_token(state: &AppState, class: ClassId, body: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let role = text(&body, "Role").and_then(Role::parse).ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvalidValue,
                "Role must be FullAdministrator or ReadOnlyAnalyst",
            )
            .param("Role")
        })?;
        let (row, token) = ops::tokens::create(state, text(&body, "Name").unwrap_or_default(), role).await?;
        let mut o = classes::get_written(state, class.name(), &[("TokenID", &row.id)]).await?;
        o.insert("Token".into(), json!(token));
        Ok(o)
    })
}

fn revoke_token(state: &AppState, current: Object) -> Answer<'_, ()> {
    Box::pin(async move { Ok(ops::tokens::revoke(state, &key_text(&current, "TokenID")).await?) })
}

// ---- SMS_ScheduleMethods ----

fn read_from_string(_: &AppState, _: Object, params: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let tokens = schedule::read_from_string(text(&params, "StringData").unwrap_or_default())
            .map_err(|e| ApiError::new(ErrorKind::InvalidValue, format!("StringData: {e}")).param("StringData"))?;
        let data: Vec<Value> = tokens.iter().map(|t| Value::Object(t.to_json())).collect();
        Ok(ok(json!({"TokenData": data})))
    })
}

fn write_to_string(_: &AppState, _: Object, params: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let bad = |why: String| ApiError::new(ErrorKind::InvalidValue, why).param("TokenData");
        let list = params
            .get("TokenData")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if list.is_empty() {
            return Err(bad("TokenData is empty: give at least one token".into()));
        }
        let mut tokens = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let m = v.as_object().cloned().unwrap_or_default();
            tokens.push(schedule::ScheduleToken::from_json(&m, i + 1).map_err(|e| bad(format!("TokenData: {e}")))?);
        }
        let s = schedule::write_to_string(&tokens).map_err(|e| bad(format!("TokenData: {e}")))?;
        Ok(ok(json!({"StringData": s})))
    })
}

// ---- SMS_Identification ----

/// `SiteID`: the GUID `open` made on the site's first start (the settings row is written once,
/// so every process on one database answers the same).
fn get_site_id(state: &AppState, _: Object, _: Body) -> Answer<'_, Object> {
    Box::pin(async move {
        let id = state
            .db
            .setting(crate::SITE_ID)
            .await?
            .ok_or_else(|| ApiError::internal("the site has no site ID (it is made when the site opens)"))?;
        Ok(ok(json!({"SiteID": id})))
    })
}

#[cfg(test)]
mod tests {
    use pkgdist_proto::catalog;

    use super::*;

    /// The table and the catalog agree: a class is creatable, changeable or deletable in the
    /// catalog (and so in the OpenAPI document) exactly when its adapter implements it, and
    /// its methods are exactly the adapter's.
    #[test]
    fn adapters_match_the_catalog() {
        for class in catalog::CLASSES {
            let id = ClassId::of(class.name).expect("every catalog class has an id");
            let a = adapter(id);
            assert_eq!(class.create, a.create.is_some(), "{} create", class.name);
            assert_eq!(class.update, a.update.is_some(), "{} update", class.name);
            assert_eq!(class.delete, a.delete.is_some(), "{} delete", class.name);
            let mut promised: Vec<&str> = class.methods.iter().map(|m| m.name).collect();
            let mut built: Vec<&str> = a.methods.iter().map(|(n, _)| *n).collect();
            promised.sort_unstable();
            built.sort_unstable();
            assert_eq!(promised, built, "{} methods", class.name);
        }
    }
}
