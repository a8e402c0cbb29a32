//! The commands that move content: `pkgdist dp run` (a DP daemon), `pkgdist up` (a site and N
//! DPs in one process) and `pkgdist fetch` (a client).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use pkgdist_node::fetch::{Fetcher, Which};
use pkgdist_proto::Client;
use pkgdist_proto::client::key;
use serde_json::json;

use crate::cmd::admin::Conn;
use crate::output;

#[derive(Args, Debug)]
pub struct DpRunArgs {
    /// Data folder: node.json (identity), library/, jobs/. Created on first start.
    #[arg(long)]
    pub data: PathBuf,
    /// The one-time token from `pkgdist dp add`; needed on the first start only. The site is
    /// the global --site. Prefer the environment or --enrollment-token-file: a command line is
    /// visible in `ps`.
    #[arg(long, env = "PKGDIST_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: Option<String>,
    /// A file holding the enrollment token; wins over --enrollment-token (and the
    /// environment).
    #[arg(long)]
    pub enrollment_token_file: Option<PathBuf>,
    /// Listen address (127.0.0.1:0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8471")]
    pub listen: String,
    /// The URL the site and clients use to reach this DP, if not http://<bound address>. Kept
    /// for later starts; needed when listening on every address (0.0.0.0).
    #[arg(long)]
    pub advertise_url: Option<String>,
    /// Written with {"addr": …, "pid": …} once the DP listens.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Chunk bytes asked of a source per request.
    #[arg(long, hide = true)]
    pub batch_bytes: Option<u64>,
    /// Connections at once from one client address; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = pkgdist_node::listen::Limits::PER_ADDRESS)]
    pub max_connections_per_client: usize,
    /// Seconds a client has to send a request's headers before its connection is closed; also
    /// how long a kept-alive connection may sit idle.
    #[arg(long, default_value_t = pkgdist_node::listen::Limits::HEADER_READ_SECS)]
    pub header_timeout_secs: u64,
    /// Seconds a response may wait on a client that takes nothing (or a request body on a
    /// client that sends nothing) before its connection is reset.
    #[arg(long, default_value_t = pkgdist_node::listen::Limits::WRITE_STALL_SECS)]
    pub stall_timeout_secs: u64,
    /// Serve plain HTTP off loopback too: to clients beside HTTPS (a DP enrolled with the
    /// site's https:// URL), or alone (a DP enrolled over http). Off by default: tokens and
    /// content would cross the network readable.
    #[arg(long)]
    pub allow_plain_http: bool,
    /// Bytes of verified plain copies of served files the DP may keep (in DATA/served), so
    /// that the kernel sends them; 0 serves every request from the chunks. Default: a quarter
    /// of the data folder's filesystem.
    #[arg(long)]
    pub served_cache_bytes: Option<u64>,
}

impl DpRunArgs {
    /// The connection limits asked for, with the total sized to `open_files`.
    fn limits(&self, open_files: u64) -> pkgdist_node::listen::Limits {
        let base = pkgdist_node::listen::Limits::for_open_files(open_files);
        pkgdist_node::listen::Limits {
            per_address: self.max_connections_per_client.max(1),
            header_read: std::time::Duration::from_secs(self.header_timeout_secs.max(1)),
            write_stall: std::time::Duration::from_secs(self.stall_timeout_secs.max(1)),
            ..base
        }
    }
}

/// The runtime of the daemons and of `fetch`. Its blocking pool is capped well under tokio's
/// 512: downloads read through it (at most 16 blocks at once, see `pkgdist_node::serve`) and so
/// do lookups, and 2,048 requests arriving together grew it to 512 threads before.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()?)
}

/// Blocking threads a daemon may have at once.
const BLOCKING_THREADS: usize = 64;

pub fn dp_run(conn: &Conn, a: DpRunArgs) -> Result<()> {
    let limits = a.limits(pkgdist_node::listen::raise_open_files_limit());
    runtime()?.block_on(pkgdist_dp::run(
        pkgdist_dp::RunOptions {
            limits,
            data: a.data,
            site: Some(conn.site.clone()),
            enrollment_token: crate::cmd::enrollment_token(a.enrollment_token, a.enrollment_token_file.as_deref())?,
            listen: a.listen,
            advertise_url: a.advertise_url,
            ready_file: a.ready_file,
            batch_bytes: a.batch_bytes,
            allow_plain_http: a.allow_plain_http,
            served_cache_bytes: a.served_cache_bytes,
        },
        pkgdist_site::shutdown_signal(),
    ))?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// A PackageID (the latest version the DP has) or a content ID (PS100001.3).
    pub package: String,
    /// The DP's URL.
    #[arg(long)]
    pub dp: String,
    /// The folder to download into; files already there are reused chunk by chunk.
    pub dest: PathBuf,
}

pub fn fetch(conn: &Conn, a: FetchArgs) -> Result<()> {
    let which = if a.package.contains('.') {
        Which::Version(a.package.parse().context("PACKAGE")?)
    } else {
        Which::Latest(a.package.parse().context("PACKAGE")?)
    };
    // An https:// DP is verified against the site's CA when one is known (--ca).
    let fetcher = match conn.ca_pem()? {
        Some(ca) => Fetcher::with_client(pkgdist_node::tls::client_builder(
            &ca,
            None,
            pkgdist_node::tls::Expect::Dp,
        )?),
        None => Fetcher::new(),
    };
    let stats = runtime()?.block_on(pkgdist_node::download::download(&fetcher, &a.dp, which, &a.dest))?;
    let content = stats.content.map(|c| c.to_string()).unwrap_or_default();
    if conn.json {
        return output::json(&json!({
            "content_id": content,
            "files": stats.files,
            "files_unchanged": stats.files_unchanged,
            "files_written": stats.files_written,
            "bytes_reused": stats.bytes_reused,
            "bytes_fetched": stats.bytes_fetched,
            "wire_bytes": stats.wire_bytes,
            "specials": stats.specials,
            "skipped": stats.skipped,
        }));
    }
    if let Some(note) = super::content::not_restored(&stats.skipped) {
        output::line(note)?;
    }
    output::line(format!(
        "{content}: {} files ({} unchanged, {} written), {} reused from {}, {} fetched ({} on the wire), every byte verified",
        stats.files,
        stats.files_unchanged,
        stats.files_written,
        output::bytes(stats.bytes_reused),
        a.dest.display(),
        output::bytes(stats.bytes_fetched),
        output::bytes(stats.wire_bytes),
    ))
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Data folder: site/ and dp1/ … dpN/. Created on first start.
    #[arg(long, default_value = "pkgdist-data")]
    pub data: PathBuf,
    /// How many local DPs.
    #[arg(long, default_value_t = 2)]
    pub dps: usize,
    /// The site's listen address; DPs listen on the following ports (or on free ports when
    /// this is port 0).
    #[arg(long, default_value = "127.0.0.1:8470")]
    pub listen: String,
    /// Written with {"site": …, "site_code": …, "dps": […], "token_file": …} once everything
    /// listens.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Site code of a new site.
    #[arg(long, default_value = "PS1")]
    pub site_code: String,
    /// Run in the background: return once everything listens (output in DATA/up.log; stop
    /// it with `pkgdist down`).
    #[arg(long)]
    pub detach: bool,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// The data folder `pkgdist up` runs on.
    #[arg(long, default_value = "pkgdist-data")]
    pub data: PathBuf,
}

pub fn up(a: UpArgs) -> Result<()> {
    if a.detach {
        let mut args = vec![
            "--data".to_owned(),
            a.data.display().to_string(),
            "--dps".to_owned(),
            a.dps.to_string(),
            "--listen".to_owned(),
            a.listen.clone(),
            "--site-code".to_owned(),
            a.site_code.clone(),
        ];
        if let Ok(filter) = std::env::var("PKGDIST_LOG") {
            args.extend(["--log".to_owned(), filter]);
        }
        return crate::cmd::background::detach(crate::cmd::background::Detach {
            data: &a.data,
            args,
            ready_file: a.ready_file.as_deref(),
        });
    }
    pkgdist_node::util::private_dir(&a.data).with_context(|| format!("creating {}", a.data.display()))?;
    let _pid = crate::cmd::background::PidFile::claim(&a.data)?;
    runtime()?.block_on(up_async(a))
}

async fn up_async(a: UpArgs) -> Result<()> {
    if a.dps > 64 {
        bail!("--dps {}: at most 64 local DPs", a.dps);
    }
    let open_files = pkgdist_node::listen::raise_open_files_limit();
    let site_dir = a.data.join("site");
    for d in [&a.data, &site_dir] {
        pkgdist_node::util::private_dir(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let exists = site_dir.join("site.toml").exists();
    let code = (!exists).then_some(a.site_code.as_str());
    // A new site of `up` takes sources from under the folder it was started in (the quick
    // start's `--source docs` is there); site.toml says so and can be changed.
    let here = std::env::current_dir().context("cannot tell the current folder")?;
    let (cfg, _) = pkgdist_site::SiteConfig::load_or_init_with(&site_dir, code, vec![here])?;
    // No package may be made from the folder of the site and its DPs (tokens, keys, database).
    let state = pkgdist_site::open_with_private(&site_dir, &cfg, vec![a.data.clone()]).await?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let site_addr = listener.local_addr()?;
    // Port 0 asked for: every DP takes a free port too (the site's port + i may be taken).
    let any_port = a.listen.rsplit(':').next() == Some("0");
    // On loopback the DPs of the process reach the site over http, as the quick start does;
    // elsewhere over https (the site serves no plain HTTP off loopback), pinning its CA.
    let site_url = if site_addr.ip().is_loopback() {
        format!("http://{site_addr}")
    } else {
        format!("https://127.0.0.1:{}", site_addr.port())
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    let _workers = pkgdist_site::Workers::start(&state, &site_dir)?;
    let site_stop = stopped();
    // The site and every DP of the process share its open files.
    let share =
        pkgdist_node::listen::Limits::for_open_files(open_files / u64::try_from(a.dps).unwrap_or(64).saturating_add(1));
    tasks.spawn(async move {
        pkgdist_site::serve_within(state, listener, share, site_stop)
            .await
            .map_err(anyhow::Error::from)
    });

    let token_file = site_dir.join("bootstrap-token");
    let token = match std::env::var(pkgdist_site::auth::BOOTSTRAP_ENV) {
        Ok(t) => t,
        Err(_) => std::fs::read_to_string(&token_file)
            .with_context(|| format!("reading {}", token_file.display()))?
            .trim()
            .to_owned(),
    };
    let client = if site_url.starts_with("https://") {
        let ca = std::fs::read_to_string(site_dir.join("tls/ca.pem")).context("reading the site's CA")?;
        crate::cmd::admin::site_client(&site_url, &token, Some(&ca))?
    } else {
        Client::new(&site_url, &token)?
    };
    let mut dp_addrs = Vec::new();
    for i in 1..=a.dps {
        let dir = a.data.join(format!("dp{i}"));
        let listen = next_port(site_addr, any_port, i);
        let enrolled = match pkgdist_dp::identity::Identity::load(&dir)? {
            Some(mut id) if id.enrolled() => {
                // The same site, in the same process: started on another address (`--listen
                // 127.0.0.1:0` takes a new port each time), it takes its DPs along. (A DP
                // apart from its site keeps the URL it enrolled with.)
                if id.site_url != site_url {
                    id.site_url.clone_from(&site_url);
                    id.save(&dir)?;
                }
                true
            }
            _ => false,
        };
        let enrollment_token = if enrolled {
            None
        } else {
            Some(register(&client, &format!("dp{i}")).await?)
        };
        let dp = pkgdist_dp::Dp::start(pkgdist_dp::RunOptions {
            data: dir,
            site: Some(site_url.clone()),
            enrollment_token,
            listen,
            advertise_url: None,
            ready_file: None,
            batch_bytes: None,
            limits: share,
            allow_plain_http: false,
            served_cache_bytes: None,
        })
        .await?;
        dp_addrs.push(dp.addr.to_string());
        let dp_stop = stopped();
        tasks.spawn(async move { dp.serve(dp_stop).await.map_err(anyhow::Error::from) });
    }
    banner(cfg.site_code.as_str(), &site_url, &dp_addrs, &token_file)?;
    if let Some(ready) = &a.ready_file {
        let body = serde_json::to_vec(&json!({
            "site": site_addr.to_string(),
            "site_code": cfg.site_code.as_str(),
            "dps": dp_addrs,
            "token_file": token_file.display().to_string(),
        }))?;
        pkgdist_site::config::write_atomic(ready, &body)?;
    }
    tokio::select! {
        () = pkgdist_site::shutdown_signal() => {}
        Some(done) = tasks.join_next() => {
            done??;
            bail!("a server stopped unexpectedly");
        }
    }
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// What `up` prints once everything listens (and `up --detach` prints for it).
pub fn banner(code: &str, site_url: &str, dps: &[String], token_file: &std::path::Path) -> Result<()> {
    output::line(format!("site {code} API: {site_url}"))?;
    for (i, d) in dps.iter().enumerate() {
        output::line(format!("dp{}:          http://{d}", i + 1))?;
    }
    output::line(format!("admin token:  {}", token_file.display()))?;
    output::line(format!(
        "console:      {site_url}/console/ (sign in with the admin token)"
    ))
}

/// DP `i`'s listen address: the `i`th port after the site's, or any free port.
fn next_port(site: SocketAddr, any_port: bool, i: usize) -> String {
    if any_port {
        format!("{}:0", site.ip())
    } else {
        format!("{}:{}", site.ip(), usize::from(site.port()) + i)
    }
}

/// Registers local DP `name` at the site (again, if an earlier start registered it but died
/// before it enrolled) and returns its enrollment token.
async fn register(client: &Client, name: &str) -> Result<String> {
    let body = json!({"Name": name, "Description": "local DP of pkgdist up"});
    let created = match client.create("SMS_DistributionPointInfo", &body).await {
        Ok(o) => o,
        Err(_) => {
            let found = client
                .list(
                    "SMS_DistributionPointInfo",
                    &[("$filter", &format!("Name eq '{name}'"))],
                )
                .await?;
            if let Some(nal) = found.first().and_then(|o| o.get("NALPath")).and_then(|v| v.as_str()) {
                client
                    .delete("SMS_DistributionPointInfo", &key(&[("NALPath", nal)]))
                    .await?;
            }
            client.create("SMS_DistributionPointInfo", &body).await?
        }
    };
    created
        .get("EnrollmentToken")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .context("the site did not return an enrollment token")
}
