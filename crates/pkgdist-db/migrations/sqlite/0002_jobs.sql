-- Distribution jobs. A job sent to a DP is named <PackageID>-<job_key>-<job_seq>:
-- job_key is random and set when the row is created, so a package removed from a DP and
-- targeted again never reuses an old job's name (the DP would answer with the old job);
-- job_seq is bumped by every change of the row's target or state, and the result coming back
-- is applied only if the row is still at that sequence, so a late answer to a superseded job
-- (a refresh, a cancel, a redistribute landed meanwhile) never overwrites newer state.
ALTER TABLE package_dps ADD COLUMN job_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE package_dps ADD COLUMN job_key TEXT NOT NULL DEFAULT '';
