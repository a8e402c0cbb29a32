//! The pkgdist site server as a library: [`serve`] runs the management API on a listener the
//! caller bound (tests bind `127.0.0.1:0`), [`run`] is the whole daemon behind
//! `pkgdist site run`.
//!
//! The API is ConfigMgr's AdminService WMI route: classes, instances, OData queries and methods
//! (`api`), validated against the class catalog of `pkgdist-proto`, with the state in the
//! metadata database (`pkgdist-db`) and package content in the content library.

mod adapters;
mod api;
pub mod audit;
pub mod auth;
mod body;
mod classes;
pub mod config;
mod console;
pub mod content_up;
pub mod distmgr;
pub mod error;
mod filter_types;
mod hierarchy;
pub mod link;
pub mod metadata;
pub mod metrics;
mod node;
pub mod openapi;
mod ops;
pub mod progress;
pub mod scheduler;
mod state;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use api::router;
pub use config::SiteConfig;
pub use error::{ApiError, SiteError};
use pkgdist_content::Library;
use pkgdist_db::Db;
pub use state::{AppState, Setup};
use tokio::net::TcpListener;

/// Now, as the API writes times: RFC 3339 UTC to the second.
pub fn now() -> String {
    stamp(jiff::Timestamp::now())
}

/// A time as the database keeps it: RFC 3339 UTC to the second, so text order is time order.
pub fn stamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Options of `pkgdist site run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub data: PathBuf,
    pub site_code: Option<String>,
    pub listen: Option<String>,
    pub ready_file: Option<PathBuf>,
    /// The parent site's URL, to join it (with `enrollment_token`) or to check against the
    /// one this site joined before.
    pub parent: Option<String>,
    pub enrollment_token: Option<String>,
}

/// Opens (creating on first start) the site's state in `dir`. No package source may be,
/// be inside or hold `dir`.
pub async fn open(dir: &Path, cfg: &SiteConfig) -> Result<AppState, SiteError> {
    open_with_private(dir, cfg, vec![dir.to_owned()]).await
}

/// [`open`], with the folders no package source may touch named by the caller (`pkgdist up`:
/// the folder holding the site and its DPs).
pub async fn open_with_private(
    dir: &Path,
    cfg: &SiteConfig,
    private: Vec<std::path::PathBuf>,
) -> Result<AppState, SiteError> {
    let db = Db::connect(&cfg.database_url(dir)).await?;
    match db.setting("site_code").await? {
        Some(code) if code != cfg.site_code => {
            return Err(SiteError::Config(format!(
                "the database belongs to site {code}, but site.toml says {}; they must agree",
                cfg.site_code
            )));
        }
        Some(_) => {}
        None => db.set_setting("site_code", &cfg.site_code).await?,
    }
    let new_id = format!("{{{}}}", uuid::Uuid::new_v4().hyphenated()).to_uppercase();
    db.setting_or_insert(SITE_ID, &new_id).await?;
    auth::ensure_bootstrap(&db, dir).await?;
    let library = Arc::new(Library::create_local(&dir.join("library"))?);
    let site_code = cfg
        .site_code
        .parse()
        .map_err(|e: pkgdist_core::IdError| SiteError::Config(e.to_string()))?;
    let node_key = node_key(&db, dir).await?;
    let tls = tls::SiteTls::open(dir, &cfg.site_code, &cfg.listen, &cfg.tls)?;
    check_ca(&db, &tls).await?;
    let overrides = distribution_overrides(&db).await?;
    let distribution = cfg.distribution.with(&overrides);
    distribution
        .check()
        .map_err(|e| SiteError::Config(format!("distribution settings (site.toml with the API's changes): {e}")))?;
    Ok(AppState::with(
        db,
        library,
        state::Setup {
            site_code,
            site_name: cfg.site_name.clone(),
            max_body_bytes: cfg.max_body_bytes,
            distribution,
            node_key,
            source_roots: cfg.allowed_source_roots.clone(),
            private,
            tls: Some(Arc::new(tls)),
        },
    ))
}

/// The settings key of the site's unique ID (`SMS_Identification.GetSiteID`): a GUID in
/// braces, as ConfigMgr writes one, made on first start and kept with the site's data.
pub const SITE_ID: &str = "site_id";

/// The settings key of the administrator's changes to `[distribution]`.
pub const DISTRIBUTION_SETTINGS: &str = "distribution";

/// The administrator's changes to `[distribution]` made through the API.
pub async fn distribution_overrides(db: &Db) -> Result<config::DistributionOverrides, SiteError> {
    match db.setting(DISTRIBUTION_SETTINGS).await? {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| SiteError::Config(format!("the stored distribution settings cannot be read: {e}"))),
        None => Ok(config::DistributionOverrides::default()),
    }
}

/// The file of the site's secret for what it presents to DPs (`node_key`).
pub const NODE_KEY_FILE: &str = "node-key";

/// The settings key of the node key's fingerprint (its BLAKE3): not a secret, but what tells
/// a site process that its `node-key` file is the one this database's DPs trust.
const NODE_KEY_ID: &str = "node_key_id";

/// The site's secret for what it presents to DPs, made on first start and kept in
/// `DIR/node-key` (0600), never in the database: whoever reads the database (a backup, a
/// replica, a PostgreSQL role) must not be able to mint what DPs accept from their site. The
/// database keeps only the key's fingerprint, so a site process with a missing or different
/// file refuses to start instead of making a new key its DPs would refuse. A key an earlier
/// version kept in the database moves to the file, and out of the database.
async fn node_key(db: &Db, dir: &Path) -> Result<[u8; 32], SiteError> {
    let parse = |hex: &str| -> Option<[u8; 32]> {
        let hex = hex.trim();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect::<Option<_>>()?;
        bytes.try_into().ok()
    };
    let path = dir.join(NODE_KEY_FILE);
    let known = db.setting(NODE_KEY_ID).await?;
    let key = match std::fs::read_to_string(&path) {
        Ok(hex) => parse(&hex).ok_or_else(|| {
            SiteError::Config(format!(
                "{} is damaged: restore it from a backup (a new key would make every DP refuse this site until re-enrolled)",
                path.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match db.setting("node_key").await? {
            Some(hex) => {
                parse(&hex).ok_or_else(|| SiteError::Config("the node key kept in the database is damaged".into()))?
            }
            None if known.is_some() => {
                return Err(SiteError::Config(format!(
                    "{} is missing, but this database's DPs trust an existing key: copy node-key from the site's backup or from another site process on this database into {}",
                    path.display(),
                    dir.display()
                )));
            }
            None => rand::random(),
        },
        Err(e) => return Err(SiteError::io(&path, e)),
    };
    let id = blake3::hash(&key).to_hex().to_string();
    if known.as_deref().is_some_and(|k| k != id) {
        return Err(SiteError::Config(format!(
            "{} is not the key this database's DPs trust (another site's?): restore the right node-key",
            path.display()
        )));
    }
    if !path.exists() {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        pkgdist_node::util::write_file(&path, hex.as_bytes(), true).map_err(|e| SiteError::io(&path, e))?;
    }
    // Only once the file is durable: the fingerprint, then no key left in the database.
    if known.is_none() {
        db.set_setting(NODE_KEY_ID, &id).await?;
    }
    db.delete_setting("node_key").await?;
    Ok(key)
}

/// The settings key of the CA's fingerprint: what this database's DPs and child sites pin.
const CA_ID: &str = "ca_sha256";

/// Keeps the CA's fingerprint in the database, so a site process whose `tls/` folder is
/// missing (and made a new CA) or another site's refuses to start, as with the node key:
/// every DP and child site would refuse it.
async fn check_ca(db: &Db, tls: &tls::SiteTls) -> Result<(), SiteError> {
    let pin = tls.ca.pin();
    match db.setting(CA_ID).await? {
        Some(known) if known != pin => Err(SiteError::Config(format!(
            "the site's CA (tls/ca.pem, or [tls] ca-cert) is not the one this database's DPs and child sites trust (fingerprint {known}): restore tls/ca.pem and tls/ca-key.pem from a backup or from another site process on this database, or point ca-cert at that CA (a new CA means enrolling every DP and child site again)"
        ))),
        Some(_) => Ok(()),
        None => Ok(db.set_setting(CA_ID, &pin).await?),
    }
}

/// Serves the API and the node protocol on `listener` until `shutdown` resolves. The work
/// behind them runs apart: see [`Workers`].
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = pkgdist_node::listen::Limits::for_open_files(pkgdist_node::listen::open_files_limit());
    serve_within(state, listener, limits, shutdown).await
}

/// [`serve`] within connection limits of the caller's choosing (`pkgdist up` shares the
/// process's open files between the site and its DPs).
pub async fn serve_within(
    state: AppState,
    listener: TcpListener,
    limits: pkgdist_node::listen::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let counted = state.metrics.node.clone();
    let state_tls = state.tls_shared();
    let app = router(state.clone())
        .merge(node::router(state.clone()))
        .merge(link::router(state))
        .layer(axum::middleware::from_fn_with_state(
            counted,
            pkgdist_node::metrics::layer,
        ));
    // TLS where the site has its certificate; plain HTTP on loopback (or where allowed).
    let transport = match (state_tls, listener.local_addr()) {
        (Some(t), Ok(addr)) => t.transport(addr),
        _ => pkgdist_node::listen::Transport::plain(),
    };
    // The peer's address reaches handlers (HTTP Basic is taken from loopback only), and no
    // client holds a connection past the limits.
    pkgdist_node::listen::serve_with(listener, app, limits, transport, shutdown).await
}

/// The site's background work — the distribution manager and the refresh scheduler — running
/// until dropped. A daemon starts them beside [`serve`]; tests of the API alone do not, so
/// what the API records stays put for them to read.
#[derive(Debug)]
pub struct Workers(Vec<tokio::task::JoinHandle<()>>);

impl Workers {
    /// `data_dir` names this site for the leases its workers take (see [`distmgr::Owner`]).
    pub fn start(state: &AppState, data_dir: &Path) -> Result<Self, SiteError> {
        let owner = distmgr::Owner::new(data_dir).map_err(|e| SiteError::io(&data_dir.join("instance-id"), e))?;
        Ok(Self(vec![
            tokio::spawn(distmgr::run(state.clone(), owner)),
            tokio::spawn(scheduler::run(state.clone())),
        ]))
    }

    /// Adds the site link's work: keeping in step with the parent, and replicating content.
    pub fn with_parent(mut self, state: &AppState, link: upstream::ParentLink, own_url: String) -> Self {
        self.0
            .push(tokio::spawn(upstream::run(state.clone(), link.clone(), own_url)));
        self.0
            .push(tokio::spawn(upstream::replicate(state.clone(), link.clone())));
        self.0.push(tokio::spawn(content_up::push_up(state.clone(), link)));
        self
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &self.0 {
            w.abort();
        }
    }
}

/// The daemon: configuration, state, listener, ready-file, serve until SIGINT or SIGTERM.
pub async fn run(opts: RunOptions) -> Result<(), SiteError> {
    pkgdist_node::util::private_dir(&opts.data).map_err(|e| SiteError::io(&opts.data, e))?;
    let (mut cfg, created) = SiteConfig::load_or_init(&opts.data, opts.site_code.as_deref())?;
    if created {
        tracing::info!(path = %opts.data.join("site.toml").display(), "wrote a new site.toml with the defaults");
    }
    let parent_url = match &opts.parent {
        Some(u) => Some(u.clone()),
        None => upstream::ParentLink::load(&opts.data)?.map(|l| l.url),
    };
    if let Some(url) = parent_url.filter(|u| pkgdist_proto::client::plain_to_remote(u))
        && !cfg.tls.allow_plain_http
    {
        return Err(SiteError::Config(format!(
            "the parent's URL {url} is plain HTTP to another machine: the enrollment token and this site's credential would cross the network readable; use the parent's https:// URL, or set [tls] allow-plain-http = true"
        )));
    }
    // The listen address given wins, for the certificate's names too.
    if let Some(listen) = &opts.listen {
        cfg.listen.clone_from(listen);
    }
    let state = open(&opts.data, &cfg).await?;
    let listen = cfg.listen.clone();
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| SiteError::Config(format!("cannot listen on {listen}: {e}")))?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| SiteError::Config(e.to_string()))?;
    tracing::info!(%addr, site = %cfg.site_code, "site server listening");
    if let Some(ready) = &opts.ready_file {
        let body = serde_json::to_vec(&pkgdist_proto::Ready {
            addr: addr.to_string(),
            pid: std::process::id(),
        })
        .map_err(|e| SiteError::Config(e.to_string()))?;
        config::write_atomic(ready, &body)?;
    }
    let own_url = format!("http://{addr}");
    let parent = upstream::ParentLink::establish(
        &opts.data,
        opts.parent.as_deref(),
        opts.enrollment_token.as_deref(),
        &cfg.site_code,
        &own_url,
    )
    .await?;
    let mut workers = Workers::start(&state, &opts.data)?;
    if let Some(link) = parent {
        workers = workers.with_parent(&state, link, own_url);
    }
    let _workers = workers;
    serve(state, listener, shutdown_signal())
        .await
        .map_err(|e| SiteError::io(Path::new(&listen), e))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
