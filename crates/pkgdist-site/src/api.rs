//! HTTP routing of the AdminService WMI route, shaped as the real route answers:
//!
//! ```text
//! GET    /AdminService/wmi/                             service document (the classes)
//! GET    /AdminService/wmi/$metadata                    the CSDL XML (`metadata.rs`)
//! GET    /AdminService/wmi/<Class>[?$filter=…&$select=…&$orderby=…&$top=…&$skip=…]
//! GET    /AdminService/wmi/<Class>/$count[?$filter=…]   the number, as text
//! GET    /AdminService/wmi/<Class>(<key>)               {"@odata.context", "value": [entity]}
//! POST   /AdminService/wmi/<Class>                      create (201); with the key, an update
//! PATCH  /AdminService/wmi/<Class>(<key>)               update: the properties given
//! PUT    /AdminService/wmi/<Class>(<key>)               update: the whole object, as read
//! DELETE /AdminService/wmi/<Class>(<key>)               204
//! POST   /AdminService/wmi/<Class>(<key>)/AdminService.<Method>   201, ReturnValue
//! POST   /AdminService/wmi/<Class>.<Method>             static method, 201
//! ```
//!
//! `<key>` is `'v'`, a number, or named parts `A='v',B='w'`; `<Class>/<v>` (key as a path
//! segment) names an instance too. Class and method names, and the `AdminService.` prefix,
//! match in any case. Every entity carries `@odata.etag` (its key values joined by `;`).
//! Every request is authenticated by a token: `Authorization: Bearer`, or HTTP Basic with the
//! token as the password from loopback (and never from a browser's cross-site request);
//! read-only tokens may only GET. A body that changes something must be JSON
//! (`Content-Type: application/json`, or none): a browser cannot send that across sites
//! without asking first, so a page an administrator visits cannot forge a change.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pkgdist_core::errors::ErrorKind;
use pkgdist_core::odata;
use pkgdist_proto::catalog::{self, ClassDef};
use pkgdist_proto::{ListResponse, Role};
use serde_json::{Map, Value, json};

use crate::adapters;
use crate::audit;
use crate::auth;
use crate::classes::{self, Object};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/AdminService/wmi", get(service_document))
        .route("/AdminService/wmi/", get(service_document))
        .route(
            "/AdminService/wmi/{*path}",
            get(get_handler)
                .post(post_handler)
                .patch(patch_handler)
                .put(patch_handler)
                .delete(delete_handler),
        )
        .route_layer(middleware::from_fn(allow_on_405))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let scrape = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(scrape)
        .merge(crate::console::router(state.clone()))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(crate::openapi::document()) }),
        )
        .merge(api)
        // Whatever goes wrong, the answer has the API's error shape.
        .fallback(|| async {
            ApiError::new(
                ErrorKind::UnknownClass,
                "no such route: the API lives under /AdminService/wmi/<Class>",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorKind::NotAllowed, "this route does not take that HTTP method")
        })
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| ApiError::internal("a request handler panicked").into_response(),
        ))
        .with_state(state)
}

/// `/metrics`: Prometheus's text format, for any token (a read-only one is enough); the
/// figures read from the database are read now. If the database cannot be read they keep
/// their last values and the failure is counted: the rest of the scrape is still served, so
/// monitoring does not take a database fault for the site being down.
async fn metrics(State(state): State<AppState>) -> Response {
    match state.db.summary(&crate::now()).await {
        Ok(s) => state.metrics.set(&s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the site's figures for /metrics; serving the last ones");
            state.metrics.summary_failed();
        }
    }
    state.metrics.node.response(&state.library)
}

/// A 405 says which methods the path takes (`Allow`), as HTTP asks.
async fn allow_on_405(path: Result<Path<String>, PathRejection>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        // The service document's routes answer theirs through axum's method routing.
        let allow = path.ok().and_then(|Path(p)| allowed(&p));
        if let Some(v) = allow.and_then(|a| header::HeaderValue::from_str(&a).ok()) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
    }
    resp
}

/// The methods a WMI path takes, from what it names and the catalog.
fn allowed(path: &str) -> Option<String> {
    let target = parse_target(path).ok()?;
    let (name, methods): (&str, Vec<&str>) = match &target {
        Target::Class(name) => {
            let c = catalog::class(name)?;
            let mut m = vec!["GET"];
            if c.create || c.update {
                m.push("POST");
            }
            (name, m)
        }
        Target::Count(name) | Target::StaticCall(name, ..) => (name, vec!["GET"]),
        Target::Instance(name, _) => {
            let c = catalog::class(name)?;
            let mut m = vec!["GET"];
            if c.update {
                m.extend(["PATCH", "PUT"]);
            }
            if c.delete {
                m.push("DELETE");
            }
            (name, m)
        }
        Target::InstanceMethod(name, ..) => (name, vec!["POST"]),
        Target::StaticMethod(name, method) => {
            let m = catalog::class(name)?.method(method)?;
            (
                name,
                if m.changes_nothing {
                    vec!["GET", "POST"]
                } else {
                    vec!["POST"]
                },
            )
        }
    };
    catalog::class(name)?;
    Some(methods.join(", "))
}

/// The path after `/AdminService/wmi/`, percent-decoded.
fn wmi_path(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::new(ErrorKind::MalformedKey, format!("cannot decode the path: {e}")))
}

/// The token a request presents: `Authorization: Bearer <token>`, or HTTP Basic with the
/// token as the password (what PowerShell's `Invoke-RestMethod -Credential` sends; the user
/// name is not used). Basic sends the token as it is on every request, so it is taken only
/// over TLS or from a client on this machine (loopback): never in clear across a network.
fn presented_token(headers: &HeaderMap, peer: Option<SocketAddr>, over_tls: bool) -> ApiResult<String> {
    if let Some(t) = pkgdist_node::util::bearer(headers) {
        return Ok(t.to_owned());
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, b)| b.trim());
    let Some(encoded) = basic else {
        return Err(ApiError::new(
            ErrorKind::Unauthenticated,
            "no credentials: send Authorization: Bearer <token> (or HTTP Basic with the token as the password)",
        ));
    };
    if !over_tls && !peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) {
        return Err(ApiError::new(
            ErrorKind::Unauthenticated,
            "HTTP Basic is taken only over https (or from this machine): use the site's https:// URL, or send Authorization: Bearer <token>",
        ));
    }
    if from_page(headers) {
        return Err(ApiError::new(
            ErrorKind::Unauthenticated,
            "HTTP Basic is not taken from requests a web page makes: send Authorization: Bearer <token>",
        ));
    }
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::Unauthenticated,
                "the HTTP Basic credentials are not valid base64 text",
            )
        })?;
    match decoded.split_once(':') {
        Some((_, password)) if !password.is_empty() => Ok(password.to_owned()),
        _ => Err(ApiError::new(
            ErrorKind::Unauthenticated,
            "HTTP Basic needs the token as the password (any user name)",
        )),
    }
}

/// Whether a web page made the request (rather than someone typing an address). A browser
/// that has learnt Basic credentials sends them on every request to the site, including ones
/// other pages make it send: those say where they come from.
fn from_page(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN)
        || headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v != "none")
}

/// The content type of a request that changes something and does not say JSON. Such bodies
/// are refused: HTML forms send `text/plain` and the other simple types across sites without
/// asking, JSON they cannot.
fn non_json_body(req: &Request) -> Option<String> {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let ct = req.headers().get(header::CONTENT_TYPE)?;
    let text = ct.to_str().unwrap_or("(not text)");
    let essence = text.split(';').next().unwrap_or_default().trim();
    (!essence.eq_ignore_ascii_case("application/json")).then(|| text.to_owned())
}

/// A failed authentication's answer, after the delay the client's earlier failures earn it.
async fn refused(state: &AppState, peer: Option<SocketAddr>, e: ApiError) -> Response {
    if let Some(p) = peer {
        let wait = state.auth_failures.failed(p.ip());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    e.into_response()
}

/// Who made an authenticated request: handlers find it in the request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The token's name.
    pub name: String,
    pub role: Role,
}

/// Authenticates by token, and lets a read-only token only read (see the module docs).
pub(crate) async fn authenticate(state: State<AppState>, req: Request, next: Next) -> Response {
    // A refusal offers HTTP Basic only to clients that may use it: a browser offered Basic
    // on a page's request shows its own login box (which the site would refuse anyway, see
    // `presented_token`), and a client that sent a bearer token wants to know that it failed.
    let bearer_only = from_page(req.headers())
        || req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.get(..7))
            .is_some_and(|p| p.eq_ignore_ascii_case("bearer "));
    let mut resp = check_token(state, req, next).await;
    if bearer_only && resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(r#"Bearer realm="pkgdist""#),
        );
    }
    resp
}

async fn check_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let over_tls = req.extensions().get::<pkgdist_node::listen::TlsConnection>().is_some();
    let token = match presented_token(req.headers(), peer, over_tls) {
        Ok(t) => t,
        // No credentials at all is a client's first try (PowerShell's -Credential asks for
        // the challenge first), not a guess: answered at once, not counted.
        Err(e) if !req.headers().contains_key(header::AUTHORIZATION) => return e.into_response(),
        Err(e) => return refused(&state, peer, e).await,
    };
    let token = token.as_str();
    let row = match state.db.token_by_hash(&auth::hash(token)).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            let e = ApiError::new(ErrorKind::Unauthenticated, "the token is unknown or revoked");
            return refused(&state, peer, e).await;
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let role = Role::parse(&row.role).unwrap_or(Role::ReadOnlyAnalyst);
    let mut req = req;
    req.extensions_mut().insert(Caller {
        name: row.name.clone(),
        role,
    });
    if let Some(bad) = non_json_body(&req) {
        return ApiError::new(
            ErrorKind::MalformedBody,
            format!("the body is {bad:?}: send it as application/json"),
        )
        .into_response();
    }
    if role == Role::ReadOnlyAnalyst && !matches!(*req.method(), Method::GET | Method::HEAD) {
        return ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "token {:?} is read-only (ReadOnlyAnalyst): it may read (GET, which includes the static methods that change nothing) but not change anything",
                row.name
            ),
        )
        .into_response();
    }
    let method = req.method().clone();
    let target = req.uri().path().strip_prefix(WMI_PREFIX).map(audit::percent_decoded);
    let resp = next.run(req).await;
    let action = target.as_deref().and_then(|t| audited(&method, t, resp.status()));
    if let (Some(action), Some(target)) = (action, target) {
        let who = audit::Who {
            token_id: row.id,
            token_name: row.name,
        };
        audit::record(&state, &who, action, &method, &target, resp.status().as_u16()).await;
        // Whatever changed may be work for the distribution manager.
        state.work.notify_one();
    }
    resp
}

/// Where the WMI route's paths start; what follows is audited as the change's target.
const WMI_PREFIX: &str = "/AdminService/wmi/";

/// What a request with `method` on the WMI path `target`, answered `status`, changed, for the
/// audit; `None` if it failed or changed nothing (a read, a count, a method the catalog marks
/// `changes_nothing`).
fn audited(method: &Method, target: &str, status: StatusCode) -> Option<audit::Action> {
    if !status.is_success() || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let changes = |class: &str, m: &str| {
        let m = m.strip_prefix("AdminService.").unwrap_or(m);
        catalog::class(class)
            .and_then(|c| c.methods.iter().find(|d| d.name.eq_ignore_ascii_case(m)))
            .is_none_or(|d| !d.changes_nothing)
    };
    // A change answered success on a path that does not parse is still a change.
    let Ok(parsed) = parse_target(target) else {
        return Some(audit::Action::Modified);
    };
    match parsed {
        // A POST to a class creates (201), or updates the instance its key names (200).
        Target::Class(_) if *method == Method::POST => Some(if status == StatusCode::CREATED {
            audit::Action::Created
        } else {
            audit::Action::Modified
        }),
        Target::Class(_) | Target::Count(_) => None,
        Target::Instance(..) if *method == Method::DELETE => Some(audit::Action::Deleted),
        Target::Instance(..) => Some(audit::Action::Modified),
        Target::InstanceMethod(class, _, m) | Target::StaticMethod(class, m) | Target::StaticCall(class, m, _) => {
            changes(&class, &m).then_some(audit::Action::Modified)
        }
    }
}

/// What a path names.
#[derive(Debug, PartialEq)]
enum Target {
    Class(String),
    /// `<Class>/$count`.
    Count(String),
    Instance(String, Key),
    InstanceMethod(String, Key, String),
    StaticMethod(String, String),
    /// A static method with its arguments in the path: `Class.M(P='v')` (GET only).
    StaticCall(String, String, Vec<(String, String)>),
}

/// A key: `('v')` (unnamed) or `(A='v',B='w')`.
#[derive(Debug, PartialEq)]
struct Key(Vec<(Option<String>, String)>);

fn malformed(path: &str, why: &str) -> ApiError {
    ApiError::new(ErrorKind::MalformedKey, format!("cannot read {path:?}: {why}"))
}

fn parse_target(path: &str) -> ApiResult<Target> {
    let slash = path.find('/');
    let paren = path.find('(');
    if let Some(at) = slash.filter(|s| paren.is_none_or(|p| *s < p)) {
        return segment_target(path, &path[..at], &path[at + 1..]);
    }
    let Some(open) = paren else {
        return Ok(match path.split_once('.') {
            Some((class, method)) => Target::StaticMethod(class.to_owned(), method.to_owned()),
            None => Target::Class(path.to_owned()),
        });
    };
    let class = path[..open].to_owned();
    if let Some((class, method)) = class.split_once('.') {
        // A static method in function-call form: `Class.M()` or `Class.M(P='v')`, as an
        // OData function is called with GET.
        let args = &path[open + 1..];
        if args.trim() == ")" {
            return Ok(Target::StaticMethod(class.to_owned(), method.to_owned()));
        }
        return match parse_key(path, args)? {
            (Key(parts), "") if parts.iter().all(|(n, _)| n.is_some()) => Ok(Target::StaticCall(
                class.to_owned(),
                method.to_owned(),
                parts.into_iter().map(|(n, v)| (n.unwrap_or_default(), v)).collect(),
            )),
            _ => Err(malformed(
                path,
                "a method's arguments are named: Class.Method(Param='value')",
            )),
        };
    }
    let (key, rest) = parse_key(path, &path[open + 1..])?;
    match rest {
        "" => Ok(Target::Instance(class, key)),
        r => match method_after_key(r) {
            Some(m) if !m.is_empty() && !m.contains('/') => Ok(Target::InstanceMethod(class, key, m.to_owned())),
            _ => Err(malformed(path, "expected /AdminService.<Method> after the key")),
        },
    }
}

/// `<Class>/$count`, or the key as a path segment: `<Class>/<v>` (quoted or not), optionally
/// followed by `/AdminService.<Method>`.
fn segment_target(path: &str, class: &str, rest: &str) -> ApiResult<Target> {
    if rest == "$count" {
        return Ok(Target::Count(class.to_owned()));
    }
    // `Class/AdminService.M`: a static method as OData addresses an action bound to the
    // collection, which is how $metadata declares it.
    if let Some(m) = method_after_key(&format!("/{rest}"))
        && !m.is_empty()
        && !m.contains(['/', '(', '\''])
    {
        return Ok(Target::StaticMethod(class.to_owned(), m.to_owned()));
    }
    let (value, after) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let value = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(quoted) => quoted.replace("''", "'"),
        None => value.to_owned(),
    };
    if value.is_empty() {
        return Err(malformed(path, "empty key"));
    }
    let key = Key(vec![(None, value)]);
    match after {
        "" => Ok(Target::Instance(class.to_owned(), key)),
        r => match method_after_key(r) {
            Some(m) if !m.is_empty() && !m.contains('/') => {
                Ok(Target::InstanceMethod(class.to_owned(), key, m.to_owned()))
            }
            _ => Err(malformed(path, "expected /AdminService.<Method> after the key")),
        },
    }
}

/// The method in `/AdminService.<Method>` after a key; the prefix in any case, as the
/// AdminService accepts it.
fn method_after_key(rest: &str) -> Option<&str> {
    const PREFIX: &str = "/AdminService.";
    let head = rest.get(..PREFIX.len())?;
    head.eq_ignore_ascii_case(PREFIX).then(|| &rest[PREFIX.len()..])
}

/// Parses the inside of `( … )`; returns the key and what follows the closing parenthesis.
fn parse_key<'a>(path: &str, mut s: &'a str) -> ApiResult<(Key, &'a str)> {
    let mut parts = Vec::new();
    loop {
        s = s.trim_start();
        let mut name = None;
        if let Some(eq) = s.find('=')
            && !s[..eq].contains('\'')
            && !s[..eq].contains(')')
        {
            name = Some(s[..eq].trim().to_owned());
            s = s[eq + 1..].trim_start();
        }
        let value;
        if let Some(rest) = s.strip_prefix('\'') {
            let mut v = String::new();
            let mut r = rest;
            loop {
                let q = r.find('\'').ok_or_else(|| malformed(path, "unterminated quoted key"))?;
                v.push_str(&r[..q]);
                r = &r[q + 1..];
                if let Some(more) = r.strip_prefix('\'') {
                    v.push('\'');
                    r = more;
                } else {
                    break;
                }
            }
            value = v;
            s = r.trim_start();
        } else {
            let end = s.find([',', ')']).ok_or_else(|| malformed(path, "missing ')'"))?;
            value = s[..end].trim().to_owned();
            if value.is_empty() {
                return Err(malformed(path, "empty key"));
            }
            s = &s[end..];
        }
        parts.push((name, value));
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if let Some(rest) = s.strip_prefix(')') {
            return Ok((Key(parts), rest));
        } else {
            return Err(malformed(path, "expected ',' or ')' after a key value"));
        }
    }
}

fn class_def(name: &str) -> ApiResult<&'static ClassDef> {
    catalog::class(name).ok_or_else(|| {
        ApiError::new(
            ErrorKind::UnknownClass,
            format!("no class {name:?}; see docs/api.md for the classes, e.g. SMS_Package"),
        )
        .object(name)
    })
}

/// The instance of `class` that `key` names.
async fn find(state: &AppState, class: &'static ClassDef, key: &Key) -> ApiResult<Object> {
    let pairs: Vec<(&str, &str)> = if key.0.len() == 1 && key.0[0].0.is_none() {
        if class.key.len() != 1 {
            return Err(ApiError::new(
                ErrorKind::MalformedKey,
                format!(
                    "{} has a composite key; name each part: ({})",
                    class.name,
                    class.key.join("='…',") + "='…'"
                ),
            ));
        }
        vec![(class.key[0], key.0[0].1.as_str())]
    } else {
        let mut pairs = Vec::new();
        for (name, value) in key.0.iter().filter(|(n, _)| !is_also(class, n.as_deref())) {
            let name = name
                .as_deref()
                .ok_or_else(|| ApiError::new(ErrorKind::MalformedKey, "name every part of a composite key"))?;
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::new(
                    ErrorKind::MalformedKey,
                    format!("{name} is given twice in the key"),
                ));
            }
            if !class.key.contains(&name) {
                return Err(ApiError::new(
                    ErrorKind::MalformedKey,
                    format!(
                        "{name} is not a key of {}; the key is {}",
                        class.name,
                        class.key.join(" + ")
                    ),
                ));
            }
            pairs.push((name, value.as_str()));
        }
        if pairs.len() != class.key.len() {
            return Err(ApiError::new(
                ErrorKind::MalformedKey,
                format!("the key of {} is {}", class.name, class.key.join(" + ")),
            ));
        }
        pairs
    };
    let found = classes::get(state, class.name, &pairs).await?;
    // Properties named beside the key (scripts name SMS_DistributionPoint by its key and its
    // SiteCode) must hold what they say.
    let also_hold = |o: &Object| {
        key.0
            .iter()
            .filter(|(n, _)| is_also(class, n.as_deref()))
            .all(|(n, v)| {
                let name = n.as_deref().unwrap_or_default();
                match o.get(name) {
                    Some(Value::String(s)) => s == v,
                    Some(Value::Number(x)) => x.to_string() == *v,
                    _ => false,
                }
            })
    };
    found.filter(also_hold).ok_or_else(|| {
        let desc: Vec<String> = key
            .0
            .iter()
            .map(|(k, v)| format!("{}={v}", k.as_deref().unwrap_or(class.key[0])))
            .collect();
        ApiError::new(
            ErrorKind::UnknownInstance,
            format!("no {} with {}", class.name, desc.join(", ")),
        )
        .object(desc.join(", "))
    })
}

/// A named part of a key that is a property of the class but not part of its key.
fn is_also(class: &ClassDef, name: Option<&str>) -> bool {
    name.is_some_and(|n| !class.key.contains(&n) && class.prop(n).is_some())
}

/// A whole object sent back (PUT, or POST with the key): what it says as the instance already
/// has it is dropped, annotations (`@odata.…`, `__…`) too, so only changes remain — and a
/// read-only property sent changed is then refused, naming it.
fn unchanged_removed(class: &ClassDef, current: &Object, body: Map<String, Value>) -> Map<String, Value> {
    let changed = |k: &str, v: &Value| match (class.prop(k), current.get(k)) {
        (None, _) => true,
        (Some(p), Some(now)) => !same_value(p.ty, now, v),
        (Some(_), None) => true,
    };
    let mut out: Map<String, Value> = body
        .iter()
        .filter(|(k, v)| !k.starts_with('@') && !k.starts_with("__") && changed(k, v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Properties that mean something only together go together: a change to one keeps the
    // others as sent (new ranks for the same sources, a limit in another mode).
    for group in COUPLED {
        if group.iter().any(|k| out.contains_key(*k)) {
            for k in *group {
                if let Some(v) = body.get(*k) {
                    out.insert((*k).to_owned(), v.clone());
                }
            }
        }
    }
    out
}

/// Writable properties that are read together: sent whole, they are kept or dropped together.
const COUPLED: &[&[&str]] = &[
    &["SourceDistributionPoints", "SourceDPRanks"],
    &[
        "RateLimitMode",
        "RateLimitBytesPerSecond",
        "PulseBlockSizeKB",
        "PulseDelaySeconds",
        "HourlyPercentages",
    ],
];

/// Whether a value sent back is the one the instance has: times as instants (a client may
/// write `…Z` back as `…+00:00`), numbers as numbers (`2.0` is `2`).
fn same_value(ty: catalog::Ty, now: &Value, sent: &Value) -> bool {
    match (ty, now, sent) {
        (catalog::Ty::DateTime, Value::String(a), Value::String(b)) => {
            match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
                (Ok(x), Ok(y)) => x == y,
                _ => a == b,
            }
        }
        (_, Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => now == sent,
    }
}

/// The query options the API understands; anything else starting with `$` is refused rather
/// than silently ignored (a misspelt `$filter` must not return everything).
const OPTIONS: [&str; 5] = ["$filter", "$select", "$orderby", "$top", "$skip"];

/// The OData query of a request on `class`.
fn query_of(class: &ClassDef, list: &[(String, String)]) -> ApiResult<odata::Query> {
    // `?$filter = Name eq 'x'` (spaces around `=`, as some scripts write it) names `$filter`;
    // an option given twice is refused rather than one of them silently winning.
    let mut q: HashMap<String, String> = HashMap::new();
    for (k, v) in list {
        let k = k.trim();
        if q.insert(k.to_owned(), v.clone()).is_some() {
            return Err(ApiError::new(
                ErrorKind::MalformedQuery,
                format!("the query option {k:?} is given twice"),
            ));
        }
    }
    if let Some(bad) = q.keys().find(|k| k.starts_with('$') && !OPTIONS.contains(&k.as_str())) {
        return Err(ApiError::new(
            ErrorKind::MalformedQuery,
            format!("unknown query option {bad:?} (supported: {})", OPTIONS.join(", ")),
        ));
    }
    let known = |p: &str| class.prop(p).is_some();
    let g = |k: &str| q.get(k).map(String::as_str);
    let query =
        odata::Query::parse(g("$filter"), g("$select"), g("$orderby"), g("$top"), g("$skip"), &known).map_err(|e| {
            let kind = match e {
                odata::QueryError::UnknownProperty(_) => ErrorKind::UnknownProperty,
                _ => ErrorKind::MalformedQuery,
            };
            ApiError::new(kind, format!("{e} (class {})", class.name))
        })?;
    if let Some(f) = &query.filter {
        crate::filter_types::check(class, f)?;
    }
    Ok(query)
}

/// Where the WMI route is, as the client addressed it (for `@odata.context`).
fn base_url(headers: &HeaderMap) -> String {
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}/AdminService/wmi/"),
        None => "/AdminService/wmi/".to_owned(),
    }
}

/// `@odata.context` of a response about `class`.
fn context(headers: &HeaderMap, class: &str) -> String {
    format!("{}$metadata#{class}", base_url(headers))
}

/// An entity's `@odata.etag`: its key values joined by `;` (none when `$select` left a key
/// part out).
fn etag(class: &ClassDef, entity: &Object) -> Option<Value> {
    let parts: Option<Vec<String>> = class
        .key
        .iter()
        .map(|k| match entity.get(*k)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
        .collect();
    parts.map(|p| Value::String(p.join(";")))
}

/// `entity` with its `@odata.etag`.
fn annotated(class: &ClassDef, mut entity: Object) -> Object {
    if let Some(tag) = etag(class, &entity) {
        entity.insert("@odata.etag".into(), tag);
    }
    entity
}

/// One entity as the real route answers a GET by key: a collection of one.
fn one(headers: &HeaderMap, class: &ClassDef, entity: Object) -> Response {
    let body = ListResponse {
        context: context(headers, class.name),
        value: vec![annotated(class, entity)],
    };
    axum::Json(body).into_response()
}

/// `GET /AdminService/wmi/`: the classes, as an OData service document.
async fn service_document(headers: HeaderMap) -> Response {
    let sets: Vec<Value> = catalog::CLASSES
        .iter()
        .filter(|c| !c.key.is_empty())
        .map(|c| json!({"name": c.name, "kind": "EntitySet", "url": c.name}))
        .collect();
    axum::Json(json!({"@odata.context": format!("{}$metadata", base_url(&headers)), "value": sets})).into_response()
}

async fn get_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let path = wmi_path(path)?;
    if path == "$metadata" {
        return Ok(([(header::CONTENT_TYPE, "application/xml")], crate::metadata::document()).into_response());
    }
    match parse_target(&path)? {
        Target::Class(name) => {
            let class = class_def(&name)?;
            let query = query_of(class, &q)?;
            let context = context(&headers, class.name);
            if let Some(rows) = classes::stream(&state, class.name, &query)? {
                return Ok(streamed(class, &context, rows));
            }
            let rows = classes::list(&state, class.name, &query).await?;
            let value = rows.into_iter().map(|r| annotated(class, r)).collect();
            Ok(axum::Json(ListResponse { context, value }).into_response())
        }
        Target::Count(name) => {
            let class = class_def(&name)?;
            let query = query_of(class, &q)?;
            let n = classes::count(&state, class.name, &query).await?;
            Ok(([(header::CONTENT_TYPE, "text/plain")], n.to_string()).into_response())
        }
        Target::Instance(name, key) => {
            let class = class_def(&name)?;
            Ok(one(&headers, class, find(&state, class, &key).await?))
        }
        Target::StaticMethod(name, method) => static_by_get(&state, &name, &method, q).await,
        Target::StaticCall(name, method, mut args) => {
            args.extend(q);
            static_by_get(&state, &name, &method, args).await
        }
        Target::InstanceMethod(..) => Err(ApiError::new(
            ErrorKind::NotAllowed,
            "instance methods are called with POST",
        )),
    }
}

/// GET of a static method that changes nothing (`SMS_Identification.GetSiteID`,
/// `SMS_ScheduleMethods.ReadFromString?StringData=…`): its arguments come from the query
/// string or the function-call form, each read as its parameter's type (a string as it is,
/// anything else as JSON); names are checked as a POST body's are (any case, each once,
/// known). The answer is a POST's, 201: scripts call `SMS_Identification.GetSiteID` with GET
/// and at least one (sccmhunter) checks for 201.
async fn static_by_get(state: &AppState, name: &str, method: &str, args: Vec<(String, String)>) -> ApiResult<Response> {
    let class = class_def(name)?;
    let m = method_def(class, method, false)?;
    if !m.changes_nothing {
        return Err(ApiError::new(
            ErrorKind::NotAllowed,
            format!("{}.{} changes the site: call it with POST", class.name, m.name),
        ));
    }
    let mut params = Map::new();
    for (k, v) in args {
        if params.keys().any(|seen| seen.eq_ignore_ascii_case(&k)) {
            return Err(ApiError::new(
                ErrorKind::MalformedQuery,
                format!("the parameter {k} of {} is given twice", m.name),
            )
            .param(&k));
        }
        // A parameter the method does not have is refused by name when the call is checked.
        let ty = m.params.iter().find(|p| p.name.eq_ignore_ascii_case(&k)).map(|p| p.ty);
        let value = match ty {
            None | Some(catalog::Ty::String | catalog::Ty::DateTime) => Value::String(v),
            Some(ty) => serde_json::from_str(&v).map_err(|e| {
                ApiError::new(
                    ErrorKind::InvalidValue,
                    format!("{k}: a {} is given as JSON in a query string: {e}", ty.name()),
                )
                .param(&k)
            })?,
        };
        params.insert(k, value);
    }
    call_static(state, class, m, params).await
}

/// Calls a static method; its answer with 201, by POST or GET.
async fn call_static(
    state: &AppState,
    class: &'static ClassDef,
    m: &'static pkgdist_proto::MethodDef,
    params: Map<String, Value>,
) -> ApiResult<Response> {
    let out = adapters::call(state, class, None, m, params)
        .await
        .map_err(|e| e.op(format!("{}.{}", class.name, m.name)))?;
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// A collection response written as its rows arrive: the same JSON as [`ListResponse`], but
/// a listing of millions of rows holds only the rows in flight. The closing `]}` is written
/// only once the read says it has every row; a read that fails or stops midway ends the body
/// without it (the status line has gone out already), so the client sees broken JSON rather
/// than a complete-looking short list. A failure is logged.
fn streamed(class: &'static ClassDef, context: &str, rows: pkgdist_db::view::RowStream) -> Response {
    use futures_util::StreamExt as _;
    /// Where the body is: rows still to come (`first`: none written yet), or finished.
    struct Body {
        rows: pkgdist_db::view::RowStream,
        first: bool,
        done: bool,
    }
    let head = format!("{{\"@odata.context\":{},\"value\":[", Value::String(context.to_owned()));
    let start = Body {
        rows,
        first: true,
        done: false,
    };
    // Each frame carries every row that has arrived (up to ROWS_PER_FRAME), not one row: a
    // frame per row made a 1,000-row answer a thousand small writes.
    let body = futures_util::stream::unfold(start, move |mut b| async move {
        if b.done {
            return None;
        }
        let mut batch = Vec::with_capacity(ROWS_PER_FRAME);
        if b.rows.recv_many(&mut batch, ROWS_PER_FRAME).await == 0 {
            // The read stopped without saying it had every row (it gave up on a stalled
            // client, or failed): no `]}`, and the connection is cut rather than ended.
            b.done = true;
            return Some((Err(std::io::Error::other("the listing stopped before its end")), b));
        }
        let mut out = Vec::new();
        for item in batch {
            match item {
                Ok(Some(row)) => {
                    if !std::mem::take(&mut b.first) {
                        out.push(b',');
                    }
                    if let Err(e) = serde_json::to_writer(&mut out, &annotated(class, row)) {
                        b.done = true;
                        return Some((Err(std::io::Error::other(e)), b));
                    }
                }
                Ok(None) => {
                    out.extend_from_slice(b"]}");
                    b.done = true;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "a streamed listing failed midway");
                    b.done = true;
                    return Some((Err(std::io::Error::other(e.to_string())), b));
                }
            }
        }
        Some((Ok(Bytes::from(out)), b))
    });
    let stream = futures_util::stream::once(std::future::ready(Ok(Bytes::from(head)))).chain(body);
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// The most rows one body frame of a streamed listing carries.
const ROWS_PER_FRAME: usize = 128;

/// The JSON object of a request body (an empty body is an empty object).
fn body_object(body: Result<Bytes, BytesRejection>) -> ApiResult<Map<String, Value>> {
    let bytes = body.map_err(|e| crate::body::unreadable(&e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match crate::body::strict_value(&bytes)? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::new(
            ErrorKind::MalformedBody,
            "the body must be a JSON object",
        )),
    }
}

/// The key `body` carries for `class`, if it names every part of it and the parts are ones
/// the site assigns (`PackageID`, `GroupID`, …): such a POST is an update on the real route
/// (WMI's PutInstance). A key the client chooses on create (`SMS_Site.SiteCode`) keeps POST
/// a create, so a duplicate is refused rather than silently taken as a change.
fn key_in_body(class: &ClassDef, body: &Map<String, Value>) -> Option<Key> {
    if class.key.iter().any(|k| class.prop(k).is_none_or(|p| p.writable)) {
        return None;
    }
    let parts: Option<Vec<(Option<String>, String)>> = class
        .key
        .iter()
        .map(|k| {
            let v = match body.get(*k)? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((Some((*k).to_owned()), v))
        })
        .collect();
    parts.map(Key)
}

async fn post_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let path = wmi_path(path)?;
    let body = body_object(body)?;
    match parse_target(&path)? {
        Target::Class(name) => {
            let class = class_def(&name)?;
            if class.update
                && let Some(key) = key_in_body(class, &body)
            {
                // The site assigns such keys: one that names nothing cannot be created.
                let current = find(&state, class, &key).await?;
                let body = unchanged_removed(class, &current, body);
                let updated = adapters::update(&state, class, current, body)
                    .await
                    .map_err(|e| e.op(format!("update {name}")))?;
                return Ok(axum::Json(annotated(class, updated)).into_response());
            }
            let created = adapters::create(&state, class, body)
                .await
                .map_err(|e| e.op(format!("create {name}")))?;
            let created = annotated(class, created);
            let mut resp = (StatusCode::CREATED, axum::Json(created)).into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&context(&headers, class.name)) {
                resp.headers_mut().insert("OData-EntityContext", v);
            }
            Ok(resp)
        }
        Target::InstanceMethod(name, key, method) => {
            let class = class_def(&name)?;
            let m = method_def(class, &method, true)?;
            let instance = find(&state, class, &key).await?;
            let out = adapters::call(&state, class, Some(instance), m, body)
                .await
                .map_err(|e| e.op(format!("{name}.{method}")))?;
            Ok((StatusCode::CREATED, axum::Json(out)).into_response())
        }
        Target::StaticMethod(name, method) => {
            let class = class_def(&name)?;
            call_static(&state, class, method_def(class, &method, false)?, body).await
        }
        Target::Instance(..) | Target::Count(_) => Err(ApiError::new(
            ErrorKind::NotAllowed,
            "POST creates (on a class) or calls a method; use PATCH or PUT to change an instance",
        )),
        Target::StaticCall(..) => Err(ApiError::new(
            ErrorKind::NotAllowed,
            "a method's arguments go in the body of a POST (the Class.Method(P='v') form is for GET)",
        )),
    }
}

fn method_def(class: &'static ClassDef, name: &str, instance: bool) -> ApiResult<&'static pkgdist_proto::MethodDef> {
    let m = class.method(name).ok_or_else(|| {
        let known: Vec<&str> = class.methods.iter().map(|m| m.name).collect();
        ApiError::new(
            ErrorKind::UnknownMethod,
            format!(
                "{} has no method {name:?} (it has: {})",
                class.name,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        )
    })?;
    if m.instance != instance {
        let how = if m.instance {
            format!("on an instance: {}('<key>')/AdminService.{name}", class.name)
        } else {
            format!("on the class: {}.{name}", class.name)
        };
        return Err(ApiError::new(
            ErrorKind::UnknownMethod,
            format!("{name} is called {how}"),
        ));
    }
    Ok(m)
}

async fn patch_handler(
    State(state): State<AppState>,
    method: Method,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let path = wmi_path(path)?;
    let body = body_object(body)?;
    let Target::Instance(name, key) = parse_target(&path)? else {
        return Err(ApiError::new(
            ErrorKind::NotAllowed,
            "PATCH changes one instance: <Class>('<key>')",
        ));
    };
    let class = class_def(&name)?;
    if !class.update {
        return Err(ApiError::new(
            ErrorKind::NotAllowed,
            format!("{} instances cannot be changed", class.name),
        ));
    }
    let current = find(&state, class, &key).await?;
    let body = if method == Method::PUT {
        unchanged_removed(class, &current, body)
    } else {
        body
    };
    let updated = adapters::update(&state, class, current, body)
        .await
        .map_err(|e| e.op(format!("update {name}")))?;
    Ok(axum::Json(annotated(class, updated)).into_response())
}

async fn delete_handler(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let path = wmi_path(path)?;
    let Target::Instance(name, key) = parse_target(&path)? else {
        return Err(ApiError::new(
            ErrorKind::NotAllowed,
            "DELETE removes one instance: <Class>('<key>')",
        ));
    };
    let class = class_def(&name)?;
    if !class.delete {
        return Err(ApiError::new(
            ErrorKind::NotAllowed,
            format!("{} instances cannot be deleted", class.name),
        ));
    }
    let current = find(&state, class, &key).await?;
    adapters::delete(&state, class, current)
        .await
        .map_err(|e| e.op(format!("delete {name}")))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_only_over_tls_or_from_loopback() {
        use base64::Engine as _;
        let mut h = HeaderMap::new();
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:pkgd_x");
        h.insert(header::AUTHORIZATION, format!("Basic {basic}").parse().unwrap());
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        assert_eq!(presented_token(&h, Some(local), false).unwrap(), "pkgd_x");
        let refused = presented_token(&h, Some(remote), false).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Unauthenticated);
        assert!(refused.message.contains("https"), "{}", refused.message);
        assert_eq!(
            presented_token(&h, Some(remote), true).unwrap(),
            "pkgd_x",
            "over TLS from anywhere"
        );
        assert!(presented_token(&h, None, false).is_err(), "no peer known: not loopback");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert_eq!(
            presented_token(&h, Some(mapped), false).unwrap(),
            "pkgd_x",
            "IPv4 loopback on a dual-stack listener"
        );
        // Not from a page a browser was made to send, even on this machine.
        let mut page = h.clone();
        page.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(presented_token(&page, Some(local), false).is_err());
        let mut page = h.clone();
        page.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(presented_token(&page, Some(local), false).is_err());
        page.insert("sec-fetch-site", "none".parse().unwrap());
        assert!(
            presented_token(&page, Some(local), false).is_ok(),
            "typed in the address bar"
        );
        // A bearer token is taken from anywhere (TLS is the listener's business).
        h.insert(header::AUTHORIZATION, "Bearer pkgd_y".parse().unwrap());
        assert_eq!(presented_token(&h, Some(remote), false).unwrap(), "pkgd_y");
        let empty = base64::engine::general_purpose::STANDARD.encode("admin:");
        h.insert(header::AUTHORIZATION, format!("Basic {empty}").parse().unwrap());
        assert!(presented_token(&h, Some(local), false).is_err());
    }

    #[test]
    fn audited_changes_follow_the_target_and_the_catalog() {
        use audit::Action::*;
        let ok = StatusCode::OK;
        let a = |m: Method, t: &str, s: StatusCode| audited(&m, t, s);
        assert_eq!(a(Method::GET, "SMS_Package", ok), None);
        assert_eq!(a(Method::POST, "SMS_Package", StatusCode::CREATED), Some(Created));
        assert_eq!(a(Method::POST, "SMS_Package", ok), Some(Modified), "an update by POST");
        assert_eq!(a(Method::POST, "SMS_Package", StatusCode::BAD_REQUEST), None);
        assert_eq!(a(Method::PATCH, "SMS_Package('P0100001')", ok), Some(Modified));
        assert_eq!(a(Method::DELETE, "SMS_Package('P0100001')", ok), Some(Deleted));
        assert_eq!(
            a(
                Method::POST,
                "SMS_Package('P0100001')/AdminService.RefreshPkgSource",
                ok
            ),
            Some(Modified)
        );
        assert_eq!(a(Method::POST, "SMS_ScheduleMethods.ReadFromString", ok), None);
        assert_eq!(
            a(Method::POST, "SMS_ScheduleMethods/AdminService.WriteToString", ok),
            None
        );
        assert_eq!(a(Method::POST, "SMS_Identification.GetSiteID", ok), None);
        assert_eq!(
            a(Method::POST, "SMS_DistributionPoint.CancelDistribution", ok),
            Some(Modified)
        );
        assert_eq!(
            a(Method::POST, "SMS_DistributionPoint/AdminService.VerifyPackage", ok),
            Some(Modified)
        );
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("SMS_Package").unwrap(),
            Target::Class("SMS_Package".into())
        );
        assert_eq!(
            parse_target("SMS_Package('PS100001')").unwrap(),
            Target::Instance("SMS_Package".into(), Key(vec![(None, "PS100001".into())]))
        );
        assert_eq!(
            parse_target("SMS_Package('PS100001')/AdminService.RefreshPkgSource").unwrap(),
            Target::InstanceMethod(
                "SMS_Package".into(),
                Key(vec![(None, "PS100001".into())]),
                "RefreshPkgSource".into()
            )
        );
        assert_eq!(
            parse_target("SMS_DistributionPoint.VerifyPackage").unwrap(),
            Target::StaticMethod("SMS_DistributionPoint".into(), "VerifyPackage".into())
        );
        let nal = r#"["Display=\\dp1\"]MSWNET:["SMS_SITE=PS1"]\\dp1\"#;
        let p = format!("SMS_DistributionPoint(PackageID='PS100001',ServerNALPath='{nal}',SiteCode='PS1')");
        let Target::Instance(_, Key(k)) = parse_target(&p).unwrap() else {
            panic!()
        };
        assert_eq!(k[1], (Some("ServerNALPath".into()), nal.to_owned()));
        assert_eq!(
            parse_target("X('it''s')").unwrap(),
            Target::Instance("X".into(), Key(vec![(None, "it's".into())]))
        );
        assert_eq!(
            parse_target("SMS_DistributionDPStatus(5)").unwrap(),
            Target::Instance("SMS_DistributionDPStatus".into(), Key(vec![(None, "5".into())]))
        );
        // A static method as OData addresses an action bound to the collection; a quoted key
        // that looks like one is still a key.
        assert_eq!(
            parse_target("SMS_DistributionPoint/AdminService.CancelDistribution").unwrap(),
            Target::StaticMethod("SMS_DistributionPoint".into(), "CancelDistribution".into())
        );
        assert_eq!(
            parse_target("SMS_Package/'AdminService.x'").unwrap(),
            Target::Instance("SMS_Package".into(), Key(vec![(None, "AdminService.x".into())]))
        );
        assert_eq!(
            parse_target("SMS_Package('a.b')").unwrap(),
            Target::Instance("SMS_Package".into(), Key(vec![(None, "a.b".into())]))
        );
        // Static methods in function-call form (GET).
        assert_eq!(
            parse_target("SMS_Identification.GetSiteID()").unwrap(),
            Target::StaticMethod("SMS_Identification".into(), "GetSiteID".into())
        );
        assert_eq!(
            parse_target("SMS_ScheduleMethods.ReadFromString(StringData='1033BC7B10100010')").unwrap(),
            Target::StaticCall(
                "SMS_ScheduleMethods".into(),
                "ReadFromString".into(),
                vec![("StringData".into(), "1033BC7B10100010".into())]
            )
        );
        for bad in [
            "X('a",
            "X('a'",
            "X('a')/Other",
            "X()",
            "X('a')x",
            "X.M('unnamed')",
            "X.M(P='v')/more",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
