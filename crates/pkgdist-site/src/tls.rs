//! The site's TLS: its CA, the certificate it serves and presents to its DPs, and the
//! certificates it issues to DPs that enroll (`pkgdist_node::tls` has the PKI's rules).
//!
//! The site's own certificate is issued afresh at every start, in memory only, for the names
//! in force then (`[tls] names`, the listen address, the host name): DPs and clients trust the
//! CA, not a certificate, so nothing else needs to change when the names do.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use pkgdist_node::tls::{Ca, Identity, Role};

use crate::config::TlsSettings;
use crate::error::SiteError;

/// What the site needs to speak TLS and to issue certificates.
#[derive(Debug)]
pub struct SiteTls {
    pub ca: Ca,
    /// The names the site's certificate is for.
    pub names: Vec<String>,
    /// What the site serves and presents to its DPs (role `Site`).
    pub identity: Identity,
    pub server: Arc<rustls::ServerConfig>,
    pub allow_plain_http: bool,
}

impl SiteTls {
    /// Opens the CA in `DIR/tls` (made on first start) and issues the site's certificate for
    /// `listen`'s address and `settings.names`.
    pub fn open(dir: &Path, site_code: &str, listen: &str, settings: &TlsSettings) -> Result<Self, SiteError> {
        let ca = match (&settings.ca_cert, &settings.ca_key) {
            (Some(cert), Some(key)) => Ca::open_given(cert, key)?,
            (None, None) => Ca::open_or_create(
                &dir.join(pkgdist_node::tls::DIR),
                &format!("pkgdist site CA {site_code}"),
            )?,
            _ => {
                return Err(SiteError::Config(
                    "[tls] ca-cert and ca-key go together: give both, or neither for the site's own CA".into(),
                ));
            }
        };
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(str::to_owned).to_vec();
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            names.push(host.trim().to_owned());
        }
        if let Ok(addr) = listen.parse::<SocketAddr>()
            && !addr.ip().is_unspecified()
        {
            names.push(addr.ip().to_string());
        }
        names.extend(settings.names.iter().cloned());
        names.retain(|n| !n.is_empty());
        names.sort();
        names.dedup();
        let identity = ca.issue_own(&names, &Role::Site(site_code.to_owned()))?;
        let server = pkgdist_node::tls::server_config(&identity, std::slice::from_ref(ca.cert_der()))?;
        let tls = Self {
            ca,
            names,
            identity,
            server,
            allow_plain_http: settings.allow_plain_http,
        };
        // Set up once here, so what the distribution manager needs cannot fail later.
        tls.client()?
            .build()
            .map_err(|e| SiteError::Config(format!("cannot set up TLS to DPs: {e}")))?;
        Ok(tls)
    }

    /// How the listener bound at `addr` speaks: TLS always, plain HTTP on loopback or where
    /// allowed (with a warning off loopback).
    pub fn transport(&self, addr: SocketAddr) -> pkgdist_node::listen::Transport {
        let t = pkgdist_node::listen::Transport::tls(self.server.clone(), addr, self.allow_plain_http);
        if self.allow_plain_http && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "plain HTTP is allowed off loopback ([tls] allow-plain-http): tokens cross the network readable");
        }
        t
    }

    /// An HTTP client that trusts the site's CA only, takes only DPs, and presents the
    /// site's certificate: what the site talks to its DPs with.
    pub fn client(&self) -> Result<reqwest::ClientBuilder, SiteError> {
        Ok(pkgdist_node::tls::client_builder(
            self.ca.cert_pem(),
            Some(&self.identity),
            pkgdist_node::tls::Expect::Dp,
        )?)
    }

    /// [`SiteTls::client`] taking only the certificate whose SHA-256 is `fingerprint` (the one
    /// issued to a DP): no other DP of the CA can pass for that DP.
    pub fn client_pinned(&self, fingerprint: &str) -> Result<reqwest::ClientBuilder, SiteError> {
        Ok(pkgdist_node::tls::client_builder(
            self.ca.cert_pem(),
            Some(&self.identity),
            pkgdist_node::tls::Expect::Pinned(fingerprint.to_owned()),
        )?)
    }

    /// The enrollment token to hand out for `secret`: pinned to this site's CA.
    pub fn token(&self, secret: String) -> String {
        pkgdist_node::tls::EnrollmentToken {
            secret,
            pin: Some(self.ca.pin()),
        }
        .to_string()
    }
}

/// Whether `req` comes with the node certificate whose fingerprint the site recorded
/// (`want`); a node that was issued none (it enrolled over http) needs none.
pub fn presents(req: &axum::extract::Request, want: Option<&str>) -> Result<(), Option<String>> {
    let Some(want) = want else {
        return Ok(());
    };
    let presented = req
        .extensions()
        .get::<pkgdist_node::listen::TlsConnection>()
        .and_then(|t| t.peer.as_ref())
        .map(|c| pkgdist_node::tls::fingerprint(c));
    if presented.as_deref() == Some(want) {
        Ok(())
    } else {
        Err(presented)
    }
}

/// The certificate for a node enrolling with `csr` (PEM) from `url`, as `role`, and its
/// fingerprint for the site to record: only over TLS (`over_tls`), where the site has a CA.
pub fn issue_for_enrollment(
    site: Option<&SiteTls>,
    over_tls: bool,
    csr: &str,
    url: &str,
    role: &Role,
) -> Result<(String, String), crate::error::ApiError> {
    use crate::error::ApiError;
    use pkgdist_core::errors::ErrorKind;
    let Some(site) = site.filter(|_| over_tls) else {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "a certificate is issued only to a node enrolling over https: use the site's https:// URL",
        ));
    };
    let host: Vec<String> = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        })
        .into_iter()
        .collect();
    // A node's certificate never names the site (on another machine than the node): with it,
    // a node in the path could pass for the site to clients that check names only.
    let loopback = |h: &str| h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if let Some(h) = host.iter().find(|h| site.names.contains(*h) && !loopback(h)) {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!("{h} is one of the site's own names: a node's URL must name the node's host"),
        ));
    }
    let chain = site
        .ca
        .sign_request(csr, &host, role)
        .map_err(|e| ApiError::new(ErrorKind::InvalidValue, format!("csr: {e}")))?;
    let leaf = pkgdist_node::tls::certs(&chain, "certificate")
        .ok()
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| ApiError::internal("the certificate just issued cannot be read"))?;
    Ok((chain, pkgdist_node::tls::fingerprint(&leaf)))
}
