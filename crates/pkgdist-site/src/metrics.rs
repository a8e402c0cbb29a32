//! The site's metrics, beside what every node counts (`pkgdist_node::metrics`): jobs it
//! followed by work and outcome, retries scheduled and validations by result, counted as the
//! distribution manager records them; and, read when scraped from [`pkgdist_db::Summary`],
//! packages, DPs, sites, rows by kind of state, jobs running and queued, and the size of the
//! packages' current versions.

use pkgdist_core::dpstate::Work;
use pkgdist_db::Summary;
use pkgdist_node::metrics::{Metrics, Work as WorkLabel};
pub use pkgdist_node::metrics::{Outcome, Validation};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum RowKind {
    targeted,
    installed,
    in_progress,
    retrying,
    failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    work: WorkLabel,
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ValidationLabels {
    result: Validation,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RowLabels {
    kind: RowKind,
}

/// Everything the site serves at `/metrics`.
#[derive(Debug, Clone)]
pub struct SiteMetrics {
    pub node: Metrics,
    jobs: Family<JobLabels, Counter>,
    retries: Counter,
    validations: Family<ValidationLabels, Counter>,
    rows: Family<RowLabels, Gauge>,
    packages: Gauge,
    dps: Gauge,
    sites: Gauge,
    running: Gauge,
    queued: Gauge,
    package_bytes: Gauge,
    summary_errors: Counter,
}

impl SiteMetrics {
    pub fn new() -> Self {
        let jobs = Family::<JobLabels, Counter>::default();
        let retries = Counter::default();
        let validations = Family::<ValidationLabels, Counter>::default();
        let rows = Family::<RowLabels, Gauge>::default();
        let (packages, dps, sites) = (Gauge::default(), Gauge::default(), Gauge::default());
        let (running, queued, package_bytes) = (Gauge::default(), Gauge::default(), Gauge::default());
        let summary_errors = Counter::default();
        let node = Metrics::new(|r| {
            r.register(
                "site_jobs",
                "Jobs on DPs the site followed to their end, by work and outcome",
                jobs.clone(),
            );
            r.register(
                "site_retries",
                "Failed attempts the site scheduled a retry for (INSTALL_RETRYING, REMOVAL_RETRYING)",
                retries.clone(),
            );
            r.register(
                "site_validations",
                "Validations on DPs ended, by result (status messages 2384 passed, 2385 damaged, 2386 repaired)",
                validations.clone(),
            );
            r.register(
                "site_rows",
                "Package-on-DP rows this site knows, by kind of state: targeted (all), installed (0), in_progress (1, 4, 7, 8), retrying (2, 5), failed (3, 6)",
                rows.clone(),
            );
            r.register("site_packages", "Packages this site knows", packages.clone());
            r.register(
                "site_distribution_points",
                "Distribution points this site knows (its own and those of the sites below)",
                dps.clone(),
            );
            r.register("site_sites", "This site and the sites below it", sites.clone());
            r.register(
                "site_jobs_running",
                "Jobs on DPs being followed now, by every site process on this database",
                running.clone(),
            );
            r.register(
                "site_jobs_queued",
                "Rows in progress (pending, updating, validating, removal pending) on this site's own DPs with no job running: waiting for a slot, a window, a DP or content",
                queued.clone(),
            );
            r.register(
                "site_package_bytes",
                "Size of the packages' current versions (the sum of PackageSize)",
                package_bytes.clone(),
            );
            r.register(
                "site_summary_errors",
                "Scrapes that could not read the site's figures from the database (the figures read from it kept their last values)",
                summary_errors.clone(),
            );
        });
        Self {
            node,
            jobs,
            retries,
            validations,
            rows,
            packages,
            dps,
            sites,
            running,
            queued,
            package_bytes,
            summary_errors,
        }
    }

    /// A scrape could not read [`Summary`].
    pub fn summary_failed(&self) {
        self.summary_errors.inc();
    }

    /// A job on a DP ended; `retry`: another attempt is scheduled.
    pub fn job_ended(&self, work: Work, outcome: Outcome, retry: bool) {
        let work = match work {
            Work::Install => WorkLabel::install,
            Work::Validate => WorkLabel::validate,
            Work::Remove => WorkLabel::remove,
        };
        self.jobs.get_or_create(&JobLabels { work, outcome }).inc();
        if retry {
            self.retries.inc();
        }
    }

    pub fn validated(&self, result: Validation) {
        self.validations.get_or_create(&ValidationLabels { result }).inc();
    }

    /// Sets the figures read at scrape time.
    pub fn set(&self, s: &Summary) {
        let kinds = [
            (RowKind::targeted, s.targeted),
            (RowKind::installed, s.installed),
            (RowKind::in_progress, s.in_progress),
            (RowKind::retrying, s.retrying),
            (RowKind::failed, s.failed),
        ];
        for (kind, n) in kinds {
            self.rows.get_or_create(&RowLabels { kind }).set(n);
        }
        self.packages.set(s.packages);
        self.dps.set(s.dps);
        self.sites.set(s.sites);
        self.running.set(s.jobs_running);
        self.queued.set(s.jobs_queued());
        self.package_bytes.set(s.package_kib.saturating_mul(1024));
    }
}

impl Default for SiteMetrics {
    fn default() -> Self {
        Self::new()
    }
}
