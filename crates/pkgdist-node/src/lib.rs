//! What every pkgdist content node does, site or distribution point alike:
//!
//! - [`serve`]: client downloads of package files (HTTP ranges, ETags, listings);
//! - [`source`]: the node-protocol routes that hand manifests and chunks to other nodes;
//! - [`fetch`]: the other side: fetch a manifest against a trusted hash, then only the missing
//!   chunks, in verified batches, into a content library;
//! - [`download`]: `pkgdist fetch`, the same into a plain folder, reusing what is there;
//! - [`pace`]: rate limits, applied where the bytes leave;
//! - [`served`]: verified plain copies of the files clients ask for, sent by the kernel;
//! - [`listen`]: the accept loop both daemons serve with: what one client may hold of them;
//! - [`direct`]: a DP's own HTTP/1.1 loop for GET and HEAD, which can `sendfile`;
//! - [`metrics`]: what every node counts, and its Prometheus `/metrics` answer;
//! - [`tls`]: the site's CA, the certificates it issues, and TLS for listeners and clients.

pub mod direct;
pub mod download;
pub mod fetch;
pub mod groups;
pub mod listen;
pub mod metrics;
pub mod pace;
pub mod serve;
pub mod served;
pub mod source;
pub mod tls;
pub mod util;
