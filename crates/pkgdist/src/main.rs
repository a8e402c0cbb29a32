//! `pkgdist`: the one binary. Daemons and the admin CLI are subcommands; this file only parses
//! arguments, sets up logging and hands over to the libraries.

mod cmd;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pkgdist",
    version,
    about = "Package content distribution in the manner of ConfigMgr"
)]
struct Cli {
    /// Log filter for messages on stderr (e.g. `info`, `pkgdist_content=debug`).
    #[arg(long, global = true, env = "PKGDIST_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work directly on a content library: snapshot a folder, verify, export, collect garbage.
    #[command(subcommand)]
    Content(cmd::content::ContentCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Content(c) => cmd::content::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            ExitCode::FAILURE
        }
    }
}
