//! `pkgdist`: the one binary. Daemons and the admin CLI are subcommands; this file only parses
//! arguments, sets up logging and hands over to the libraries.

mod cmd;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cmd::admin;

#[derive(Parser)]
#[command(
    name = "pkgdist",
    version,
    about = "Package content distribution in the manner of ConfigMgr"
)]
struct Cli {
    /// Log filter for messages on stderr (e.g. `info`, `pkgdist_site=debug`); default `info`
    /// for daemons, `warn` for commands.
    #[arg(long, global = true, env = "PKGDIST_LOG")]
    log: Option<String>,

    #[command(flatten)]
    conn: admin::Conn,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A site and N distribution points in one process, on embedded defaults.
    Up(cmd::node::UpArgs),
    /// Stop the `pkgdist up` running on a data folder (`up --detach`, or `up &`).
    Down(cmd::node::DownArgs),
    /// The site server.
    #[command(subcommand)]
    Site(cmd::site::SiteCmd),
    /// Packages: create, list, show, refresh the source, distribute, delete.
    #[command(subcommand)]
    Package(admin::PackageCmd),
    /// Distribution points: register, list, remove.
    #[command(subcommand)]
    Dp(admin::DpCmd),
    /// DP groups and their packages.
    #[command(subcommand)]
    Group(admin::GroupCmd),
    /// Where content is: with a package, its state on each DP (progress, retries, last
    /// message); without, every package's counts and every DP row not INSTALLED.
    Status {
        package: Option<String>,
        /// Redraw every second until nothing is in progress (or only rows waiting for an
        /// administrator, whose message says what they wait for).
        #[arg(long)]
        watch: bool,
        /// The status-message history instead (newest first), of the package if one is named.
        #[arg(long, conflicts_with = "watch")]
        messages: bool,
        /// With --messages: only those about this DP (its name).
        #[arg(long, requires = "messages")]
        dp: Option<String>,
        /// With --messages: only errors.
        #[arg(long, requires = "messages")]
        errors: bool,
        /// With --messages: only those since this time (e.g. 2026-12-04T08:00:00Z).
        #[arg(long, requires = "messages")]
        since: Option<String>,
        /// With --messages: how many, at most.
        #[arg(long, requires = "messages", default_value_t = 20)]
        last: u32,
    },
    /// The site's distribution settings: packages and DPs at once, retries.
    #[command(subcommand)]
    Settings(admin::SettingsCmd),
    /// Download a package from a DP into a folder, verified, reusing what is there.
    Fetch(cmd::node::FetchArgs),
    /// Management tokens.
    #[command(subcommand)]
    Token(admin::TokenCmd),
    /// ConfigMgr schedule strings: decode and encode.
    #[command(subcommand)]
    Schedule(cmd::schedule::ScheduleCmd),
    /// Work directly on a content library: snapshot a folder, verify, export, collect garbage.
    #[command(subcommand)]
    Content(cmd::content::ContentCommand),
}

/// mimalloc instead of glibc's allocator: a DP serving small files allocates a few dozen
/// small objects per request on two threads, and glibc's arenas spent about a twentieth of the
/// serving CPU in `malloc`, `free` and their consolidation (bench/RESULTS.md, issue 18).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(
        cli.command,
        Command::Site(cmd::site::SiteCmd::Run(_))
            | Command::Up(_)
            | Command::Dp(admin::DpCmd::Run(_) | admin::DpCmd::Prestage { .. })
    );
    if daemon {
        // Everything a daemon creates (database, WAL, library chunks, job files) is its own:
        // 0600 files, 0700 folders, whatever the caller's umask.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
    let default = if daemon { "info" } else { "warn" };
    let filter = cli.log.as_deref().unwrap_or(default);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| default.into()))
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a daemon's log in a file keeps no escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Up(a) => cmd::node::up(a).map(|()| ExitCode::SUCCESS),
        Command::Down(a) => cmd::background::down(&a.data).map(|()| ExitCode::SUCCESS),
        Command::Fetch(a) => cmd::node::fetch(&cli.conn, a).map(|()| ExitCode::SUCCESS),
        Command::Site(c) => cmd::site::run(&cli.conn, c).map(|()| ExitCode::SUCCESS),
        Command::Package(c) => admin::package(&cli.conn, c).map(|()| ExitCode::SUCCESS),
        Command::Dp(c) => admin::dp(&cli.conn, c).map(|()| ExitCode::SUCCESS),
        Command::Group(c) => admin::group(&cli.conn, c).map(|()| ExitCode::SUCCESS),
        Command::Status {
            package,
            messages: true,
            dp,
            errors,
            since,
            last,
            ..
        } => cmd::status::messages(
            &cli.conn,
            &cmd::status::MessageFilter {
                package,
                dp,
                errors,
                since,
                last,
            },
        )
        .map(|()| ExitCode::SUCCESS),
        Command::Status { package, watch, .. } => {
            cmd::status::run(&cli.conn, package.as_deref(), watch).map(|()| ExitCode::SUCCESS)
        }
        Command::Settings(c) => admin::settings(&cli.conn, c).map(|()| ExitCode::SUCCESS),
        Command::Token(c) => admin::token(&cli.conn, c).map(|()| ExitCode::SUCCESS),
        Command::Schedule(c) => cmd::schedule::run(c, cli.conn.json).map(|()| ExitCode::SUCCESS),
        Command::Content(c) => cmd::content::run(c, cli.conn.json),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`pkgdist package list | head -1`): what it wanted it has.
        Err(e) if output::closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            output::error(&e);
            ExitCode::FAILURE
        }
    }
}
