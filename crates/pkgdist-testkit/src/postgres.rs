//! A throwaway PostgreSQL server for tests: `initdb` into a temp folder, listening on
//! 127.0.0.1 only, stopped and deleted on drop. Uses Debian's `postgresql` package
//! (`/usr/lib/postgresql/*/bin`); `.ci/run` installs it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

#[derive(Debug)]
pub struct TempPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

fn find_bin() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|b| b.join("initdb").exists())
        .context("PostgreSQL server binaries not found under /usr/lib/postgresql; apt-get install postgresql")
}

impl TempPostgres {
    /// Starts a server with a database `pkgdist` that user `pkgdist` may use without a password.
    pub fn start() -> Result<Self> {
        let bin = find_bin()?;
        let dir = tempfile::TempDir::new()?;
        // PostgreSQL refuses to run as root: run it as the `postgres` user the package creates.
        let as_postgres_user = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        if as_postgres_user {
            let ok = Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()?
                .success();
            if !ok {
                bail!("cannot hand {} to the postgres user", dir.path().display());
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let pg = Self {
            dir,
            bin,
            port,
            as_postgres_user,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "-U", "pkgdist", "--auth=trust", "-E", "UTF8", "--no-sync"],
        )?;
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
            pg.dir.path().display()
        );
        pg.run(
            "pg_ctl",
            &["-D", &data, "-o", &opts, "-w", "-l", &format!("{data}.log"), "start"],
        )?;
        let ok = Command::new(pg.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "pkgdist", "pkgdist"])
            .stdout(Stdio::null())
            .status()?
            .success();
        if !ok {
            bail!("createdb failed (see {data}.log)");
        }
        Ok(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://pkgdist@127.0.0.1:{}/pkgdist", self.port)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(Path::new("/"))
            .output()
            .with_context(|| format!("running {tool}"))?;
        if !out.status.success() {
            bail!("{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}
