-- The site hierarchy and pull DPs (DESIGN.md §4; ConfigMgr §7.6, §7.10).
--
-- sites: this site's children and, below them, every site they report (the tree SMS_Site
-- shows). via_site is the child through which a site is reached (its own code for a child).
-- A child is registered by the administrator (enrollment_token_hash), then enrolls with the
-- token and a credential of its own (credential_hash). rate_bytes_per_sec limits what this
-- site sends the child (0 unlimited). applied_seq is how far the child has applied this site's
-- intents (package_dps.intent_seq).
CREATE TABLE sites (
    site_code             TEXT PRIMARY KEY,
    site_name             TEXT NOT NULL DEFAULT '',
    parent_code           TEXT NOT NULL,
    via_site              TEXT NOT NULL,
    url                   TEXT,
    enrollment_token_hash TEXT,
    credential_hash       TEXT,
    rate_bytes_per_sec    BIGINT NOT NULL DEFAULT 0,
    applied_seq           BIGINT NOT NULL DEFAULT 0,
    last_report_at        TEXT,
    created_at            TEXT NOT NULL
);

-- A DP of a site below this one (via_site: the child it is reached through), known from that
-- child's reports; NULL for this site's own DPs. Such a DP has no URL or credential here, so
-- the distribution manager never sends it a job: its own site does.
ALTER TABLE distribution_points ADD COLUMN via_site TEXT;

-- An administrator's action on a row of a DP below this site: intent_seq orders it among all
-- such actions (the counter 'intent'), intent says which action it was (target, redistribute,
-- remove, verify, cancel). The child applies intents newer than what it applied last.
ALTER TABLE package_dps ADD COLUMN intent_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE package_dps ADD COLUMN intent TEXT NOT NULL DEFAULT '';

-- A pull DP's source DPs: lowest rank first, equal ranks in random order.
CREATE TABLE pull_sources (
    nal_path   TEXT NOT NULL REFERENCES distribution_points (nal_path) ON DELETE CASCADE,
    source_nal TEXT NOT NULL REFERENCES distribution_points (nal_path) ON DELETE CASCADE,
    rank       BIGINT NOT NULL,
    PRIMARY KEY (nal_path, source_nal)
);

-- Content a child site replicated from its parent into its own library: one row per version,
-- with what crossed the link (state 0 done, 1 fetching, 2 failed; bytes as on the wire).
CREATE TABLE site_content (
    package_id     TEXT NOT NULL,
    version        BIGINT NOT NULL,
    state          BIGINT NOT NULL,
    bytes_received BIGINT NOT NULL DEFAULT 0,
    chunks_fetched BIGINT NOT NULL DEFAULT 0,
    chunks_total   BIGINT NOT NULL DEFAULT 0,
    attempts       BIGINT NOT NULL DEFAULT 0,
    message        TEXT NOT NULL DEFAULT '',
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (package_id, version)
);
