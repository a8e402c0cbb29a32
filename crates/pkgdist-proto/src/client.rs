//! A typed client of the management API.

use serde_json::{Map, Value};

use crate::wire::{ErrorBody, ListResponse};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The site could not be reached. The message names the URL and the root cause only
    /// (not reqwest's five layers of wrapping), and says what to do.
    #[error(
        "cannot reach the site at {url} ({}): is it running? Start it with `pkgdist up` or `pkgdist site run`, or give the right --site URL (PKGDIST_SITE)",
        root_cause(cause)
    )]
    Connect { url: String, cause: reqwest::Error },
    /// An https:// site could not be reached by a client given no CA to check it against
    /// (the site's own CA is not among the system's).
    #[error(
        "cannot reach the site at {url} ({}): is it running? Over https the site is checked against its CA: give --ca FILE (PKGDIST_CA), the tls/ca.pem of the site's data folder",
        root_cause(cause)
    )]
    ConnectUntrusted { url: String, cause: reqwest::Error },
    /// The site answered, but its answer could not be read whole.
    #[error("the answer of the site at {url} could not be read ({})", root_cause(cause))]
    Read { url: String, cause: reqwest::Error },
    /// The HTTP client could not be set up (the system's TLS roots, say).
    #[error("cannot set up an HTTP client: {0}")]
    Setup(reqwest::Error),
    /// The site answered with an error body.
    #[error("{} (HTTP {status}, ReturnValue {}, {})", body.error.message, body.ReturnValue, body.error.code)]
    Api { status: u16, body: Box<ErrorBody> },
    #[error("unexpected answer from the site (HTTP {status}): {text}")]
    Unexpected { status: u16, text: String },
    #[error("invalid site URL {0:?}: give it as http://HOST:PORT (or https://)")]
    Url(String),
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The innermost cause of an error: for a connection, what the system said ("Connection
/// refused (os error 111)"), not the layers around it.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// Whether `url`'s host is this machine (`localhost` or a loopback address).
pub fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|h| {
        let host = h.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

/// Whether a client would send secrets in clear: `url` is `http://` to another machine.
/// Clients refuse it unless told (`--allow-plain-http`): the server's own refusal of plain
/// HTTP comes only after the token has crossed the network.
pub fn plain_to_remote(url: &str) -> bool {
    reqwest::Url::parse(url.trim()).is_ok_and(|u| u.scheme() == "http" && !is_loopback(&u))
}

/// A site URL as an administrator may write it: without a scheme, `http://` on this machine
/// (`127.0.0.1:8470`) and `https://` anywhere else (`site.example.org:8470`).
pub fn site_url(given: &str) -> Result<reqwest::Url> {
    let given = given.trim();
    // Without a scheme: http on this machine (the quick start's loopback site), https
    // anywhere else, so a token is never sent in clear to another host by default.
    let full = if given.contains("://") {
        given.to_owned()
    } else {
        let local = reqwest::Url::parse(&format!("http://{given}")).is_ok_and(|u| is_loopback(&u));
        format!("{}://{given}", if local { "http" } else { "https" })
    };
    let url = reqwest::Url::parse(&full).map_err(|_| ClientError::Url(given.to_owned()))?;
    if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::Url(given.to_owned()));
    }
    Ok(url)
}

/// An OData key: `('PS100001')` or `(PackageID='PS100001',ServerNALPath='…',SiteCode='PS1')`.
pub fn key(parts: &[(&str, &str)]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    match parts {
        [(_, v)] => format!("({})", quote(v)),
        _ => {
            let inner: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
            format!("({})", inner.join(","))
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    token: String,
    /// A CA was given to check the site against.
    has_ca: bool,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Result<Self> {
        Self::with_builder(base, token, reqwest::Client::builder(), false)
    }

    /// A client of the site at `base` whose HTTP client starts from `builder` (one that checks
    /// the site against its CA: `has_ca`).
    pub fn with_builder(base: &str, token: &str, builder: reqwest::ClientBuilder, has_ca: bool) -> Result<Self> {
        let base = site_url(base)?;
        let http = builder
            .pool_idle_timeout(crate::POOL_IDLE)
            .build()
            .map_err(ClientError::Setup)?;
        Ok(Self {
            http,
            base,
            token: token.to_owned(),
            has_ca,
        })
    }

    /// `…/AdminService/wmi/<segment>`, with the segment percent-encoded as one path segment.
    fn url(&self, segment: &str, tail: Option<&str>) -> Result<reqwest::Url> {
        let mut url = self.base.clone();
        {
            let mut seg = url
                .path_segments_mut()
                .map_err(|()| ClientError::Url(self.base.to_string()))?;
            seg.pop_if_empty().push("AdminService").push("wmi").push(segment);
            if let Some(t) = tail {
                seg.push(t);
            }
        }
        Ok(url)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            let url = self.base.to_string();
            if self.base.scheme() == "https" && !self.has_ca {
                ClientError::ConnectUntrusted { url, cause: e }
            } else {
                ClientError::Connect { url, cause: e }
            }
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| ClientError::Read {
            url: self.base.to_string(),
            cause: e,
        })?;
        if (200..300).contains(&status) {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|_| ClientError::Unexpected { status, text });
        }
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(ClientError::Api {
                status,
                body: Box::new(body),
            }),
            Err(_) => Err(ClientError::Unexpected { status, text }),
        }
    }

    fn object(v: Value, status: u16) -> Result<Map<String, Value>> {
        match v {
            Value::Object(m) => Ok(m),
            other => Err(ClientError::Unexpected {
                status,
                text: other.to_string(),
            }),
        }
    }

    /// A GET of one of the site's own routes outside the WMI route (`/console/api/…`).
    pub async fn get_path(&self, path: &str) -> Result<Value> {
        let url = self.base.join(path).map_err(|_| ClientError::Url(path.to_owned()))?;
        self.send(self.http.get(url)).await
    }

    /// Lists a class, with OData options such as `("$filter", "Name eq 'x'")`.
    pub async fn list(&self, class: &str, query: &[(&str, &str)]) -> Result<Vec<Map<String, Value>>> {
        let v = self.send(self.http.get(self.url(class, None)?).query(query)).await?;
        let list: ListResponse = serde_json::from_value(v.clone()).map_err(|_| ClientError::Unexpected {
            status: 200,
            text: v.to_string(),
        })?;
        Ok(list.value)
    }

    /// The instances of a class as its typed struct ([`crate::classes`]).
    pub async fn list_as<T: serde::de::DeserializeOwned>(&self, class: &str, query: &[(&str, &str)]) -> Result<Vec<T>> {
        self.list(class, query)
            .await?
            .into_iter()
            .map(|m| Self::typed(Value::Object(m)))
            .collect()
    }

    /// One instance as its typed struct.
    pub async fn get_as<T: serde::de::DeserializeOwned>(&self, class: &str, key: &str) -> Result<T> {
        Self::typed(Value::Object(self.get(class, key).await?))
    }

    fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
        serde_json::from_value(v.clone()).map_err(|_| ClientError::Unexpected {
            status: 200,
            text: v.to_string(),
        })
    }

    /// One instance; `key` from [`key`]. The route answers a collection of one, as the real
    /// AdminService does.
    pub async fn get(&self, class: &str, key: &str) -> Result<Map<String, Value>> {
        let v = self
            .send(self.http.get(self.url(&format!("{class}{key}"), None)?))
            .await?;
        let one = match v {
            Value::Object(mut m) if m.contains_key("value") => match m.remove("value") {
                Some(Value::Array(mut a)) if a.len() == 1 => a.remove(0),
                other => other.unwrap_or(Value::Null),
            },
            other => other,
        };
        Self::object(one, 200)
    }

    pub async fn create(&self, class: &str, body: &Value) -> Result<Map<String, Value>> {
        Self::object(self.send(self.http.post(self.url(class, None)?).json(body)).await?, 201)
    }

    pub async fn update(&self, class: &str, key: &str, body: &Value) -> Result<Map<String, Value>> {
        Self::object(
            self.send(self.http.patch(self.url(&format!("{class}{key}"), None)?).json(body))
                .await?,
            200,
        )
    }

    pub async fn delete(&self, class: &str, key: &str) -> Result<()> {
        self.send(self.http.delete(self.url(&format!("{class}{key}"), None)?))
            .await
            .map(|_| ())
    }

    /// Calls a method: on an instance when `key` is given, else on the class.
    pub async fn call(
        &self,
        class: &str,
        key: Option<&str>,
        method: &str,
        params: &Value,
    ) -> Result<Map<String, Value>> {
        let url = match key {
            Some(k) => self.url(&format!("{class}{k}"), Some(&format!("AdminService.{method}")))?,
            None => self.url(&format!("{class}.{method}"), None)?,
        };
        Self::object(self.send(self.http.post(url).json(params)).await?, 200)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_without_a_scheme_is_http_here_and_https_elsewhere() {
        let scheme = |s: &str| super::site_url(s).map(|u| u.scheme().to_owned()).ok();
        assert_eq!(scheme("127.0.0.1:8470").as_deref(), Some("http"));
        assert_eq!(scheme("localhost:8470").as_deref(), Some("http"));
        assert_eq!(scheme("[::1]:8470").as_deref(), Some("http"));
        assert_eq!(scheme("site.corp.example:8470").as_deref(), Some("https"));
        assert_eq!(scheme("10.0.0.5:8470").as_deref(), Some("https"));
        assert_eq!(scheme("localhost.evil.example:8470").as_deref(), Some("https"));
        assert_eq!(scheme("127.example.net:8470").as_deref(), Some("https"));
        assert_eq!(scheme("127.0.0.2:8470").as_deref(), Some("http"));
        assert_eq!(scheme("http://site.corp.example").as_deref(), Some("http"));
        assert_eq!(scheme("ftp://x"), None);
        assert!(super::plain_to_remote("http://10.0.0.5:8470"));
        assert!(super::plain_to_remote("http://localhost.evil.example"));
        assert!(!super::plain_to_remote("http://127.0.0.1:8470"));
        assert!(!super::plain_to_remote("http://[::1]:8470"));
        assert!(!super::plain_to_remote("https://10.0.0.5:8470"));
    }
}
