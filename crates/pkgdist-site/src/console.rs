//! The web console at `/console`: three static files compiled into the binary (nothing is
//! fetched from anywhere else, at build or run time) and four read-only JSON routes of its own
//! (below). Everything else it shows it reads through the AdminService route, with the token
//! the administrator signs in with, so it can do exactly what that token can: a read-only token
//! sees no actions and could not use them anyway.
//!
//! ```text
//! GET /console, /console/        the page (index.html)
//! GET /console/app.js, style.css  its script and styles
//! GET /console/api/session       who the token is: {Role, TokenName, SiteCode, SiteName}
//! GET /console/api/summary       counts over the whole site (pkgdist_db::Summary)
//! GET /console/api/attention     the rows to look at first, as SMS_PackageStatusDistPointsSummarizer
//! GET /console/api/snapshots     snapshots running now and how far each has got (also what
//!                                `pkgdist package create/refresh` draws its progress bar from)
//! ```
//!
//! The static files need no token (they hold no data); the four routes do. Every console file is
//! served with a policy that forbids framing and inline scripts (`Content-Security-Policy`), so
//! text from the API can never run as script even if the page mis-escaped it.

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::json;

use crate::api::{Caller, authenticate};
use crate::error::ApiError;
use crate::state::AppState;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/style.css");

/// What a console page may load and do: its own files and API calls, nothing inline, no frames.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn router(state: AppState) -> Router<AppState> {
    let data = Router::new()
        .route("/console/api/session", get(session))
        .route("/console/api/summary", get(summary))
        .route("/console/api/attention", get(attention))
        .route(
            "/console/api/snapshots",
            get(|State(state): State<AppState>| async move { axum::Json(json!({ "value": state.snapshots.list() })) }),
        )
        .route_layer(middleware::from_fn_with_state(state, authenticate));
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|| async { file(INDEX, "text/html; charset=utf-8") }))
        .route(
            "/console/app.js",
            get(|| async { file(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/style.css",
            get(|| async { file(STYLE, "text/css; charset=utf-8") }),
        )
        .merge(data)
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            // A new binary may bring new files: a browser checks before reusing them.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn session(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    axum::Json(json!({
        "Role": caller.role.as_str(),
        "TokenName": caller.name,
        "SiteCode": state.site_code.to_string(),
        "SiteName": state.site_name,
    }))
    .into_response()
}

async fn summary(State(state): State<AppState>) -> Response {
    let read = async {
        let summary = state.db.summary(&crate::now()).await?;
        let by_site = state.db.dps_by_site().await?;
        Ok::<_, pkgdist_db::DbError>((summary, by_site))
    };
    match read.await {
        Ok((s, by_site)) => axum::Json(json!({
            "Packages": s.packages,
            "DistributionPoints": s.dps,
            "Sites": s.sites,
            "Targeted": s.targeted,
            "Installed": s.installed,
            "InProgress": s.in_progress,
            "Retrying": s.retrying,
            "Failed": s.failed,
            "JobsRunning": s.jobs_running,
            "JobsQueued": s.jobs_queued(),
            "DistributionPointsBySite": by_site.into_iter().map(|(site, n)| (site, json!(n))).collect::<serde_json::Map<_, _>>(),
        }))
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// How many rows "needs attention" shows.
const ATTENTION: i64 = 20;

/// The overview's "needs attention": failed rows, then retrying ones by next retry, then rows
/// waiting for someone (`Db::attention_keys`, through the state index), each read by its key.
/// An OData listing with a state filter would be ordered by key, which SQLite serves by walking
/// the whole table when few rows match (seconds at 10,000,000 rows, every second per console).
async fn attention(State(state): State<AppState>) -> Response {
    const CLASS: &str = "SMS_PackageStatusDistPointsSummarizer";
    let keys = match state.db.attention_keys(ATTENTION).await {
        Ok(k) => k,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut rows = Vec::with_capacity(keys.len());
    for (package, nal, site) in &keys {
        let key = [
            ("PackageID", package.as_str()),
            ("ServerNALPath", nal.as_str()),
            ("SiteCode", site.as_str()),
        ];
        match crate::classes::get(&state, CLASS, &key).await {
            Ok(Some(row)) => rows.push(serde_json::Value::Object(row)),
            Ok(None) => {} // gone since: nothing to look at
            Err(e) => return e.into_response(),
        }
    }
    axum::Json(json!({ "value": rows })).into_response()
}
