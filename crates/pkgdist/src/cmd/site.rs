//! `pkgdist site …`: the site server daemon.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum SiteCmd {
    /// Run a site server: management API, metadata database and content library in DIR.
    Run(RunArgs),
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
}

pub fn run(cmd: SiteCmd) -> Result<()> {
    match cmd {
        SiteCmd::Run(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(pkgdist_site::run(pkgdist_site::RunOptions {
                data: a.data,
                site_code: a.site_code,
                listen: a.listen,
                ready_file: a.ready_file,
            }))?;
            Ok(())
        }
    }
}
