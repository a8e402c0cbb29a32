//! `pkgdist schedule decode|encode`: ConfigMgr schedule strings, locally (the same code serves
//! `SMS_ScheduleMethods` on the site).

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use pkgdist_core::schedule::{ScheduleToken, read_from_string, write_to_string};
use serde_json::Value;

use crate::output;

#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// Decode an interval string (e.g. 1033BC7B10100010) into its tokens, as JSON.
    Decode { string: String },
    /// Encode tokens (a JSON object or array of SMS_ST_* objects with @odata.type) into a string.
    Encode { tokens: String },
}

pub fn run(cmd: ScheduleCmd, json: bool) -> Result<()> {
    match cmd {
        ScheduleCmd::Decode { string } => {
            let tokens = read_from_string(string.trim())?;
            let v: Vec<Value> = tokens.iter().map(|t| Value::Object(t.to_json())).collect();
            output::json(&Value::Array(v))
        }
        ScheduleCmd::Encode { tokens: text } => {
            let v: Value = serde_json::from_str(&text).context("the tokens are not valid JSON")?;
            let list = match v {
                Value::Array(a) => a,
                o @ Value::Object(_) => vec![o],
                _ => bail!("give a JSON object or an array of objects"),
            };
            let mut tokens = Vec::new();
            for (i, t) in list.iter().enumerate() {
                let Value::Object(m) = t else {
                    bail!("token {} is not a JSON object", i + 1)
                };
                tokens.push(ScheduleToken::from_json(m, i + 1)?);
            }
            let s = write_to_string(&tokens)?;
            if json {
                output::json(&serde_json::json!({"StringData": s}))
            } else {
                output::line(s)
            }
        }
    }
}
