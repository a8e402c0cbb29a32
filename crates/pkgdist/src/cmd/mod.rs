//! One module per command group.

pub mod admin;
pub mod content;
pub mod schedule;
pub mod site;
