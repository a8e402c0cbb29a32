//! The site's side of the node protocol (`pkgdist_proto::node`): DPs enroll, say where they
//! are, and fetch content. Every route but enrollment wants the DP's credential; an
//! unenrolled or deleted DP is refused.

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pkgdist_core::availability::Availability;
use pkgdist_core::errors::ErrorKind;
use pkgdist_db::DpRow;
use pkgdist_proto::node::{
    CA_PATH, CHUNKS_PATH, ENROLL_PATH, EnrollRequest, EnrollResponse, HELLO_PATH, HelloRequest, JOB_HEADER,
    PRESTAGED_PATH, PrestagedNotice,
};

use pkgdist_node::listen::TlsConnection;
use pkgdist_node::tls::{EnrollmentToken, Role};

use crate::auth;
use crate::body::{ENROLL_BODY_MAX, JsonBody};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let ca_pem = state.tls().map(|t| t.ca.cert_pem().to_owned());
    let authed = Router::new()
        .route(HELLO_PATH, post(hello))
        .route(PRESTAGED_PATH, post(prestaged))
        .with_state(state.clone())
        .merge(pkgdist_node::source::router(state.library.clone()))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate_dp));
    Router::new()
        // The CA certificate is public: a new node checks it against its token's pin.
        .route(
            CA_PATH,
            get(move || async move {
                match ca_pem {
                    Some(pem) => ([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response(),
                    None => ApiError::new(ErrorKind::UnknownInstance, "this site has no CA: it does not speak TLS")
                        .into_response(),
                }
            }),
        )
        // Enrollment takes no token: a small body only.
        .route(
            ENROLL_PATH,
            post(enroll).layer(axum::extract::DefaultBodyLimit::max(ENROLL_BODY_MAX)),
        )
        .with_state(state)
        .merge(authed)
}

async fn authenticate_dp(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = pkgdist_node::util::bearer(req.headers()) else {
        return ApiError::new(
            ErrorKind::Unauthenticated,
            "node routes need the DP's credential: Authorization: Bearer <credential>",
        )
        .into_response();
    };
    match state.db.dp_by_credential(&auth::hash(token)).await {
        Ok(Some(dp)) => {
            if let Some(refused) = wrong_certificate(&dp, &req) {
                return refused;
            }
            if req.uri().path() == CHUNKS_PATH
                && let Some(closed) = closed_to_job(&state, &dp, req.headers()).await
            {
                return closed;
            }
            if let Some(pacer) = state.pacer(&dp) {
                req.extensions_mut().insert(pacer);
            }
            req.extensions_mut().insert(dp);
            next.run(req).await
        }
        Ok(None) => ApiError::new(
            ErrorKind::Unauthenticated,
            "the DP credential is unknown: the DP was never enrolled or has been removed from the site",
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A 401 when DP `dp` was issued a certificate and the request does not come with it: a
/// stolen credential alone is not enough, and a removed DP's certificate matches no row.
fn wrong_certificate(dp: &DpRow, req: &Request) -> Option<Response> {
    let presented = crate::tls::presents(req, dp.cert_sha256.as_deref()).err()?;
    tracing::warn!(dp = %dp.name, presented = presented.as_deref().unwrap_or("none"), "refused a DP request without the DP's certificate");
    Some(
        ApiError::new(
            ErrorKind::Unauthenticated,
            format!(
                "DP {} was issued a certificate when it enrolled and must present it, over https",
                dp.name
            ),
        )
        .into_response(),
    )
}

/// A 503 with `Retry-After` when the DP's availability schedule does not allow the priority of
/// the job a chunk request is for, now; `None` when it may go.
async fn closed_to_job(state: &AppState, dp: &DpRow, headers: &axum::http::HeaderMap) -> Option<Response> {
    if dp.availability.is_empty() {
        return None;
    }
    let job = headers.get(JOB_HEADER)?.to_str().ok()?;
    let package = job.split('-').next()?;
    let priority = state.db.package(package).await.ok()??.priority;
    let priority = u32::try_from(priority).unwrap_or(2);
    let schedule = Availability::parse(&dp.availability).ok()?;
    let zone = jiff::tz::TimeZone::system();
    let now = jiff::Timestamp::now();
    if schedule.at(now, &zone).allows(priority) {
        return None;
    }
    let next = schedule.next_allowed(priority, now, &zone);
    let wait = next.map_or(MAX_CLOSED_WAIT, |t| {
        u64::try_from((t - now).get_seconds())
            .unwrap_or(0)
            .clamp(1, MAX_CLOSED_WAIT)
    });
    let when = next.map_or("no hour of the week is open to it".to_owned(), |t| {
        format!("it opens at {t}")
    });
    let text = format!(
        "the site is closed to priority-{priority} transfers to DP {} at this hour (AvailabilitySchedule); {when}",
        dp.name
    );
    let mut r = (axum::http::StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    r.headers_mut()
        .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(wait));
    Some(r)
}

/// The longest a DP is told to wait before asking again: schedules change.
const MAX_CLOSED_WAIT: u64 = 10;

async fn enroll(
    State(state): State<AppState>,
    tls: Option<Extension<TlsConnection>>,
    body: JsonBody<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    let req = body.0;
    check_url(&req.url)?;
    if req.credential.len() < 32 {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "the DP credential must be at least 32 characters",
        ));
    }
    // Over https a DP asks for a certificate, and is reached over https; over http it asks
    // for none (none could be checked).
    let over_tls = tls.is_some() && state.tls().is_some();
    match (&req.csr, over_tls) {
        (Some(_), false) => {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                "a certificate is issued only to a DP enrolling over https: use the site's https:// URL",
            ));
        }
        (None, true) => {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                "a DP enrolling over https must send a certificate request (csr): update the DP",
            ));
        }
        (Some(_), true) if !req.url.starts_with("https://") => {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                format!("a DP enrolling over https is reached over https, not at {}", req.url),
            ));
        }
        _ => {}
    }
    let cred_hash = auth::hash(&req.credential);
    let token_hash = auth::hash(&EnrollmentToken::parse(&req.enrollment_token).secret);
    let refused = || {
        tracing::warn!(url = %req.url, "refused a DP's enrollment: the token is unknown or already used");
        ApiError::new(
            ErrorKind::Unauthenticated,
            "the enrollment token is unknown or already used: run `pkgdist dp add` (or remove and add the DP again) for a new one",
        )
    };
    let dp = state
        .db
        .dp_for_enrollment(&token_hash, &cred_hash)
        .await?
        .ok_or_else(refused)?;
    // Signed before anything is recorded: a request that cannot be signed spends no token.
    let issued = match &req.csr {
        Some(csr) => Some(crate::tls::issue_for_enrollment(
            state.tls(),
            over_tls,
            csr,
            &req.url,
            &Role::Dp(dp.name.clone()),
        )?),
        None => None,
    };
    let fingerprint = issued.as_ref().map(|(_, fp)| fp.as_str());
    if !state
        .db
        .enroll_dp(&dp.nal_path, &token_hash, &cred_hash, &req.url, fingerprint)
        .await?
    {
        return Err(refused());
    }
    let certificate = issued.map(|(chain, _)| chain);
    tracing::info!(dp = %dp.name, url = %req.url, tls = certificate.is_some(), "distribution point enrolled");
    state.work.notify_one();
    Ok(Json(EnrollResponse {
        site_token: state.site_token(&cred_hash),
        name: dp.name,
        nal_path: dp.nal_path,
        site_code: dp.site_code,
        certificate,
    }))
}

async fn hello(
    State(state): State<AppState>,
    Extension(dp): Extension<DpRow>,
    body: JsonBody<HelloRequest>,
) -> ApiResult<impl IntoResponse> {
    check_url(&body.url)?;
    if dp.cert_sha256.is_some() && !body.url.starts_with("https://") {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!(
                "DP {} enrolled over https and is reached over https, not at {}",
                dp.name, body.url
            ),
        ));
    }
    if dp.url.as_deref() != Some(body.url.as_str()) {
        state.db.set_dp_url(&dp.nal_path, &body.url).await?;
        tracing::info!(dp = %dp.name, url = %body.url, "distribution point moved");
    }
    // A DP saying hello has just started: what failed while it was away is tried again now,
    // not after the rest of the retry delay (30 minutes by default).
    let due = state.db.retry_now(&dp.nal_path, &crate::now()).await?;
    if due > 0 {
        tracing::info!(dp = %dp.name, rows = due, "distribution point is back: its retries are due now");
    }
    state.work.notify_one();
    Ok(Json(serde_json::json!({"ok": true})))
}

/// A DP imported a version from a prestaged file: if it is the site's own (same manifest
/// hash), the DP's row may go ahead (its install then fetches nothing); otherwise the DP is
/// told why not, and the row keeps waiting.
async fn prestaged(
    State(state): State<AppState>,
    Extension(dp): Extension<DpRow>,
    body: JsonBody<PrestagedNotice>,
) -> ApiResult<impl IntoResponse> {
    let content: pkgdist_core::ContentId = body
        .content
        .parse()
        .map_err(|e: pkgdist_core::IdError| ApiError::new(ErrorKind::InvalidValue, format!("content: {e}")))?;
    let lib = state.library.clone();
    let ours = tokio::task::spawn_blocking(move || lib.manifest_id(content))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if ours != Some(body.manifest_hash) {
        tracing::warn!(dp = %dp.name, %content, "a DP imported prestaged content that is not the site's");
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            match ours {
                Some(_) => format!(
                    "the prestaged {content} is not this site's {content} (another manifest): make the file again with `pkgdist content prestage {content} FILE` on this site's library"
                ),
                None => format!("{content} is not in this site's content library"),
            },
        ));
    }
    let package = content.package.to_string();
    let version = i64::from(content.version);
    if !state
        .db
        .set_prestaged(&package, &dp.nal_path, version, &crate::now())
        .await?
    {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!(
                "{package} is not distributed to {}: distribute it first (`pkgdist package distribute {package} {}`)",
                dp.name, dp.name
            ),
        ));
    }
    tracing::info!(dp = %dp.name, %content, "prestaged content imported on a DP");
    state.work.notify_one();
    Ok(Json(serde_json::json!({"accepted": true})))
}

fn check_url(url: &str) -> ApiResult<()> {
    let ok = (url.starts_with("http://") || url.starts_with("https://")) && url.len() < 2048;
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!("{url:?} is not an http(s) URL where the site can reach the DP"),
        ))
    }
}
