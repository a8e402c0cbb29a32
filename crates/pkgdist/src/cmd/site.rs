//! `pkgdist site …`: the site server daemon.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::cmd::admin::{Conn, runtime, s};
use crate::output;

#[derive(Subcommand, Debug)]
pub enum SiteCmd {
    /// Run a site server: management API, metadata database and content library in DIR.
    Run(RunArgs),
    /// Register a child site under this one; prints its one-time enrollment token.
    Add {
        /// The child's site code (three letters or digits).
        code: String,
        #[arg(long)]
        name: Option<String>,
        /// The most this site sends the child per second, in bytes; 0 for unlimited.
        #[arg(long)]
        rate_limit: Option<u64>,
    },
    /// This site and every site below it.
    List,
    /// Change a child site's link settings.
    Set {
        code: String,
        /// The most this site sends the child per second, in bytes; 0 for unlimited.
        #[arg(long)]
        rate_limit: u64,
    },
    /// Forget a child site and everything below it.
    Remove { code: String },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Data folder: site.toml, site.db, library/, bootstrap-token. Created on first start.
    #[arg(long)]
    data: PathBuf,
    /// The site code of a new site (e.g. PS1); must match site.toml for an existing one.
    #[arg(long)]
    site_code: Option<String>,
    /// Listen address, overriding site.toml (127.0.0.1:0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// Written with {"addr": …, "pid": …} once the server listens.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Join a parent site at URL (its API address) as a child site; later starts remember it.
    #[arg(long)]
    parent: Option<String>,
    /// With --parent, the first time: the token `pkgdist site add` printed at the parent.
    /// Prefer the environment or --enrollment-token-file: a command line is visible in `ps`.
    /// (Its own variable, not a DP's: one host may run both.)
    #[arg(long, env = "PKGDIST_PARENT_ENROLLMENT_TOKEN", hide_env_values = true)]
    enrollment_token: Option<String>,
    /// A file holding the enrollment token; wins over --enrollment-token.
    #[arg(long)]
    enrollment_token_file: Option<PathBuf>,
}

pub fn run(conn: &Conn, cmd: SiteCmd) -> Result<()> {
    match cmd {
        SiteCmd::Run(a) => {
            pkgdist_node::listen::raise_open_files_limit();
            let rt = crate::cmd::node::runtime()?;
            rt.block_on(pkgdist_site::run(pkgdist_site::RunOptions {
                data: a.data,
                site_code: a.site_code,
                listen: a.listen,
                ready_file: a.ready_file,
                parent: a.parent,
                enrollment_token: crate::cmd::enrollment_token(a.enrollment_token, a.enrollment_token_file.as_deref())?,
            }))?;
            Ok(())
        }
        admin => runtime()?.block_on(manage(conn, admin)),
    }
}

async fn manage(conn: &Conn, cmd: SiteCmd) -> Result<()> {
    let c = conn.client()?;
    let key = |code: &str| pkgdist_proto::client::key(&[("SiteCode", &code.to_ascii_uppercase())]);
    let v = match cmd {
        SiteCmd::Run(_) => bail!("`site run` is not a management command"),
        SiteCmd::Add { code, name, rate_limit } => {
            let mut body = json!({"SiteCode": code});
            if let Some(n) = name {
                body["SiteName"] = json!(n);
            }
            if let Some(r) = rate_limit {
                body["RateLimitBytesPerSecond"] = json!(r);
            }
            let o = Value::Object(c.create("SMS_Site", &body).await?);
            if conn.json {
                return output::json(&o);
            }
            output::line(format!("registered child site {} under this site", s(&o, "SiteCode")))?;
            output::line(format!("enrollment token (shown once): {}", s(&o, "EnrollmentToken")))?;
            return output::line(format!(
                "on the child: pkgdist site run --data DIR --site-code {} --parent {} --enrollment-token <token>",
                s(&o, "SiteCode"),
                conn.site
            ));
        }
        SiteCmd::List => Value::Array(c.list("SMS_Site", &[]).await?.into_iter().map(Value::Object).collect()),
        SiteCmd::Set { code, rate_limit } => Value::Object(
            c.update("SMS_Site", &key(&code), &json!({"RateLimitBytesPerSecond": rate_limit}))
                .await?,
        ),
        SiteCmd::Remove { code } => {
            c.delete("SMS_Site", &key(&code)).await?;
            json!({"ReturnValue": 0})
        }
    };
    if conn.json {
        return output::json(&v);
    }
    for o in v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]) {
        if o.get("SiteCode").is_none() {
            output::line("done")?;
            continue;
        }
        let ty = match o["Type"].as_u64() {
            Some(4) => "central",
            Some(1) => "secondary",
            _ => "primary",
        };
        let rate = o["RateLimitBytesPerSecond"].as_u64().unwrap_or(0);
        output::line(format!(
            "{:<4} {:<24} {:<9} parent {:<4} {}{}",
            s(&o, "SiteCode"),
            s(&o, "SiteName"),
            ty,
            match s(&o, "ReportingSiteCode") {
                "" => "-",
                p => p,
            },
            if o["Enrolled"] == json!(false) {
                "not enrolled"
            } else {
                ""
            },
            if rate > 0 {
                format!(" link limit {}/s", output::bytes(rate))
            } else {
                String::new()
            },
        ))?;
    }
    Ok(())
}
