//! Dev-only helpers for pkgdist's tests and benchmarks: deterministic content generators and
//! corruption helpers. Nothing here ships in the `pkgdist` binary.

pub mod damage;
pub mod generate;
pub mod os_tree;
pub mod postgres;
pub mod process;
pub mod webdriver;
pub mod wmi;
