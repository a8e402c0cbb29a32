//! `pkgdist status`: where content is, at a glance. With a package: its state on each DP, with
//! a progress bar for running transfers, retries left and the next retry time; without: one
//! line per package (SMS_PackageStatusDetailSummarizer) and every DP row that is not
//! INSTALLED. `--watch` redraws every second until nothing is in progress.

use std::time::Duration;

use anyhow::Result;
use pkgdist_core::classes::DpState;
use pkgdist_proto::Client;
use pkgdist_proto::client::key;
use serde_json::{Value, json};

use crate::cmd::admin::{Conn, quote, runtime, s};
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
                    output::text("\x1b[H\x1b[2J")?; // clear the screen for the next frame
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

struct View {
    text: String,
    json: Value,
    /// Some DP row is still on its way somewhere.
    in_progress: bool,
}

fn state_of(r: &Value) -> Option<DpState> {
    r["State"]
        .as_u64()
        .and_then(|c| u32::try_from(c).ok())
        .and_then(DpState::from_code)
}

fn busy(st: Option<DpState>) -> bool {
    !matches!(
        st,
        Some(DpState::Installed | DpState::InstallFailed | DpState::RemovalFailed)
    )
}

async fn view(c: &Client, package: Option<&str>) -> Result<View> {
    let dps = c
        .list("SMS_DistributionPointInfo", &[("$select", "NALPath,Name")])
        .await?;
    let name_of = |nal: &str| {
        dps.iter()
            .find(|d| d.get("NALPath") == Some(&json!(nal)))
            .and_then(|d| d.get("Name").and_then(Value::as_str))
            .unwrap_or(nal)
            .to_owned()
    };
    let mut text = String::new();
    let (rows, json) = match package {
        Some(id) => {
            let p = c.get("SMS_PackageBaseclass", &key(&[("PackageID", id)])).await?;
            let filter = format!("PackageID eq {}", quote(id));
            let rows = c
                .list(
                    "SMS_PackageStatusDistPointsSummarizer",
                    &[("$filter", &filter), ("$orderby", "ServerNALPath")],
                )
                .await?;
            let pv = Value::Object(p.clone());
            text.push_str(&format!(
                "{id} {}  SourceVersion {}  Priority {}\n",
                s(&pv, "Name"),
                pv["SourceVersion"],
                pv["Priority"]
            ));
            (rows.clone(), json!({"package": p, "dps": rows}))
        }
        None => {
            let summary = c.list("SMS_PackageStatusDetailSummarizer", &[]).await?;
            text.push_str(&format!(
                "{:<10} {:<24} {:>7} {:>8} {:>9} {:>8} {:>6}\n",
                "PACKAGE", "NAME", "VERSION", "TARGETED", "INSTALLED", "RETRYING", "FAILED"
            ));
            for p in summary.iter().cloned().map(Value::Object) {
                text.push_str(&format!(
                    "{:<10} {:<24} {:>7} {:>8} {:>9} {:>8} {:>6}\n",
                    p["PackageID"].as_str().unwrap_or_default(),
                    clip(p["Name"].as_str().unwrap_or_default(), 24),
                    p["SourceVersion"],
                    p["Targeted"],
                    p["Installed"],
                    p["Retrying"],
                    p["Failed"]
                ));
            }
            let rows: Vec<_> = c
                .list(
                    "SMS_PackageStatusDistPointsSummarizer",
                    &[("$filter", "State ne 0"), ("$orderby", "PackageID")],
                )
                .await?;
            text.push('\n');
            if rows.is_empty() {
                text.push_str("every package is INSTALLED on every DP it targets\n");
            }
            (rows.clone(), json!({"packages": summary, "not_installed": rows}))
        }
    };
    if !rows.is_empty() {
        text.push_str(&format!(
            "{:<10} {:<16} {:<18} {:>7}  {:<28} {:>7}  {}\n",
            "PACKAGE", "DP", "STATE", "VERSION", "PROGRESS", "RETRIES", "LAST MESSAGE"
        ));
    }
    let mut in_progress = false;
    // As values, so a property an older site does not send reads as null, not a panic.
    let rows: Vec<Value> = rows.into_iter().map(Value::Object).collect();
    for r in &rows {
        let st = state_of(r);
        in_progress |= busy(st);
        let percent = r["PercentComplete"].as_u64().unwrap_or(0).min(100);
        let progress = match st {
            Some(DpState::InstallPending | DpState::InstallRetrying | DpState::ContentUpdating) => format!(
                "{} {:>3}% {}",
                bar(percent),
                percent,
                output::bytes(r["BytesReceived"].as_u64().unwrap_or(0))
            ),
            Some(DpState::Installed) => format!("{} 100%", bar(100)),
            _ => String::new(),
        };
        let retries = match st {
            Some(DpState::InstallRetrying | DpState::RemovalRetrying) => format!(
                "{} left, next {}",
                r["RetriesRemaining"],
                r["NextRetry"].as_str().unwrap_or("-")
            ),
            _ => String::new(),
        };
        text.push_str(&format!(
            "{:<10} {:<16} {:<18} {:>7}  {:<28} {:>7}  {}\n",
            r["PackageID"].as_str().unwrap_or_default(),
            clip(&name_of(r["ServerNALPath"].as_str().unwrap_or_default()), 16),
            st.map_or("?", DpState::name),
            format!("{}/{}", r["SourceVersion"], r["TargetVersion"]),
            progress,
            retries,
            r["LastMessage"].as_str().unwrap_or_default()
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

fn clip(v: &str, n: usize) -> String {
    if v.chars().count() <= n {
        v.to_owned()
    } else {
        let mut out: String = v.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_by_tenths() {
        assert_eq!(bar(0), "[----------]");
        assert_eq!(bar(55), "[#####-----]");
        assert_eq!(bar(100), "[##########]");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
