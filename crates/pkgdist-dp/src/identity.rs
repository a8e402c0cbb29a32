//! Who this DP is to its site: `DIR/node.json` (0600), written before enrollment is attempted
//! (with the credential the DP made) and again once the site accepted it, so a DP that dies in
//! between retries with the same credential and the site recognises it.

use std::path::Path;

use pkgdist_proto::node::{ENROLL_PATH, EnrollRequest, EnrollResponse, HELLO_PATH, HelloRequest};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::DpError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub site_url: String,
    /// What the DP presents to its site.
    pub credential: String,
    /// BLAKE3 of what the site presents to the DP; `None` until enrolled.
    pub site_token_hash: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub nal_path: String,
    #[serde(default)]
    pub site_code: String,
    /// The URL the DP was last told to advertise (`--advertise-url`), kept so a later start
    /// without it does not advertise its bound address instead.
    #[serde(default)]
    pub advertise_url: Option<String>,
}

const FILE: &str = "node.json";

pub fn hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

impl Identity {
    pub fn enrolled(&self) -> bool {
        self.site_token_hash.is_some()
    }

    pub fn load(dir: &Path) -> Result<Option<Self>, DpError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| DpError::State(format!("{} is damaged: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DpError::io(&path, e)),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), DpError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| DpError::State(e.to_string()))?;
        write_private(&dir.join(FILE), &bytes)
    }

    /// A fresh identity for `site_url` with a new random credential.
    pub fn new(site_url: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            site_url: site_url.trim_end_matches('/').to_owned(),
            credential: format!("pkgdp_{hex}"),
            site_token_hash: None,
            name: String::new(),
            nal_path: String::new(),
            site_code: String::new(),
            advertise_url: None,
        }
    }

    /// Trades the enrollment token for standing credentials at the site.
    pub async fn enroll(&mut self, dir: &Path, token: &str, url: &str) -> Result<(), DpError> {
        self.save(dir)?;
        let http = reqwest::Client::new();
        let endpoint = format!("{}{ENROLL_PATH}", self.site_url);
        let resp = http
            .post(&endpoint)
            .json(&EnrollRequest {
                enrollment_token: token.to_owned(),
                credential: self.credential.clone(),
                url: url.to_owned(),
            })
            .send()
            .await
            .map_err(|e| DpError::Site(format!("cannot reach the site at {}: {e}", self.site_url)))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            return Err(DpError::Site(format!(
                "the site refused the enrollment (HTTP {status}): {}",
                pkgdist_proto::ErrorBody::message_of(&text)
            )));
        }
        let answer: EnrollResponse = resp
            .json()
            .await
            .map_err(|e| DpError::Site(format!("cannot read the site's enrollment answer: {e}")))?;
        self.site_token_hash = Some(hash(&answer.site_token));
        self.name = answer.name;
        self.nal_path = answer.nal_path;
        self.site_code = answer.site_code;
        self.save(dir)
    }

    /// Tells the site where the DP is now.
    pub async fn hello(&self, url: &str) -> Result<(), DpError> {
        let resp = reqwest::Client::new()
            .post(format!("{}{HELLO_PATH}", self.site_url))
            .bearer_auth(&self.credential)
            .json(&HelloRequest { url: url.to_owned() })
            .send()
            .await
            .map_err(|e| DpError::Site(format!("cannot reach the site at {}: {e}", self.site_url)))?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Err(DpError::Site(format!(
            "the site refused this DP (HTTP {status}): {}",
            pkgdist_proto::ErrorBody::message_of(&text)
        )))
    }
}

/// Writes a file readable only by its owner, atomically.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), DpError> {
    pkgdist_node::util::write_file(path, data, true).map_err(|e| DpError::io(path, e))
}
