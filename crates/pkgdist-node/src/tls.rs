//! TLS for every pkgdist daemon: the site's certificate authority, the certificates it issues,
//! and the rustls configurations of listeners and clients (rustls with aws-lc-rs, the one
//! crypto provider of the build).
//!
//! The PKI (docs/security.md tells operators the same):
//! - **A CA per site**, made on the site's first start: `DIR/tls/ca.pem`, its key
//!   `DIR/tls/ca-key.pem` (0600, never in the database). It signs the site's own certificate
//!   (issued at every start and kept in memory, for serving and for presenting to DPs) and
//!   one certificate for each DP and child site that enrolls, for a key the node made itself (it sends a certificate request;
//!   its private key never leaves it).
//! - **Roles in the certificate**: every certificate names its holder in a URI SAN
//!   ([`Role`]): `urn:pkgdist:site:P01`, `urn:pkgdist:dp:NAME`, `urn:pkgdist:child:C01`. A DP
//!   takes job requests only from a certificate naming its own site (a DP's certificate is
//!   signed by the same CA, so the chain alone would not tell them apart).
//! - **Clients check the role too** ([`Expect`]): the CLI takes only a site's certificate, a
//!   DP only its own site's (or, from a source, a DP's), so a node the CA certified cannot pass
//!   for the site even with a certificate for the site's host name.
//! - **Revocation without lists**: the site records the SHA-256 fingerprint of the certificate
//!   it issued at each enrollment, and accepts a node's requests only with that certificate.
//!   Removing the DP or child site deletes the record: its certificate is useless at once.
//! - **Pinning, not trust on first use**: an enrollment token carries the fingerprint of the
//!   CA certificate ([`EnrollmentToken`]). A new node fetches the CA over a connection it does
//!   not yet verify, refuses it unless its fingerprint is the pin, and verifies the site against
//!   it from then on.
//!
//! Keys are ECDSA P-256. Certificates are valid for [`LEAF_YEARS`] (nodes) and [`CA_YEARS`]
//! (the CA); nothing renews them yet.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up, or a certificate made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} holds no usable {what}: {detail}")]
    Pem {
        path: String,
        what: &'static str,
        detail: String,
    },
    #[error("cannot make or sign a certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot set up certificate checks: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("cannot set up an HTTPS client: {0}")]
    Client(#[source] reqwest::Error),
    #[error(
        "the site at {url} presents CA {found}, but the enrollment token pins {pinned}: this is not the site the token was made by (or the connection is intercepted); check the URL, or make a new token there"
    )]
    PinMismatch { url: String, found: String, pinned: String },
    #[error("cannot fetch the site's CA certificate from {url}: {detail}")]
    FetchCa { url: String, detail: String },
}

impl TlsError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The folder of a daemon's TLS files, inside its data folder.
pub const DIR: &str = "tls";
/// The CA certificate (public), in a site's `tls` folder and, once enrolled, a node's.
pub const CA_FILE: &str = "ca.pem";
/// The CA's private key (0600).
const CA_KEY_FILE: &str = "ca-key.pem";

/// Years a node's certificate is valid.
pub const LEAF_YEARS: i16 = 10;
/// Years the site's CA is valid.
pub const CA_YEARS: i16 = 30;

/// The crypto provider every TLS configuration uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The SHA-256 of a certificate (DER), in lowercase hex: what tokens pin and the site records.
pub fn fingerprint(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Who holds a certificate, as its URI SAN says (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A site, as it presents itself to its own DPs.
    Site(String),
    /// A DP, by name.
    Dp(String),
    /// A child site, as it presents itself to its parent.
    ChildSite(String),
}

impl Role {
    const PREFIX: &'static str = "urn:pkgdist:";

    fn uri(&self) -> String {
        let (kind, name) = match self {
            Role::Site(c) => ("site", c),
            Role::Dp(n) => ("dp", n),
            Role::ChildSite(c) => ("child", c),
        };
        format!("{}{kind}:{name}", Self::PREFIX)
    }

    fn parse(uri: &str) -> Option<Self> {
        let (kind, name) = uri.strip_prefix(Self::PREFIX)?.split_once(':')?;
        let name = name.to_owned();
        match kind {
            "site" => Some(Role::Site(name)),
            "dp" => Some(Role::Dp(name)),
            "child" => Some(Role::ChildSite(name)),
            _ => None,
        }
    }

    /// The roles a certificate (DER) names; none if it cannot be read.
    pub fn of(der: &[u8]) -> Vec<Role> {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return Vec::new();
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Vec::new();
        };
        san.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(u) => Role::parse(u),
                _ => None,
            })
            .collect()
    }
}

/// A private key and its certificate chain (leaf first), both PEM.
#[derive(Clone)]
pub struct Identity {
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("key_pem", &"<secret>")
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Reads `NAME.pem` and `NAME-key.pem` from `dir`, if both are there.
    pub fn load(dir: &Path, name: &str) -> Result<Option<Self>, TlsError> {
        let (cert, key) = Self::paths(dir, name);
        let (Some(chain_pem), Some(key_pem)) = (read_optional(&cert)?, read_optional(&key)?) else {
            return Ok(None);
        };
        Ok(Some(Self { chain_pem, key_pem }))
    }

    /// Writes `NAME-key.pem` (0600) and `NAME.pem` into `dir`, each complete or absent.
    pub fn save(&self, dir: &Path, name: &str) -> Result<(), TlsError> {
        private_folder(dir)?;
        let (cert, key) = Self::paths(dir, name);
        crate::util::write_file(&key, self.key_pem.as_bytes(), true).map_err(|e| TlsError::io(&key, e))?;
        crate::util::write_file(&cert, self.chain_pem.as_bytes(), true).map_err(|e| TlsError::io(&cert, e))
    }

    fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")))
    }

    /// The leaf certificate (DER).
    pub fn leaf(&self) -> Result<CertificateDer<'static>, TlsError> {
        certs(&self.chain_pem, "certificate")?
            .into_iter()
            .next()
            .ok_or_else(|| pem_error("certificate", "no certificate"))
    }
}

/// A new key and a certificate request for it, to send to the CA (the key stays here).
pub fn key_and_request(common_name: &str) -> Result<(KeyPair, String), TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key, csr))
}

/// A site's certificate authority (see the module documentation).
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("pin", &self.pin()).finish_non_exhaustive()
    }
}

impl Ca {
    /// The CA an operator gives (an intermediate of the company's PKI, say): its certificate
    /// (first in `cert_path`, which may go on with the chain above it) and its key. Nothing is
    /// made or written.
    pub fn open_given(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| TlsError::io(p, e));
        let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
        Self::from_pem(cert_pem, &key_pem, cert_path, key_path)
    }

    fn from_pem(cert_pem: String, key_pem: &str, cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| pem_at(key_path, "CA key", e.to_string()))?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| pem_at(cert_path, "CA certificate", e.to_string()))?;
        let cert_der = certs(&cert_pem, "CA certificate")?
            .into_iter()
            .next()
            .ok_or_else(|| pem_at(cert_path, "CA certificate", "no certificate".into()))?;
        Ok(Self {
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// Opens the CA in `dir` (a daemon's `tls` folder), making it on first use. The key is
    /// written before the certificate, so a crash in between leaves no certificate without
    /// its key (a new pair is made at the next start).
    pub fn open_or_create(dir: &Path, common_name: &str) -> Result<Self, TlsError> {
        private_folder(dir)?;
        let (cert_path, key_path) = (dir.join(CA_FILE), dir.join(CA_KEY_FILE));
        if let (Some(cert_pem), Some(key_pem)) = (read_optional(&cert_path)?, read_optional(&key_path)?) {
            return Self::from_pem(cert_pem, &key_pem, &cert_path, &key_path);
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, CA_YEARS);
        let cert = params.self_signed(&key)?;
        crate::util::write_file(&key_path, key.serialize_pem().as_bytes(), true)
            .map_err(|e| TlsError::io(&key_path, e))?;
        crate::util::write_file(&cert_path, cert.pem().as_bytes(), true).map_err(|e| TlsError::io(&cert_path, e))?;
        tracing::info!(path = %cert_path.display(), "made the site's certificate authority");
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM (and the chain above it, for a CA an operator gave).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The fingerprint enrollment tokens pin.
    pub fn pin(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// A certificate for `public_key`, valid for `names` (DNS names or IP addresses) and
    /// naming `role`, as a PEM chain (leaf, then this CA).
    pub fn issue(&self, public_key: &impl PublicKeyData, names: &[String], role: &Role) -> Result<String, TlsError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        let uri = role.uri().try_into()?;
        params.subject_alt_names.push(SanType::URI(uri));
        params.distinguished_name = name(&role.uri());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let mut serial = [0u8; 16];
        rand_bytes(&mut serial);
        serial[0] &= 0x7f; // a positive serial
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        validity(&mut params, LEAF_YEARS);
        let cert = params.signed_by(public_key, &self.issuer)?;
        Ok(format!("{}{}", cert.pem(), self.cert_pem))
    }

    /// A certificate for the key of a certificate request (PEM) a node sent; the names and
    /// role are the CA's choice, not the request's.
    pub fn sign_request(&self, csr_pem: &str, names: &[String], role: &Role) -> Result<String, TlsError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        self.issue(&csr.public_key, names, role)
    }

    /// A new key and its certificate, for this site's own use.
    pub fn issue_own(&self, names: &[String], role: &Role) -> Result<Identity, TlsError> {
        let key = KeyPair::generate()?;
        let chain_pem = self.issue(&key, names, role)?;
        Ok(Identity {
            chain_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

/// A listener's TLS configuration: serves `identity`; asks every client for a certificate
/// signed by one of `client_roots` but lets clients without one in (browsers, the CLI,
/// `pkgdist fetch`): routes that need a node's certificate check it themselves.
pub fn server_config(
    identity: &Identity,
    client_roots: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let mut roots = rustls::RootCertStore::empty();
    for r in client_roots {
        roots.add(r.clone())?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = certs(&identity.chain_pem, "certificate")?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| pem_error("private key", e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whom a client expects at the other end: the roles the server's certificate may name. The
/// CA alone would let any node it certified (a DP whose URL names the site's host, say) pass
/// for the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A site: the one of this code, or any (before its code is known: the CLI, enrollment).
    Site(Option<String>),
    /// Any DP.
    Dp,
    /// The site of this code, or any DP: a DP's sources (its site and other DPs).
    SiteOrDp(String),
    /// The one certificate of this SHA-256 (the one issued to a DP at its enrollment), and no
    /// other node of the CA: what the site talks to each DP enrolled over https with.
    Pinned(String),
}

impl Expect {
    fn admits(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| match (self, r) {
            (Expect::Site(None), Role::Site(_)) | (Expect::Dp | Expect::SiteOrDp(_), Role::Dp(_)) => true,
            (Expect::Site(Some(want)) | Expect::SiteOrDp(want), Role::Site(code)) => code == want,
            _ => false,
        })
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Site(None) => f.write_str("a pkgdist site"),
            Expect::Site(Some(code)) => write!(f, "site {code}"),
            Expect::Dp => f.write_str("a distribution point"),
            Expect::SiteOrDp(code) => write!(f, "site {code} or one of its distribution points"),
            Expect::Pinned(fp) => write!(f, "the certificate {fp}"),
        }
    }
}

/// The CA's checks (chain, names, validity), then the role the client expects.
#[derive(Debug)]
struct RoleVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expect: Expect,
}

impl rustls::client::danger::ServerCertVerifier for RoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let admitted = match &self.expect {
            Expect::Pinned(fp) => fingerprint(end_entity).eq_ignore_ascii_case(fp),
            expect => expect.admits(&Role::of(end_entity)),
        };
        if admitted {
            Ok(verified)
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate is from the right CA but is not one of {}",
                self.expect
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client that trusts only `ca_pem` (the site's CA), takes only a server whose certificate
/// names a role `expect` admits, and presents `identity` if given.
pub fn client_builder(
    ca_pem: &str,
    identity: Option<&Identity>,
    expect: Expect,
) -> Result<reqwest::ClientBuilder, TlsError> {
    let provider = provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem, "CA certificate")? {
        roots.add(c)?;
    }
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifier = Arc::new(RoleVerifier { inner, expect });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => {
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
                .map_err(|e| pem_error("private key", e.to_string()))?;
            builder.with_client_auth_cert(certs(&id.chain_pem, "certificate")?, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// The CA certificate the site at `base` serves on `path`, if its fingerprint is `pin`.
/// The connection is not verified (the CA is what would verify it): the pin is the check.
pub async fn fetch_pinned_ca(base: &str, path: &str, pin: &str) -> Result<String, TlsError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let failed = |detail: String| TlsError::FetchCa {
        url: url.clone(),
        detail,
    };
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(TlsError::Client)?;
    let resp = http.get(&url).send().await.map_err(|e| failed(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(failed(format!("HTTP {}", resp.status().as_u16())));
    }
    // Read at most 64 KiB: a certificate is far smaller, and the server is not trusted yet.
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| failed(e.to_string()))? {
        body.extend_from_slice(&chunk);
        if body.len() > 64 << 10 {
            return Err(failed("the answer is too large to be a certificate".into()));
        }
    }
    let pem = String::from_utf8(body).map_err(|_| failed("the answer is not PEM text".into()))?;
    let der = certs(&pem, "CA certificate")?
        .into_iter()
        .next()
        .ok_or_else(|| failed("the answer holds no certificate".into()))?;
    let found = fingerprint(&der);
    if !found.eq_ignore_ascii_case(pin) {
        return Err(TlsError::PinMismatch {
            url: base.to_owned(),
            found,
            pinned: pin.to_owned(),
        });
    }
    // Only the certificate the pin names is trusted: whatever else the answer holds (a chain
    // above an operator's CA, or certificates someone in the path added) is dropped.
    first_pem_block(&pem)
        .filter(|block| {
            certs(block, "CA certificate")
                .ok()
                .and_then(|c| c.into_iter().next())
                .as_ref()
                == Some(&der)
        })
        .ok_or_else(|| failed("the pinned certificate cannot be read on its own".into()))
}

/// The first `CERTIFICATE` block of a PEM text, with its armour.
fn first_pem_block(pem: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)?;
    let end = pem[start..].find(END)? + start + END.len();
    Some(format!("{}\n", &pem[start..end]))
}

/// An enrollment token: the one-time secret, and the fingerprint of the CA of the site that
/// made it, written `SECRET.PIN`. Tokens made before the site had a CA have no pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    pub secret: String,
    pub pin: Option<String>,
}

impl EnrollmentToken {
    /// Reads a token as `pkgdist dp add` (or `site add`) printed it.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        match s.rsplit_once('.') {
            Some((secret, pin)) if pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()) => Self {
                secret: secret.to_owned(),
                pin: Some(pin.to_ascii_lowercase()),
            },
            _ => Self {
                secret: s.to_owned(),
                pin: None,
            },
        }
    }
}

impl std::fmt::Display for EnrollmentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pin {
            Some(pin) => write!(f, "{}.{pin}", self.secret),
            None => f.write_str(&self.secret),
        }
    }
}

/// The certificates (DER) of a PEM text.
pub fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, e.to_string()))
}

fn pem_error(what: &'static str, detail: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: "the PEM text".into(),
        what,
        detail: detail.into(),
    }
}

fn pem_at(path: &Path, what: &'static str, detail: String) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        what,
        detail,
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, TlsError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TlsError::io(path, e)),
    }
}

fn private_folder(dir: &Path) -> Result<(), TlsError> {
    crate::util::private_dir(dir).map_err(|e| TlsError::io(dir, e))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// From a day ago (clocks differ, and time zones) for `years`.
fn validity(params: &mut CertificateParams, years: i16) {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let start = now.saturating_sub(jiff::SignedDuration::from_hours(25));
    let end = start.date().saturating_add(jiff::Span::new().years(years));
    let ymd = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(
            i32::from(d.year()),
            u8::try_from(d.month()).unwrap_or(1),
            u8::try_from(d.day()).unwrap_or(1),
        )
    };
    params.not_before = ymd(start.date());
    params.not_after = ymd(end);
}

fn rand_bytes(buf: &mut [u8]) {
    // aws-lc-rs's system random: the provider's own source.
    use aws_lc_rs::rand::SecureRandom as _;
    if aws_lc_rs::rand::SystemRandom::new().fill(buf).is_err() {
        // Unreachable in practice (the kernel's getrandom); a serial then only needs to differ.
        let t = jiff::Timestamp::now().as_nanosecond().to_le_bytes();
        for (b, t) in buf.iter_mut().zip(t.iter().cycle()) {
            *b = *t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_survives_a_restart_and_signs_requests_with_the_role_it_chooses() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::open_or_create(dir.path(), "pkgdist site CA P01").unwrap();
        let again = Ca::open_or_create(dir.path(), "ignored").unwrap();
        assert_eq!(ca.pin(), again.pin(), "the same CA after a restart");
        let (_key, csr) = key_and_request("dp1").unwrap();
        let chain = again
            .sign_request(&csr, &["127.0.0.1".into()], &Role::Dp("dp1".into()))
            .unwrap();
        let certs = certs(&chain, "chain").unwrap();
        assert_eq!(certs.len(), 2, "leaf then CA");
        assert_eq!(fingerprint(&certs[1]), ca.pin());
        assert_eq!(Role::of(&certs[0]), vec![Role::Dp("dp1".into())]);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn only_the_pinned_certificate_is_kept_of_a_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::open_or_create(&dir.path().join("a"), "A").unwrap();
        let other = Ca::open_or_create(&dir.path().join("b"), "B").unwrap();
        let bundle = format!("{}{}", ca.cert_pem(), other.cert_pem());
        let first = first_pem_block(&bundle).unwrap();
        let kept = certs(&first, "first").unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(fingerprint(&kept[0]), ca.pin());
        assert_eq!(first_pem_block("no certificate"), None);
    }

    #[test]
    fn tokens_carry_their_pin_and_older_ones_none() {
        let pin = "ab".repeat(32);
        let t = EnrollmentToken::parse(&format!("pkge_123.{pin}"));
        assert_eq!(t.secret, "pkge_123");
        assert_eq!(t.pin.as_deref(), Some(pin.as_str()));
        assert_eq!(EnrollmentToken::parse(&t.to_string()), t);
        assert_eq!(EnrollmentToken::parse("pkge_123").pin, None);
        assert_eq!(EnrollmentToken::parse("pkge_123.abc").secret, "pkge_123.abc");
    }

    #[test]
    fn roles_round_trip_and_strangers_are_none() {
        for r in [
            Role::Site("P01".into()),
            Role::Dp("dp-1.example".into()),
            Role::ChildSite("C01".into()),
        ] {
            assert_eq!(Role::parse(&r.uri()), Some(r));
        }
        assert_eq!(Role::parse("urn:other:site:P01"), None);
        assert!(Role::of(b"not a certificate").is_empty());
    }
}

#[cfg(test)]
mod expect_tests {
    use super::*;

    #[test]
    fn clients_take_only_the_role_they_expect() {
        let site = |c: &str| vec![Role::Site(c.into())];
        let dp = vec![Role::Dp("dp1".into())];
        let child = vec![Role::ChildSite("C01".into())];
        assert!(Expect::Site(None).admits(&site("P01")));
        assert!(!Expect::Site(None).admits(&dp), "a DP passing for a site");
        assert!(!Expect::Site(None).admits(&child), "a child passing for its parent");
        assert!(Expect::Site(Some("P01".into())).admits(&site("P01")));
        assert!(!Expect::Site(Some("P01".into())).admits(&site("P02")));
        assert!(Expect::SiteOrDp("P01".into()).admits(&dp));
        assert!(!Expect::SiteOrDp("P01".into()).admits(&site("P02")));
        assert!(Expect::Dp.admits(&dp) && !Expect::Dp.admits(&site("P01")));
        assert!(!Expect::Dp.admits(&[]), "a certificate naming no role");
    }
}
