-- Leased jobs, queue order, progress, and per-DP distribution settings.
--
-- A worker that takes a row's job writes its lease (owner and expiry) and renews it while it
-- follows the job; a row whose lease has expired (its worker crashed or is stuck) is due again.
-- queued_at is set whenever the row gets a new job, so equal priorities go first come, first
-- served. progress_* is what the DP last reported of the running job, for `pkgdist status`.
ALTER TABLE package_dps ADD COLUMN lease_owner TEXT;
ALTER TABLE package_dps ADD COLUMN lease_until TEXT;
ALTER TABLE package_dps ADD COLUMN queued_at TEXT;
ALTER TABLE package_dps ADD COLUMN progress_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE package_dps ADD COLUMN progress_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE package_dps ADD COLUMN progress_total INTEGER NOT NULL DEFAULT 0;

-- repair_damaged: after a validation finds damage, the DP repairs it from its sources (1) or
-- only reports it (0, ConfigMgr's behaviour). validation_schedule: an interval string
-- (SMS_ScheduleMethods), '' for none. throughput_kbps: how fast recent transfers to the DP went
-- (NULL until measured); faster DPs are served first.
-- Rate limits (ConfigMgr's Rate Limits tab): rate_mode 0 unlimited, 1 pulse (pulse_block_kb
-- sent, then a pause of pulse_delay_secs), 2 a percentage of each hour (hourly_percent: 24
-- comma-separated percentages, local midnight first), 3 rate_bytes_per_sec (pkgdist).
-- availability: 168 digits, one per hour of the week from Sunday 00:00 local time: 0 open,
-- 1 medium and high priority only, 2 high only, 3 closed; '' for always open.
ALTER TABLE distribution_points ADD COLUMN repair_damaged INTEGER NOT NULL DEFAULT 1;
ALTER TABLE distribution_points ADD COLUMN validation_schedule TEXT NOT NULL DEFAULT '';
ALTER TABLE distribution_points ADD COLUMN validation_checked_at TEXT;
ALTER TABLE distribution_points ADD COLUMN throughput_kbps INTEGER;
ALTER TABLE distribution_points ADD COLUMN rate_bytes_per_sec INTEGER NOT NULL DEFAULT 0;
ALTER TABLE distribution_points ADD COLUMN rate_mode INTEGER NOT NULL DEFAULT 0;
ALTER TABLE distribution_points ADD COLUMN pulse_block_kb INTEGER NOT NULL DEFAULT 0;
ALTER TABLE distribution_points ADD COLUMN pulse_delay_secs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE distribution_points ADD COLUMN hourly_percent TEXT NOT NULL DEFAULT '';
ALTER TABLE distribution_points ADD COLUMN availability TEXT NOT NULL DEFAULT '';
-- Rows from before: queued when they last changed (NULLs would sort differently per engine).
UPDATE package_dps SET queued_at = summary_date WHERE queued_at IS NULL;
