//! The pkgdist distribution point as a library.
//!
//! Built so far: [`serve`], the client download routes over the DP's content library. The
//! daemon (`pkgdist dp run`), enrollment and the node protocol that fills the library from the
//! site come next (issue 4).

pub mod serve;
