//! The DP's own metrics, beside what every node counts (`pkgdist_node::metrics`): jobs by kind
//! and outcome, validations by result, and, read when scraped, jobs running and versions held.

use pkgdist_node::metrics::{Metrics, Work};
pub use pkgdist_node::metrics::{Outcome, Validation};
use pkgdist_proto::node::JobKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: Work,
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ValidationLabels {
    result: Validation,
}

/// The handles the DP's jobs count into.
#[derive(Debug, Clone, Default)]
pub struct JobMetrics {
    ended: Family<JobLabels, Counter>,
    validations: Family<ValidationLabels, Counter>,
}

impl JobMetrics {
    pub fn ended(&self, kind: JobKind, outcome: Outcome) {
        let kind = match kind {
            JobKind::Install => Work::install,
            JobKind::Validate => Work::validate,
            JobKind::Remove => Work::remove,
        };
        self.ended.get_or_create(&JobLabels { kind, outcome }).inc();
    }

    pub fn validated(&self, result: Validation) {
        self.validations.get_or_create(&ValidationLabels { result }).inc();
    }
}

/// Everything a DP serves at `/metrics`.
#[derive(Debug, Clone)]
pub struct DpMetrics {
    pub node: Metrics,
    pub jobs: JobMetrics,
    /// Set when scraped.
    pub running: Gauge,
    /// Set when scraped.
    pub versions: Gauge,
}

impl DpMetrics {
    pub fn new() -> Self {
        let jobs = JobMetrics::default();
        let running = Gauge::default();
        let versions = Gauge::default();
        let node = Metrics::new(|r| {
            r.register(
                "dp_jobs",
                "Jobs from the site ended, by kind and outcome",
                jobs.ended.clone(),
            );
            r.register(
                "dp_validations",
                "Validations of content held (ValidationSchedule, VerifyPackage) ended, by result",
                jobs.validations.clone(),
            );
            r.register("dp_jobs_running", "Jobs running now", running.clone());
            r.register(
                "dp_versions",
                "Package versions held in the DP's library",
                versions.clone(),
            );
        });
        Self {
            node,
            jobs,
            running,
            versions,
        }
    }
}

impl Default for DpMetrics {
    fn default() -> Self {
        Self::new()
    }
}
