-- Prestaged content (issue 20): a DP enabled for prestaged content (PreStagingAllowed) takes a
-- package flagged DO_NOT_DOWNLOAD (PkgFlags 0x01000000, "manually copy the content") from a
-- prestaged file imported on it, never over the network. prestaged_version is the newest
-- version the DP said it imported and the site found to be its own (same manifest hash):
-- the row waits until it reaches the target version.
ALTER TABLE distribution_points ADD COLUMN prestaging INTEGER NOT NULL DEFAULT 0;
ALTER TABLE package_dps ADD COLUMN prestaged_version INTEGER NOT NULL DEFAULT 0;
