//! `pkgdist status`: where content is, at a glance. With a package: its state on each DP, with
//! a progress bar for running transfers, retries left and the next retry time; without: one
//! line per package (SMS_PackageStatusDetailSummarizer) and every DP row that is not
//! INSTALLED. `--watch` redraws every second until nothing is in progress, or only rows that
//! wait for an administrator are (their message says what they wait for).

use std::time::Duration;

use anyhow::Result;
use pkgdist_core::classes::DpState;
use pkgdist_proto::Client;
use pkgdist_proto::classes::{Package, PackageStatusDetailSummarizer, PackageStatusDistPointsSummarizer};
use pkgdist_proto::client::key;
use serde_json::{Value, json};

use crate::cmd::admin::{Conn, quote, runtime};
use crate::output;

pub fn run(conn: &Conn, package: Option<&str>, watch: bool) -> Result<()> {
    runtime()?.block_on(async {
        let c = conn.client()?;
        let mut first = true;
        loop {
            let view = view(&c, package).await?;
            if conn.json {
                if watch {
                    // One object per line, so a script can follow the frames.
                    output::line(serde_json::to_string(&view.json)?)?;
                } else {
                    output::json(&view.json)?;
                }
            } else {
                if watch && !first && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    output::clear_screen()?; // for the next frame
                }
                output::text(&view.text)?;
            }
            first = false;
            if !watch || !view.in_progress {
                return Ok(());
            }
            if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                output::line("")?;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Which status messages `status --messages` shows.
#[derive(Debug)]
pub struct MessageFilter {
    pub package: Option<String>,
    /// A DP's name.
    pub dp: Option<String>,
    pub errors: bool,
    /// An ISO time; messages at or after it.
    pub since: Option<String>,
    pub last: u32,
}

/// `pkgdist status --messages`: the status-message history, newest first, filtered and paged
/// by the site (`SMS_DistributionDPStatus`), never read whole.
pub fn messages(conn: &Conn, f: &MessageFilter) -> Result<()> {
    let mut clauses = Vec::new();
    if let Some(p) = &f.package {
        clauses.push(format!("PackageID eq {}", quote(p)));
    }
    if let Some(d) = &f.dp {
        clauses.push(format!("Name eq {}", quote(d)));
    }
    if f.errors {
        clauses.push("MessageState eq 3".to_owned());
    }
    if let Some(t) = &f.since {
        let t: jiff::Timestamp = t
            .parse()
            .map_err(|e| anyhow::anyhow!("--since {t:?}: give a time such as 2026-12-04T08:00:00Z ({e})"))?;
        clauses.push(format!("LastUpdateDate ge {}", t.strftime("%Y-%m-%dT%H:%M:%SZ")));
    }
    let filter = clauses.join(" and ");
    let top = f.last.to_string();
    let mut query = vec![("$orderby", "ID desc"), ("$top", top.as_str())];
    if !filter.is_empty() {
        query.push(("$filter", &filter));
    }
    runtime()?.block_on(async {
        let c = conn.client()?;
        let rows = c.list("SMS_DistributionDPStatus", &query).await?;
        if conn.json {
            return output::json(&rows);
        }
        let mut t = output::Table::new(&[
            ("TIME", false),
            ("PACKAGE", false),
            ("DP", false),
            ("ID", true),
            ("STATE", false),
            ("MESSAGE", false),
        ]);
        let text =
            |o: &serde_json::Map<String, Value>, k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        for o in &rows {
            let state = match o.get("MessageState").and_then(Value::as_i64) {
                Some(1) => "success",
                Some(2) => "in progress",
                Some(3) => "error",
                _ => "?",
            };
            t.row(vec![
                text(o, "LastUpdateDate"),
                text(o, "PackageID"),
                text(o, "Name"),
                o.get("MessageID").map(Value::to_string).unwrap_or_default(),
                state.to_owned(),
                text(o, "Description"),
            ]);
        }
        if t.is_empty() {
            return output::line("no status message matches");
        }
        t.print()
    })
}

struct View {
    text: String,
    json: Value,
    /// Some DP row is still on its way somewhere.
    in_progress: bool,
}

fn busy(st: Option<DpState>) -> bool {
    !matches!(
        st,
        Some(DpState::Installed | DpState::InstallFailed | DpState::RemovalFailed)
    )
}

/// A DP's NAL path and name, all `pkgdist status` needs of it.
#[derive(serde::Deserialize)]
#[serde(default)]
#[derive(Default)]
struct DpName {
    #[serde(rename = "NALPath")]
    nal_path: String,
    #[serde(rename = "Name")]
    name: String,
}

async fn view(c: &Client, package: Option<&str>) -> Result<View> {
    let dps: Vec<DpName> = c
        .list_as("SMS_DistributionPointInfo", &[("$select", "NALPath,Name")])
        .await?;
    let name_of = |nal: &str| {
        dps.iter()
            .find(|d| d.nal_path == nal)
            .map_or(nal, |d| d.name.as_str())
            .to_owned()
    };
    let mut text = String::new();
    let (rows, json): (Vec<PackageStatusDistPointsSummarizer>, Value) = match package {
        Some(id) => {
            let p: Package = c.get_as("SMS_PackageBaseclass", &key(&[("PackageID", id)])).await?;
            let filter = format!("PackageID eq {}", quote(id));
            let rows: Vec<PackageStatusDistPointsSummarizer> = c
                .list_as(
                    "SMS_PackageStatusDistPointsSummarizer",
                    &[("$filter", &filter), ("$orderby", "ServerNALPath")],
                )
                .await?;
            text.push_str(&format!(
                "{id} {}  SourceVersion {}  Priority {}\n",
                p.name, p.source_version, p.priority
            ));
            let json = json!({"package": p, "dps": rows});
            (rows, json)
        }
        None => {
            let summary: Vec<PackageStatusDetailSummarizer> =
                c.list_as("SMS_PackageStatusDetailSummarizer", &[]).await?;
            // One line per package and site: a package's DPs below are counted at their site.
            let mut t = output::Table::new(&[
                ("PACKAGE", false),
                ("SITE", false),
                ("VERSION", true),
                ("TARGETED", true),
                ("INSTALLED", true),
                ("RETRYING", true),
                ("FAILED", true),
                ("NAME", false),
            ]);
            for p in &summary {
                t.row(vec![
                    p.package_id.clone(),
                    p.site_code.clone(),
                    p.source_version.to_string(),
                    p.targeted.to_string(),
                    p.installed.to_string(),
                    p.retrying.to_string(),
                    p.failed.to_string(),
                    p.name.clone(),
                ]);
            }
            text.push_str(&t.render());
            let rows: Vec<PackageStatusDistPointsSummarizer> = c
                .list_as(
                    "SMS_PackageStatusDistPointsSummarizer",
                    &[("$filter", "State ne 0"), ("$orderby", "PackageID")],
                )
                .await?;
            text.push('\n');
            if rows.is_empty() {
                text.push_str("every package is INSTALLED on every DP it targets\n");
            }
            let json = json!({"packages": summary, "not_installed": rows});
            (rows, json)
        }
    };
    let mut t = output::Table::new(&[
        ("PACKAGE", false),
        ("DP", false),
        ("STATE", false),
        ("VERSION", true),
        ("PROGRESS", false),
        ("RETRIES", false),
        ("LAST MESSAGE", false),
    ]);
    let mut in_progress = false;
    let mut waiting = 0;
    for r in &rows {
        let st = r.dp_state();
        // A row that waits for someone to act (its message says what) is not on its way:
        // `--watch` would wait for it for ever.
        let stuck = !r.waits_for.is_empty();
        waiting += usize::from(busy(st) && stuck);
        in_progress |= busy(st) && !stuck;
        let percent = u64::try_from(r.percent_complete).unwrap_or(0).min(100);
        let progress = match st {
            Some(DpState::InstallPending | DpState::InstallRetrying | DpState::ContentUpdating) => format!(
                "{} {:>3}% {}",
                bar(percent),
                percent,
                output::bytes(u64::try_from(r.bytes_received).unwrap_or(0))
            ),
            Some(DpState::Installed) => format!("{} 100%", bar(100)),
            _ => String::new(),
        };
        let retries = match st {
            Some(DpState::InstallRetrying | DpState::RemovalRetrying) => format!(
                "{} left, next {}",
                r.retries_remaining,
                r.next_retry.as_deref().unwrap_or("-")
            ),
            _ => String::new(),
        };
        t.row(vec![
            r.package_id.clone(),
            name_of(&r.server_nal_path),
            st.map_or("?", DpState::name).to_owned(),
            format!("{}/{}", r.source_version, r.target_version),
            progress,
            retries,
            r.last_message.clone(),
        ]);
    }
    if !t.is_empty() {
        text.push_str(&t.render());
    }
    if waiting > 0 && !in_progress {
        text.push_str(&format!(
            "{waiting} row(s) wait for something only an administrator can do: see their LAST MESSAGE\n"
        ));
    }
    Ok(View {
        text,
        json,
        in_progress,
    })
}

fn bar(percent: u64) -> String {
    let filled = usize::try_from(percent / 10).unwrap_or(10).min(10);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(10 - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_by_tenths() {
        assert_eq!(bar(0), "[----------]");
        assert_eq!(bar(55), "[#####-----]");
        assert_eq!(bar(100), "[##########]");
    }
}
