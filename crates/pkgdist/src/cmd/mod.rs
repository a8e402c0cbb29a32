//! One module per command group.

pub mod admin;
pub mod content;
pub mod node;
pub mod schedule;
pub mod site;
pub mod status;
