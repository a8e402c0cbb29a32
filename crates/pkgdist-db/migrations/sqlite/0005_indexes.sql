-- Indexes for every hot predicate, so that reads and background work cost what they return
-- and never a scan of a whole table (issue 14; figures in bench/RESULTS.md, bench/scale).
--
-- package_dps is the big table (packages × DPs). Its primary key (package_id, nal_path)
-- serves per-package reads; these serve the rest:
-- per-DP reads, and the cascade when a DP is deleted;
CREATE INDEX package_dps_dp ON package_dps (nal_path);
-- the distribution manager's due rows (pending states; retries by time);
CREATE INDEX package_dps_due ON package_dps (state, next_attempt_at);
-- jobs under a live lease.
CREATE INDEX package_dps_lease ON package_dps (lease_until);
-- A DP's groups; a package's groups; the pull DPs a DP is a source of.
CREATE INDEX dp_group_members_dp ON dp_group_members (nal_path);
CREATE INDEX dp_group_packages_package ON dp_group_packages (package_id);
CREATE INDEX pull_sources_source ON pull_sources (source_nal);
-- Status messages by DP, and by age (retention).
CREATE INDEX status_messages_dp ON status_messages (nal_path);
CREATE INDEX status_messages_time ON status_messages (time);
-- The scheduler reads only what has a schedule.
CREATE INDEX packages_scheduled ON packages (package_id) WHERE refresh_schedule <> '';
CREATE INDEX distribution_points_validated ON distribution_points (nal_path) WHERE validation_schedule <> '';
