-- Distribution jobs. Every change of a package-on-DP row's target or state bumps job_seq; the
-- job sent to the DP is named after it (<PackageID>-<job_seq>), and the result coming back is
-- applied only if the row is still at that sequence, so a late answer to a superseded job
-- (a refresh, a cancel, a redistribute landed meanwhile) can never overwrite newer state.
ALTER TABLE package_dps ADD COLUMN job_seq INTEGER NOT NULL DEFAULT 0;
