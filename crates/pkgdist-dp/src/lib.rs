//! The pkgdist distribution point (`pkgdist dp run`) as a library.
//!
//! A DP is a content library plus three sets of routes on one listener:
//! - client downloads (`pkgdist_node::serve`): anyone may read installed packages;
//! - source routes (`pkgdist_node::source`): manifests and chunks, for `pkgdist fetch` and
//!   pull DPs — the same content, so the same audience;
//! - job routes (`/node/v1/jobs`): only the DP's site, by the token it gave at enrollment.
//!
//! State in the data folder: `node.json` (identity, 0600), `library/`, `jobs/`.

pub mod identity;
pub mod jobs;
pub mod metrics;
pub mod prestage;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pkgdist_content::Library;
use pkgdist_node::fetch::Fetcher;
use pkgdist_node::served::ServedFiles;
use pkgdist_node::util::{bearer, plain};
use pkgdist_proto::node::{JOBS_PATH, Job};
use tokio::net::TcpListener;

use crate::identity::Identity;
use crate::jobs::Jobs;

#[derive(Debug, thiserror::Error)]
pub enum DpError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Site(String),
    #[error("DP state: {0}")]
    State(String),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Content(#[from] pkgdist_content::ContentError),
    #[error(transparent)]
    Fetch(#[from] pkgdist_node::fetch::FetchError),
    #[error("bad job: {0}")]
    BadJob(String),
    #[error("cancelled by the site")]
    Cancelled,
    #[error(
        "not enough free space on the DP for {content}: it needs up to {needed} more bytes and {free} are free under {path}; free some space there (the site retries, and the retry goes ahead once there is room)"
    )]
    DiskFull {
        content: String,
        needed: u64,
        free: u64,
        path: String,
    },
}

impl DpError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Options of `pkgdist dp run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub data: PathBuf,
    /// The site's URL; needed to enroll, remembered after.
    pub site: Option<String>,
    pub enrollment_token: Option<String>,
    pub listen: String,
    pub advertise_url: Option<String>,
    pub ready_file: Option<PathBuf>,
    /// Chunk bytes per request to a source (default 8 MiB).
    pub batch_bytes: Option<u64>,
    /// What one client, and all of them, may hold of the DP's connections.
    pub limits: pkgdist_node::listen::Limits,
    /// Serve plain HTTP off loopback: beside TLS for clients (a DP enrolled over https), or
    /// alone (one enrolled over http).
    pub allow_plain_http: bool,
    /// Bytes of verified copies of served files to keep (`pkgdist_node::served`); `None` for
    /// the default (a quarter of the data folder's filesystem), 0 for none.
    pub served_cache_bytes: Option<u64>,
}

/// A DP ready to serve: enrolled, listening, jobs resumed.
#[derive(Debug)]
pub struct Dp {
    pub addr: SocketAddr,
    pub url: String,
    pub identity: Identity,
    listener: TcpListener,
    app: Router,
    limits: pkgdist_node::listen::Limits,
    transport: pkgdist_node::listen::Transport,
}

impl Dp {
    /// Opens the data folder, binds, enrolls on first start (or says hello to the site), and
    /// resumes interrupted jobs.
    pub async fn start(opts: RunOptions) -> Result<Self, DpError> {
        pkgdist_node::util::private_dir(&opts.data).map_err(|e| DpError::io(&opts.data, e))?;
        let listener = TcpListener::bind(&opts.listen)
            .await
            .map_err(|e| DpError::Config(format!("cannot listen on {}: {e}", opts.listen)))?;
        let addr = listener.local_addr().map_err(|e| DpError::Config(e.to_string()))?;
        let loaded = Identity::load(&opts.data)?;
        let url = advertised_url(&opts, addr, loaded.as_ref())?;
        // Checked before enrolling: a DP that may not serve here spends no token.
        if !site_is_https(&opts, loaded.as_ref()) && !opts.allow_plain_http && !addr.ip().is_loopback() {
            return Err(plain_refused(addr));
        }
        let site_url = loaded
            .as_ref()
            .map(|id| id.site_url.clone())
            .or_else(|| opts.site.clone());
        if !opts.allow_plain_http && site_url.as_deref().is_some_and(pkgdist_proto::client::plain_to_remote) {
            return Err(DpError::Config(format!(
                "the site's URL {} is plain HTTP to another machine: the enrollment token and the DP's credential would cross the network readable; use the site's https:// URL, or pass --allow-plain-http",
                site_url.unwrap_or_default()
            )));
        }
        let identity = match loaded {
            Some(id) if id.enrolled() => {
                if let Some(site) = &opts.site
                    && site.trim_end_matches('/') != id.site_url
                {
                    tracing::warn!(
                        enrolled_with = %id.site_url,
                        given = %site,
                        "this DP is enrolled with another site URL and keeps using it; to move it, remove it there, add it at the new site and start with a new --data folder"
                    );
                }
                let hello = id.clone();
                let http = id.site_client(&opts.data)?;
                let to = url.clone();
                tokio::spawn(async move { say_hello(hello, http, to).await });
                id
            }
            existing => {
                let token = opts.enrollment_token.as_deref().ok_or_else(|| {
                    DpError::Config(
                        "this DP is not enrolled yet: give --site URL and --enrollment-token TOKEN (from `pkgdist dp add`)"
                            .into(),
                    )
                })?;
                let site = opts
                    .site
                    .as_deref()
                    .ok_or_else(|| DpError::Config("give --site URL: the site this DP enrolls with".into()))?;
                // A retried enrollment keeps the credential it already offered.
                let mut id = match existing {
                    Some(id) if id.site_url == site.trim_end_matches('/') => id,
                    _ => Identity::new(site),
                };
                id.enroll(&opts.data, token, &url).await?;
                tracing::info!(name = %id.name, nal = %id.nal_path, "enrolled with the site");
                id
            }
        };
        let mut identity = identity;
        if let Some(given) = &opts.advertise_url
            && identity.advertise_url.as_deref() != Some(given.trim_end_matches('/'))
        {
            identity.advertise_url = Some(given.trim_end_matches('/').to_owned());
            identity.save(&opts.data)?;
        }
        let tls = if identity.tls {
            Some(identity::Tls::load(&opts.data)?)
        } else {
            None
        };
        let transport = transport(tls.as_ref(), addr, opts.allow_plain_http)?;
        let library = Arc::new(Library::create_local(&opts.data.join("library"))?);
        let metrics = metrics::DpMetrics::new();
        let base = match &tls {
            Some(t) => Fetcher::with_client(t.client(&identity.site_code)?),
            None => Fetcher::new(),
        };
        let mut fetcher = base
            .with_bearer_for(&identity.site_url, &identity.credential)
            .with_metrics(metrics.node.fetch());
        if let Some(b) = opts.batch_bytes {
            fetcher = fetcher.with_batch_bytes(b);
        }
        let served_dir = opts.data.join("served");
        let budget = opts
            .served_cache_bytes
            .unwrap_or_else(|| ServedFiles::default_budget(&opts.data));
        // Copies are a speed-up: a DP that cannot keep them serves from the chunks.
        let served = match ServedFiles::open(&served_dir, library.clone(), budget) {
            Ok(s) if budget > 0 => Some(Arc::new(s)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(path = %served_dir.display(), error = %e, "cannot keep served copies; serving every request from the chunks");
                None
            }
        };
        let mut jobs = Jobs::open(
            opts.data.join("jobs"),
            library.clone(),
            fetcher,
            identity.site_url.clone(),
            metrics.jobs.clone(),
        )?;
        if let Some(served) = &served {
            jobs = jobs.with_served(served.clone());
        }
        let resumed = jobs.resume()?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed interrupted jobs");
        }
        let content = match served {
            Some(s) => pkgdist_node::serve::Content::new(library.clone()).with_served(s),
            None => pkgdist_node::serve::Content::new(library.clone()),
        };
        // Downloads of files the DP holds copies of are answered without the router.
        let shortcut = Arc::new(pkgdist_node::serve::Shortcut::new(content.clone(), &metrics.node));
        let transport = transport.with_shortcut(shortcut);
        let app = router(library, content, jobs, identity.clone(), metrics);
        Ok(Self {
            addr,
            url,
            identity,
            listener,
            app,
            limits: opts.limits,
            transport,
        })
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        tracing::info!(addr = %self.addr, dp = %self.identity.name, "distribution point listening");
        pkgdist_node::listen::serve_with(self.listener, self.app, self.limits, self.transport, shutdown).await
    }
}

/// Whether the DP reaches (or will enroll with) its site over https.
fn site_is_https(opts: &RunOptions, known: Option<&Identity>) -> bool {
    known.map_or_else(
        || opts.site.as_deref().is_some_and(|s| s.starts_with("https://")),
        Identity::site_is_https,
    )
}

fn plain_refused(addr: SocketAddr) -> DpError {
    DpError::Config(format!(
        "this DP talks to its site over plain HTTP and would serve it on {addr}, off loopback, where the site's token crosses the network readable: enroll it with the site's https:// URL (remove and add it at the site, new --data folder), or pass --allow-plain-http"
    ))
}

/// How the DP's listener at `addr` speaks: TLS with its certificate (plain HTTP beside it on
/// loopback, or where allowed, for clients), or plain HTTP only for a DP enrolled over http —
/// which off loopback needs `allow_plain`, since its site's token would cross the network
/// readable.
fn transport(
    tls: Option<&identity::Tls>,
    addr: SocketAddr,
    allow_plain: bool,
) -> Result<pkgdist_node::listen::Transport, DpError> {
    if allow_plain && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "plain HTTP is allowed off loopback (--allow-plain-http)");
    }
    let Some(tls) = tls else {
        if !allow_plain && !addr.ip().is_loopback() {
            return Err(plain_refused(addr));
        }
        return Ok(pkgdist_node::listen::Transport::plain().direct());
    };
    let ca = pkgdist_node::tls::certs(&tls.ca_pem, "CA certificate").map_err(|e| DpError::State(e.to_string()))?;
    let config = pkgdist_node::tls::server_config(&tls.identity, &ca).map_err(|e| DpError::State(e.to_string()))?;
    Ok(pkgdist_node::listen::Transport::tls(config, addr, allow_plain).direct())
}

/// The URL the DP tells the site: `--advertise-url`, or the one an earlier start was given, or
/// `http://<bound address>` — unless that address is the unspecified one (`0.0.0.0`, `::`),
/// which no one can reach: then the operator must say.
fn advertised_url(opts: &RunOptions, addr: SocketAddr, known: Option<&Identity>) -> Result<String, DpError> {
    let kept = known.and_then(|id| id.advertise_url.clone());
    let url = match (opts.advertise_url.clone(), kept) {
        (Some(given), _) => given,
        (None, Some(kept)) => kept,
        (None, None) if addr.ip().is_unspecified() => {
            return Err(DpError::Config(format!(
                "listening on {addr} (every address), the DP cannot tell the site where to reach it: give --advertise-url https://HOST:{} (http:// for a DP of a site reached over http; it is kept for later starts)",
                addr.port()
            )));
        }
        (None, None) => {
            // A DP of a site reached over https serves https too.
            let scheme = if site_is_https(opts, known) { "https" } else { "http" };
            format!("{scheme}://{addr}")
        }
    };
    Ok(url.trim_end_matches('/').to_owned())
}

/// Tells the site where this DP is, retrying while the site is unreachable.
async fn say_hello(id: Identity, http: reqwest::Client, url: String) {
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        match id.hello(&http, &url).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell the site where this DP is; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}

#[derive(Clone)]
struct JobState {
    jobs: Jobs,
    site_token_hash: String,
    /// For a DP enrolled over https: job requests must come with a certificate naming this
    /// site (the listener has checked it is signed by the site's CA).
    site_certificate: Option<pkgdist_node::tls::Role>,
}

fn router(
    library: Arc<Library>,
    content: pkgdist_node::serve::Content,
    jobs: Jobs,
    identity: Identity,
    metrics: metrics::DpMetrics,
) -> Router {
    let scrape = {
        let (jobs, library, metrics) = (jobs.clone(), library.clone(), metrics.clone());
        move || scrape(jobs.clone(), library.clone(), metrics.clone())
    };
    let node_metrics = metrics.node.clone();
    let state = JobState {
        jobs,
        site_certificate: identity
            .tls
            .then(|| pkgdist_node::tls::Role::Site(identity.site_code.clone())),
        site_token_hash: identity.site_token_hash.unwrap_or_default(),
    };
    let job_routes = Router::new()
        .route(JOBS_PATH, post(submit))
        .route(&format!("{JOBS_PATH}/{{id}}"), get(status).delete(cancel))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate_site))
        .with_state(state);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(pkgdist_node::serve::router(content))
        .merge(pkgdist_node::source::router(library))
        .merge(job_routes)
        .route("/metrics", get(scrape))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        // Outermost, so answers made of panics are counted too.
        .layer(middleware::from_fn_with_state(
            node_metrics,
            pkgdist_node::metrics::layer,
        ))
}

/// `/metrics`: anyone who can reach the DP may read it, as anyone may read its content; it
/// holds counts only (no names, no secrets).
async fn scrape(jobs: Jobs, library: Arc<Library>, metrics: metrics::DpMetrics) -> Response {
    metrics.running.set(i64::try_from(jobs.running()).unwrap_or(i64::MAX));
    let lib = library.clone();
    match tokio::task::spawn_blocking(move || lib.versions()).await {
        Ok(Ok(v)) => {
            metrics.versions.set(i64::try_from(v.len()).unwrap_or(i64::MAX));
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot count the versions held"),
        Err(e) => tracing::warn!(error = %e, "the count of versions held stopped"),
    }
    metrics.node.response(&library)
}

async fn authenticate_site(State(state): State<JobState>, req: Request, next: Next) -> Response {
    if let Some(site) = &state.site_certificate {
        let presented = req
            .extensions()
            .get::<pkgdist_node::listen::TlsConnection>()
            .and_then(|t| t.peer.as_ref());
        if !presented.is_some_and(|c| pkgdist_node::tls::Role::of(c).contains(site)) {
            tracing::warn!(
                certificate = presented.is_some(),
                "refused a job request without this DP's site's certificate"
            );
            return plain(
                StatusCode::UNAUTHORIZED,
                "job routes are for this DP's site only, over https with the site's certificate",
            );
        }
    }
    match bearer(req.headers()) {
        Some(t) if !state.site_token_hash.is_empty() && identity::hash(t) == state.site_token_hash => {
            next.run(req).await
        }
        Some(_) => plain(StatusCode::UNAUTHORIZED, "the site token is not this DP's site's"),
        None => plain(
            StatusCode::UNAUTHORIZED,
            "job routes are for this DP's site only: Authorization: Bearer <site token>",
        ),
    }
}

fn job_error(e: &DpError) -> Response {
    let status = match e {
        DpError::BadJob(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(status, e.to_string())
}

async fn submit(
    State(state): State<JobState>,
    job: Result<Json<Job>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let job = match job {
        Ok(Json(j)) => j,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("not a job: {e}")),
    };
    match state.jobs.submit(job) {
        Ok(s) => Json(s).into_response(),
        Err(e) => job_error(&e),
    }
}

async fn status(State(state): State<JobState>, UrlPath(id): UrlPath<String>) -> Response {
    match state.jobs.get(&id) {
        Ok(Some(s)) => Json(s).into_response(),
        Ok(None) => plain(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => job_error(&e),
    }
}

async fn cancel(State(state): State<JobState>, UrlPath(id): UrlPath<String>) -> Response {
    match state.jobs.cancel(&id) {
        Ok(Some(s)) => Json(s).into_response(),
        Ok(None) => plain(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => job_error(&e),
    }
}

/// `pkgdist dp run`: start, write the ready-file, serve until SIGINT or SIGTERM.
pub async fn run(
    opts: RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DpError> {
    let ready = opts.ready_file.clone();
    let dp = Dp::start(opts).await?;
    if let Some(path) = ready {
        let body = serde_json::to_vec(&pkgdist_proto::Ready {
            addr: dp.addr.to_string(),
            pid: std::process::id(),
        })
        .map_err(|e| DpError::State(e.to_string()))?;
        identity::write_private(&path, &body)?;
    }
    let addr = dp.addr;
    dp.serve(shutdown)
        .await
        .map_err(|e| DpError::io(Path::new(&addr.to_string()), e))
}
