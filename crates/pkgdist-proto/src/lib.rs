//! What the site server and its clients (the CLI, scripts, later the DPs) agree on: the class
//! catalog of the AdminService-style API, the envelopes it answers with, the error body, and a
//! typed client.

pub mod catalog;
pub mod classes;
pub mod client;
pub mod json;
pub mod node;
pub mod wire;

pub use catalog::{ClassDef, MethodDef, Param, PropDef, Ty, class};
pub use client::{Client, ClientError};
pub use wire::*;

/// How long pkgdist's HTTP clients keep an idle pooled connection: shorter than the 30 s after
/// which a daemon closes a connection that sends no request (`pkgdist_node::listen`), so a
/// request never goes out on a connection the server is closing.
pub const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(20);
