//! The site link, parent's side: what a child site says to its parent, and what it gets back.
//!
//! Only sites speak it, so it lives here rather than in `pkgdist-proto`. The child does all
//! the talking (`upstream.rs`); the parent never needs to reach the child, so a child behind a
//! firewall or NAT works as well as one next door.
//!
//! - [`ENROLL_PATH`]: the child trades the one-time token its parent's administrator got from
//!   creating its `SMS_Site` for a standing credential (made by the child; the parent keeps
//!   only its hash), as a DP does.
//! - [`SYNC_PATH`]: package metadata (every package the parent knows but those owned in the
//!   child's subtree, only when it has changed since the child last got it), the versions the
//!   parent wants sent up and the administrators' intents on rows of DPs
//!   below the child, newer than the last the child applied.
//! - [`REPORT_PATH`]: the child's view of its subtree: its sites and DPs, and its
//!   package-on-DP rows, whole the first time and then only those changed and removed since
//!   the last report the parent took (`Db::apply_report`). A report of changes onto a copy
//!   that is not where the child thinks (the parent restored from a backup, an answer lost)
//!   is answered `accepted: false`, unapplied, and the child sends its rows whole again.
//!
//! An idle link costs a few indexed reads a poll on each side, whatever the number of rows.
//! - [`content_up::PLAN_PATH`], [`content_up::UPLOAD_PATH`]: versions owned in the child's
//!   subtree that this site asked for (`SyncResponse::wanted`), sent up by the child.
//! - [`CONTENT_PREFIX`] + the node source routes: manifests and chunks, from the parent's
//!   library, paced at the child's `RateLimitBytesPerSecond`. Content crosses the link once:
//!   the child keeps it in its own library and serves its DPs and children from there.

use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pkgdist_core::errors::ErrorKind;
use pkgdist_db::{Intent, PackageRow, Report, ReportApplied, SiteRow};
use serde::{Deserialize, Serialize};

use crate::body::{ENROLL_BODY_MAX, JsonBody};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::{auth, content_up};

pub const ENROLL_PATH: &str = "/link/v1/enroll";
pub const SYNC_PATH: &str = "/link/v1/sync";
pub const REPORT_PATH: &str = "/link/v1/report";
/// The parent's content, for a fetcher whose source is `<parent URL>/link`.
pub const CONTENT_PREFIX: &str = "/link";

/// The largest report accepted: a subtree of thousands of DPs and packages.
const MAX_REPORT_BYTES: usize = 256 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub enrollment_token: String,
    /// What the child will present from now on (made by the child, random).
    pub credential: String,
    /// The child's own code: it must be the one the parent registered.
    pub site_code: String,
    /// Where the child's API is, for display (the parent never calls it).
    pub url: String,
    /// A certificate request (PEM) for the key the child made, when it enrolls over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub parent_code: String,
    pub parent_name: String,
    /// The child's certificate (PEM chain, leaf first), when it sent a request for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncQuery {
    /// The newest intent the child has applied.
    #[serde(default)]
    pub since: i64,
    /// The package metadata version the child holds (`SyncResponse::packages_epoch`); absent
    /// or different, the parent lists its packages.
    #[serde(default)]
    pub packages: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncResponse {
    pub parent_code: String,
    /// How many levels the parent is below the top (0 at the top).
    pub parent_depth: u32,
    /// The version of the package metadata; `packages` is `None` when the child holds it.
    #[serde(default)]
    pub packages_epoch: i64,
    pub packages: Option<Vec<PackageMeta>>,
    pub intents: Vec<IntentMsg>,
    /// The child's status message IDs this site has taken up to: the child's report carries
    /// the ones after. `None` from a parent that takes none.
    #[serde(default)]
    pub status_seq: Option<i64>,
    /// Versions owned in the child's subtree that this site needs (a DP outside that
    /// subtree is targeted with them): the child sends them up (`content_up`).
    #[serde(default)]
    pub wanted: Vec<WantedMsg>,
}

/// A version a parent asks its child to send up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WantedMsg {
    pub package_id: String,
    pub version: i64,
    pub manifest_hash: String,
}

impl WantedMsg {
    /// A package's current version, if it has content.
    pub fn of(p: &PackageRow) -> Option<Self> {
        Some(Self {
            package_id: p.package_id.clone(),
            version: p.source_version,
            manifest_hash: p.manifest_hash.clone()?,
        })
    }

    /// The version and its manifest hash, if they parse.
    pub fn parts(&self) -> Option<(pkgdist_core::ContentId, pkgdist_core::Digest)> {
        let content = pkgdist_core::ContentId {
            package: self.package_id.parse().ok()?,
            version: u32::try_from(self.version).ok()?,
        };
        Some((content, self.manifest_hash.parse().ok()?))
    }
}

/// A report as a child sends it: its subtree's sites, DPs, rows and status messages
/// (`Report`), and the packages owned in its subtree when they changed (ConfigMgr replicates
/// package definitions to the whole hierarchy).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportBody {
    #[serde(flatten)]
    pub report: Report,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<PackageMeta>>,
}

/// The parent's answer to a report.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ReportResponse {
    /// False: a report of changes onto a copy that is not at its base; nothing was applied,
    /// and the child sends its rows whole.
    pub accepted: bool,
    /// The child's change number the parent's copy is complete up to (-1: none).
    pub report_seq: i64,
}

/// A package as it replicates down: what describes it and its current version, never its
/// source folder or schedule, which only its owning site uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageMeta {
    pub package_id: String,
    pub package_type: i64,
    pub name: String,
    pub version: String,
    pub manufacturer: String,
    pub language: String,
    pub description: String,
    pub source_version: i64,
    pub source_date: Option<String>,
    pub package_size: i64,
    pub pkg_flags: i64,
    pub priority: i64,
    pub source_site: String,
    pub manifest_hash: Option<String>,
    pub created_at: String,
}

impl PackageMeta {
    pub fn of(p: &PackageRow) -> Self {
        Self {
            package_id: p.package_id.clone(),
            package_type: p.package_type,
            name: p.name.clone(),
            version: p.version.clone(),
            manufacturer: p.manufacturer.clone(),
            language: p.language.clone(),
            description: p.description.clone(),
            source_version: p.source_version,
            source_date: p.source_date.clone(),
            package_size: p.package_size,
            pkg_flags: p.pkg_flags,
            priority: p.priority,
            source_site: p.source_site.clone(),
            manifest_hash: p.manifest_hash.clone(),
            created_at: p.created_at.clone(),
        }
    }

    /// The row a site below the owner keeps: no source folder, no schedule.
    pub fn row(&self) -> PackageRow {
        PackageRow {
            package_id: self.package_id.clone(),
            package_type: self.package_type,
            name: self.name.clone(),
            version: self.version.clone(),
            manufacturer: self.manufacturer.clone(),
            language: self.language.clone(),
            description: self.description.clone(),
            pkg_source_path: String::new(),
            pkg_source_flag: i64::from(pkgdist_core::classes::source_flag::STORAGE_DIRECT),
            source_version: self.source_version,
            source_date: self.source_date.clone(),
            last_refresh_time: self.source_date.clone(),
            package_size: self.package_size,
            pkg_flags: self.pkg_flags,
            priority: self.priority,
            action_in_progress: 0,
            source_site: self.source_site.clone(),
            refresh_schedule: String::new(),
            schedule_checked_at: None,
            manifest_hash: self.manifest_hash.clone(),
            created_at: self.created_at.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentMsg {
    pub package_id: String,
    pub nal_path: String,
    pub intent: Intent,
    pub seq: i64,
}

pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route(SYNC_PATH, get(sync))
        .route(REPORT_PATH, post(report).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)))
        .route(
            content_up::PLAN_PATH,
            post(content_up::plan).layer(DefaultBodyLimit::max(content_up::MAX_MANIFEST_BYTES)),
        )
        // An upload is as large as the version: each chunk is checked as it comes, and none
        // may come twice (`prestage::import`), so its length is bounded by the manifest.
        .route(
            content_up::UPLOAD_PATH,
            post(content_up::upload).layer(DefaultBodyLimit::disable()),
        )
        .with_state(state.clone())
        .nest(CONTENT_PREFIX, pkgdist_node::source::router(state.library.clone()))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate_site));
    Router::new()
        // Enrollment takes no token: a small body only.
        .route(
            ENROLL_PATH,
            post(enroll).layer(axum::extract::DefaultBodyLimit::max(ENROLL_BODY_MAX)),
        )
        .with_state(state)
        .merge(authed)
}

async fn authenticate_site(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = pkgdist_node::util::bearer(req.headers()) else {
        return ApiError::new(
            ErrorKind::Unauthenticated,
            "site link routes need the child site's credential: Authorization: Bearer <credential>",
        )
        .into_response();
    };
    match state.db.site_by_credential(&auth::hash(token)).await {
        Ok(Some(site)) => {
            if let Err(presented) = crate::tls::presents(&req, site.cert_sha256.as_deref()) {
                tracing::warn!(site = %site.site_code, presented = presented.as_deref().unwrap_or("none"), "refused a child site's request without its certificate");
                return ApiError::new(
                    ErrorKind::Unauthenticated,
                    format!(
                        "child site {} was issued a certificate when it enrolled and must present it, over https",
                        site.site_code
                    ),
                )
                .into_response();
            }
            if let Some(pacer) = state.site_pacer(&site) {
                req.extensions_mut().insert(pacer);
            }
            req.extensions_mut().insert(site);
            next.run(req).await
        }
        Ok(None) => ApiError::new(
            ErrorKind::Unauthenticated,
            "the site credential is unknown: the child site was never enrolled here or has been deleted (SMS_Site)",
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn enroll(
    State(state): State<AppState>,
    tls: Option<Extension<pkgdist_node::listen::TlsConnection>>,
    body: JsonBody<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    let req = body.0;
    // Over https a child asks for a certificate; over http it asks for none.
    let over_tls = tls.is_some() && state.tls().is_some();
    if req.csr.is_some() != over_tls {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            if over_tls {
                "a child site enrolling over https must send a certificate request (csr): update the child"
            } else {
                "a certificate is issued only to a child site enrolling over https: use the parent's https:// URL"
            },
        ));
    }
    if req.credential.len() < 32 {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "the site credential must be at least 32 characters",
        ));
    }
    // One answer for every refusal, so a caller without a token learns nothing (not even
    // which site codes are registered); the log says which it was, for the administrator.
    let refused = |why: &str| {
        // What the caller sent is untrusted: logged short.
        let short = |s: &str| s.chars().take(80).collect::<String>();
        tracing::warn!(site = %short(&req.site_code), url = %short(&req.url), why, "refused a child site's enrollment");
        ApiError::new(
            ErrorKind::Unauthenticated,
            "enrollment refused: the token is unknown or already used, or was made for another site code; create the child's SMS_Site again (`pkgdist site add CODE`) and start the child with that code and the new token",
        )
    };
    // The token must be the one of the site the child says it is.
    let token_hash = auth::hash(&pkgdist_node::tls::EnrollmentToken::parse(&req.enrollment_token).secret);
    match state.db.site(&req.site_code).await? {
        Some(s)
            if s.site_code == s.via_site
                && (s.enrollment_token_hash.as_deref() == Some(token_hash.as_str())
                    || (s.cert_sha256.is_none()
                        && s.credential_hash.as_deref() == Some(auth::hash(&req.credential).as_str()))) => {}
        Some(s) if s.site_code == s.via_site => return Err(refused("the token is not this site code's")),
        _ => return Err(refused("no child site of this code is registered here")),
    }
    // Signed before anything is recorded: a request that cannot be signed spends no token.
    let issued = match &req.csr {
        Some(csr) => {
            let role = pkgdist_node::tls::Role::ChildSite(req.site_code.clone());
            Some(crate::tls::issue_for_enrollment(
                state.tls(),
                over_tls,
                csr,
                &req.url,
                &role,
            )?)
        }
        None => None,
    };
    let site = state
        .db
        .enroll_site(
            &token_hash,
            &auth::hash(&req.credential),
            &req.url,
            issued.as_ref().map(|(_, fp)| fp.as_str()),
        )
        .await?
        .ok_or_else(|| refused("the token is already used, or the child was issued a certificate"))?;
    let certificate = issued.map(|(chain, _)| chain);
    tracing::info!(site = %site.site_code, url = %req.url, tls = certificate.is_some(), "child site enrolled");
    Ok(Json(EnrollResponse {
        parent_code: state.site_code.to_string(),
        parent_name: state.site_name.clone(),
        certificate,
    }))
}

async fn sync(
    State(state): State<AppState>,
    Extension(child): Extension<SiteRow>,
    Query(q): Query<SyncQuery>,
) -> ApiResult<Json<SyncResponse>> {
    // Intents first: every package an intent names was created before it, so it is in the
    // package list read after.
    let intents = state
        .db
        .intents_for(&child.site_code, q.since)
        .await?
        .into_iter()
        .filter_map(|i| {
            Some(IntentMsg {
                intent: Intent::parse(&i.intent)?,
                package_id: i.package_id,
                nal_path: i.nal_path,
                seq: i.intent_seq,
            })
        })
        .collect();
    // The version before the list: a change landing in between is listed now and makes the
    // next poll list again, never the other way round.
    let packages_epoch = state.db.package_epoch().await?;
    // Every package but those owned in the child's own subtree (which it reports up): a
    // package created anywhere is known everywhere, as in ConfigMgr, and its content comes
    // up from its owner where a DP outside that subtree needs it (`content_up`).
    let packages = if q.packages == Some(packages_epoch) {
        None
    } else {
        // Read only when the list goes: a quiet poll reads no site list.
        let own_subtree = crate::hierarchy::subtree(&state, &child.site_code).await?;
        Some(
            state
                .db
                .packages()
                .await?
                .iter()
                .filter(|p| !own_subtree.contains(&p.source_site))
                .map(PackageMeta::of)
                .collect(),
        )
    };
    Ok(Json(SyncResponse {
        parent_code: state.site_code.to_string(),
        parent_depth: state.depth(),
        packages_epoch,
        packages,
        intents,
        status_seq: Some(child.status_seq),
        wanted: content_up::wanted_of(&state, &child.site_code).await?,
    }))
}

async fn report(
    State(state): State<AppState>,
    Extension(child): Extension<SiteRow>,
    body: JsonBody<ReportBody>,
) -> ApiResult<Json<ReportResponse>> {
    let ReportBody { mut report, packages } = body.0;
    // No site below may take the code of a site above (this site's parent, or the owner of a
    // package that came from above): it would pass their packages for its own.
    let known: std::collections::HashSet<String> = state.db.sites().await?.into_iter().map(|s| s.site_code).collect();
    let parent = state.position().parent;
    let mut above = Vec::new();
    for s in report
        .sites
        .iter()
        .filter(|s| !known.contains(&s.site_code) && s.site_code != child.site_code)
    {
        if parent.as_deref() == Some(s.site_code.as_str()) || state.db.owns_packages(&s.site_code).await? {
            above.push(s.site_code.clone());
        }
    }
    if !above.is_empty() {
        tracing::warn!(child = %child.site_code, sites = ?above, "a child reported sites of codes above this site; ignored");
        report.sites.retain(|s| !above.contains(&s.site_code));
    }
    // Packages first: the rows of this report may be of a package new here.
    if let Some(packages) = &packages {
        // Only codes new here, or already reached through this child: a child naming a site
        // of another subtree must not get to speak for that site's packages.
        let via: std::collections::HashMap<String, String> = state
            .db
            .sites()
            .await?
            .into_iter()
            .map(|s| (s.site_code, s.via_site))
            .collect();
        let reported: Vec<&str> = report
            .sites
            .iter()
            .map(|s| s.site_code.as_str())
            .filter(|code| via.get(*code).is_none_or(|v| *v == child.site_code))
            .collect();
        crate::hierarchy::packages_from_below(&state, &child.site_code, &reported, packages).await?;
    }
    let body = JsonBody(report);
    let applied = state
        .db
        .apply_report(&child.site_code, Some(state.site_code.as_str()), &crate::now(), &body.0)
        .await?;
    let answer = match applied {
        ReportApplied::Applied => {
            // Rows below may now need content here.
            state.replicate.notify_one();
            ReportResponse {
                accepted: true,
                report_seq: body.0.seq,
            }
        }
        ReportApplied::Stale { have } => {
            tracing::info!(child = %child.site_code, base = ?body.0.base, have, "a report of changes onto another base: asking for the rows whole");
            ReportResponse {
                accepted: false,
                report_seq: have,
            }
        }
    };
    Ok(Json(answer))
}
