//! Prometheus metrics: what every node counts, and the `/metrics` answer.
//!
//! Each daemon owns one [`Metrics`] (not a process-wide registry: `pkgdist up` runs a site and
//! its DPs in one process, and each must count only its own traffic). What every node counts
//! lives here: HTTP requests by route, method and status ([`layer`]), the bytes of their
//! answers, and what [`crate::fetch::Fetcher`] receives and rejects ([`FetchMetrics`]). A
//! daemon registers its own metrics beside them with [`Metrics::new`]'s closure, and figures
//! it reads at scrape time (rows by state, library size) it sets just before [`Metrics::encode`].
//!
//! Invariants: no client can grow a label set: a route label is the route's template
//! (`/{share}/{pkg}/{*path}`, written `/:share/:pkg/*path`), never the path asked for, and a
//! method label one of a fixed few; every metric is described in `docs/metrics.md` (a test of
//! each daemon holds the document to what it serves).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pkgdist_content::Library;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The content type of the text format [`Metrics::encode`] writes (OpenMetrics 1.0, which
/// Prometheus reads, and which its older text parser reads too).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

/// The work of a job, as a label (site and DP count jobs alike).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Work {
    install,
    validate,
    remove,
}

/// How a job ended, as a label.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    succeeded,
    failed,
}

/// What a validation found, as a label (status messages 2384, 2385, 2386).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Validation {
    /// Every chunk hashed to its ID.
    passed,
    /// Damage found and left (not repaired, or the repair failed).
    damaged,
    /// Damage found, fetched again and verified whole.
    repaired,
}

/// An HTTP method as a label: one of a fixed few (hyper accepts any token as a method, and
/// a label per made-up method would let any client grow the set).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// What a [`crate::fetch::Fetcher`] counts: bytes received from sources, and chunks refused
/// because they did not hash to what the manifest says.
#[derive(Debug, Clone, Default)]
pub struct FetchMetrics {
    /// Bytes of chunk and manifest answers received from other nodes.
    pub received: Counter,
    /// Answers refused because a chunk in them failed verification (the first such chunk
    /// refuses the answer whole: nothing of it is stored).
    pub rejected: Counter,
}

/// How long a count of the library's size is kept before a scrape asks for a new one.
pub const LIBRARY_RECOUNT: Duration = Duration::from_secs(600);

/// The library's size: counted in the background when a scrape finds the last count older
/// than [`LIBRARY_RECOUNT`] (reading every object's size costs what the library holds, so not
/// at every scrape); the scrape answers the last count meanwhile, and `counted_at` says when
/// that was (0: not counted yet, so the 0 in the others is not an empty library).
#[derive(Debug, Clone, Default)]
struct LibrarySize {
    chunks: Gauge,
    bytes: Gauge,
    /// Unix time of the last finished count.
    counted_at: Gauge,
    /// When the last count started; `None` before the first, or after one failed.
    counted: Arc<Mutex<Option<Instant>>>,
}

impl LibrarySize {
    fn recount_if_stale(&self, library: &Arc<Library>) {
        {
            let mut counted = self.counted.lock().unwrap_or_else(|e| e.into_inner());
            if counted.is_some_and(|t| t.elapsed() < LIBRARY_RECOUNT) {
                return;
            }
            // Marked before the count runs, so concurrent scrapes start one count only.
            *counted = Some(Instant::now());
        }
        let (me, library) = (self.clone(), library.clone());
        tokio::task::spawn_blocking(move || match library.stored_size() {
            Ok(size) => {
                me.chunks.set(i64::try_from(size.chunks).unwrap_or(i64::MAX));
                me.bytes.set(i64::try_from(size.bytes).unwrap_or(i64::MAX));
                me.counted_at.set(jiff::Timestamp::now().as_second());
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the library's size; the next scrape tries again");
                *me.counted.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
        });
    }
}

/// One daemon's metrics.
#[derive(Debug, Clone)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    sent: Family<RouteLabels, Counter>,
    fetch: FetchMetrics,
    library: LibrarySize,
}

impl Metrics {
    /// A registry with what every node counts, and what `more` registers (a daemon's own
    /// metrics, which it keeps handles to). Names are prefixed `pkgdist_`.
    pub fn new(more: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("pkgdist");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let sent = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_sent_bytes",
            "Bytes of HTTP answer bodies sent, by route template (client downloads, chunks to other nodes, API answers)",
            sent.clone(),
        );
        let fetch = FetchMetrics::default();
        registry.register(
            "received_bytes",
            "Bytes of manifests and chunks received from other nodes (a DP from its site or pull sources, a site from its parent)",
            fetch.received.clone(),
        );
        registry.register(
            "chunks_rejected",
            "Answers of chunks from other nodes refused because a chunk in them failed verification (nothing of such an answer is stored)",
            fetch.rejected.clone(),
        );
        let library = LibrarySize::default();
        registry.register(
            "library_chunks",
            "Chunks in the node's content library (counted at most every 10 minutes)",
            library.chunks.clone(),
        );
        registry.register(
            "library_bytes",
            "Bytes the node's content library holds as stored: chunk envelopes and manifests (counted at most every 10 minutes)",
            library.bytes.clone(),
        );
        registry.register(
            "library_counted_at_seconds",
            "Unix time of the last count of the library's size (0: not counted yet)",
            library.counted_at.clone(),
        );
        more(&mut registry);
        Self(Arc::new(Inner {
            registry,
            requests,
            sent,
            fetch,
            library,
        }))
    }

    /// What a fetcher of this daemon counts into.
    pub fn fetch(&self) -> FetchMetrics {
        self.0.fetch.clone()
    }

    /// The counters the [`layer`] counts a route's answers with `status` into, found once: for
    /// a shortcut answering that route without the router ([`crate::direct::Shortcut`]), whose
    /// answers must count where the router's would have.
    pub fn answered(&self, template: &str, status: u16) -> Answered {
        let route = route_label(template);
        let ok = |method: &'static str| {
            self.0
                .requests
                .get_or_create(&RequestLabels {
                    route: route.clone(),
                    method,
                    status,
                })
                .clone()
        };
        Answered {
            get: ok("GET"),
            head: ok("HEAD"),
            sent: self.0.sent.get_or_create(&RouteLabels { route: route.clone() }).clone(),
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a metric that could not be encoded is left out
        // rather than failing the scrape.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.0.registry) {
            tracing::warn!(error = %e, "a metric could not be encoded");
        }
        out
    }

    /// The `/metrics` answer, counting `library`'s size anew if the last count is old.
    pub fn response(&self, library: &Arc<Library>) -> Response {
        self.0.library.recount_if_stale(library);
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            self.encode(),
        )
            .into_response()
    }
}

/// One route's counters of answers with one status to GET and HEAD, and of the bytes its
/// answers sent ([`Metrics::answered`]).
#[derive(Debug, Clone)]
pub struct Answered {
    pub get: Counter,
    pub head: Counter,
    pub sent: Counter,
}

/// Middleware counting each request by its route template, method and status, and the bytes
/// of its answer as they are sent (a download cut short counts what left). Requests that
/// match no route count under the route `other`.
pub async fn layer(axum::extract::State(metrics): axum::extract::State<Metrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |m| route_label(m.as_str()));
    let method = method_label(req.method());
    let mut resp = next.run(req).await;
    metrics
        .0
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method,
            status: resp.status().as_u16(),
        })
        .inc();
    let counter = metrics.0.sent.get_or_create(&RouteLabels { route }).clone();
    // A file the kernel sends has no frames to count: it counts as it goes.
    if let Some(send) = resp.extensions_mut().get_mut::<crate::direct::SendFile>() {
        send.sent = Some(counter.clone());
    }
    resp.map(|body| Body::new(Counted { inner: body, counter }))
}

/// A route template as a label: `{pkg}` written `:pkg` and `{*path}` written `*path`, so
/// label values hold no braces (which some exposition parsers cannot read, and which PromQL
/// regular expressions would have to escape).
fn route_label(template: &str) -> String {
    template.replace("{*", "*").replace('{', ":").replace('}', "")
}

/// A body that counts its data frames as they go out. Its size hint is the inner body's, so
/// a `Content-Length` is kept.
struct Counted {
    inner: Body,
    counter: Counter,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::route_label;

    #[test]
    fn route_labels_hold_no_braces() {
        assert_eq!(route_label("/content/{pkg}/{*path}"), "/content/:pkg/*path");
        assert_eq!(route_label("/AdminService/wmi/{*path}"), "/AdminService/wmi/*path");
        assert_eq!(route_label("/node/v1/chunks"), "/node/v1/chunks");
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let m = |s: &str| axum::http::Method::from_bytes(s.as_bytes()).unwrap();
        assert_eq!(super::method_label(&m("GET")), "GET");
        assert_eq!(super::method_label(&m("FROB")), "other");
        assert_eq!(super::method_label(&m("PROPFIND")), "other");
    }
}
