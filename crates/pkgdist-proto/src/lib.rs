//! What the site server and its clients (the CLI, scripts, later the DPs) agree on: the class
//! catalog of the AdminService-style API, the envelopes it answers with, the error body, and a
//! typed client.

pub mod catalog;
pub mod classes;
pub mod client;
pub mod node;
pub mod wire;

pub use catalog::{ClassDef, MethodDef, Param, PropDef, Ty, class};
pub use client::{Client, ClientError};
pub use wire::*;
