//! Who this DP is to its site: `DIR/node.json` (0600), written before enrollment is attempted
//! (with the credential the DP made) and again once the site accepted it, so a DP that dies in
//! between retries with the same credential and the site recognises it.

use std::path::Path;

use pkgdist_proto::node::{CA_PATH, ENROLL_PATH, EnrollRequest, EnrollResponse, HELLO_PATH, HelloRequest};
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
    /// Enrolled over https: the DP holds the site's CA (`tls/ca.pem`) and a certificate from
    /// it (`tls/dp.pem`, key `tls/dp-key.pem`), serves TLS, and talks to its site with them.
    #[serde(default)]
    pub tls: bool,
}

/// The name of the DP's certificate files in its `tls` folder.
const CERT_NAME: &str = "dp";

/// What a DP enrolled over https holds: the site's CA and its own certificate.
#[derive(Debug, Clone)]
pub struct Tls {
    pub ca_pem: String,
    pub identity: pkgdist_node::tls::Identity,
}

impl Tls {
    /// Reads the DP's TLS files, which an identity enrolled over https must have.
    pub fn load(dir: &Path) -> Result<Self, DpError> {
        let tls_dir = dir.join(pkgdist_node::tls::DIR);
        let missing = || {
            DpError::State(format!(
                "{} lacks the DP's certificate or the site's CA: restore them from a backup, or remove the DP at the site, add it again and start with a new --data folder",
                tls_dir.display()
            ))
        };
        let ca_path = tls_dir.join(pkgdist_node::tls::CA_FILE);
        let ca_pem = std::fs::read_to_string(&ca_path).map_err(|_| missing())?;
        let identity = pkgdist_node::tls::Identity::load(&tls_dir, CERT_NAME)
            .map_err(|e| DpError::State(e.to_string()))?
            .ok_or_else(missing)?;
        Ok(Self { ca_pem, identity })
    }

    /// A client that trusts only the site's CA, takes only the site of `site_code` or a DP
    /// (its sources), and presents the DP's certificate.
    pub fn client(&self, site_code: &str) -> Result<reqwest::ClientBuilder, DpError> {
        let expect = pkgdist_node::tls::Expect::SiteOrDp(site_code.to_owned());
        pkgdist_node::tls::client_builder(&self.ca_pem, Some(&self.identity), expect)
            .map_err(|e| DpError::Config(e.to_string()))
    }
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
            tls: false,
        }
    }

    /// Whether the site is reached over https.
    pub fn site_is_https(&self) -> bool {
        self.site_url.starts_with("https://")
    }

    /// Trades the enrollment token for standing credentials at the site. Over https, the site
    /// is first checked against the CA the token pins, and the DP asks for a certificate for
    /// a key it makes (kept in `tls/`).
    pub async fn enroll(&mut self, dir: &Path, token: &str, url: &str) -> Result<(), DpError> {
        self.save(dir)?;
        let parsed = pkgdist_node::tls::EnrollmentToken::parse(token);
        let (http, csr) = if self.site_is_https() {
            let pin = parsed.pin.as_deref().ok_or_else(|| {
                DpError::Config(
                    "the enrollment token carries no CA pin, so the site at an https:// URL cannot be checked: make a new token with `pkgdist dp add` (a site of this version adds the pin)"
                        .into(),
                )
            })?;
            let ca_pem = pkgdist_node::tls::fetch_pinned_ca(&self.site_url, CA_PATH, pin)
                .await
                .map_err(|e| DpError::Site(e.to_string()))?;
            let (key, csr) =
                pkgdist_node::tls::key_and_request("pkgdist DP").map_err(|e| DpError::Config(e.to_string()))?;
            let tls_dir = dir.join(pkgdist_node::tls::DIR);
            pkgdist_node::util::private_dir(&tls_dir).map_err(|e| DpError::io(&tls_dir, e))?;
            write_private(&tls_dir.join(pkgdist_node::tls::CA_FILE), ca_pem.as_bytes())?;
            // The key is kept now; the certificate joins it once the site answers.
            write_private(
                &tls_dir.join(format!("{CERT_NAME}-key.pem")),
                key.serialize_pem().as_bytes(),
            )?;
            // The site's code is learnt from its answer: any site of the pinned CA until then.
            let http = pkgdist_node::tls::client_builder(&ca_pem, None, pkgdist_node::tls::Expect::Site(None))
                .and_then(|b| b.build().map_err(pkgdist_node::tls::TlsError::Client))
                .map_err(|e| DpError::Config(e.to_string()))?;
            (http, Some(csr))
        } else {
            (reqwest::Client::new(), None)
        };
        let endpoint = format!("{}{ENROLL_PATH}", self.site_url);
        let resp = http
            .post(&endpoint)
            .json(&EnrollRequest {
                enrollment_token: token.to_owned(),
                credential: self.credential.clone(),
                url: url.to_owned(),
                csr: csr.clone(),
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
        if csr.is_some() {
            let chain = answer
                .certificate
                .ok_or_else(|| DpError::Site("the site enrolled this DP but sent no certificate for it".into()))?;
            let tls_dir = dir.join(pkgdist_node::tls::DIR);
            write_private(&tls_dir.join(format!("{CERT_NAME}.pem")), chain.as_bytes())?;
            self.tls = true;
        }
        self.site_token_hash = Some(hash(&answer.site_token));
        self.name = answer.name;
        self.nal_path = answer.nal_path;
        self.site_code = answer.site_code;
        self.save(dir)
    }

    /// The client this DP talks to its site with: over https, trusting only the site's CA
    /// and presenting the DP's certificate.
    pub fn site_client(&self, dir: &Path) -> Result<reqwest::Client, DpError> {
        let builder = if self.tls {
            Tls::load(dir)?.client(&self.site_code)?
        } else {
            reqwest::Client::builder()
        };
        builder
            .build()
            .map_err(|e| DpError::Config(format!("cannot set up a client: {e}")))
    }

    /// Tells the site where the DP is now.
    pub async fn hello(&self, http: &reqwest::Client, url: &str) -> Result<(), DpError> {
        let resp = http
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
