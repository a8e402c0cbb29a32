-- pkgdist site metadata, SQLite dialect. Keep in step with ../postgres/0001_init.sql:
-- same tables, columns and meanings; only types and identity columns differ.
-- Times are RFC 3339 UTC text ("2026-11-21T05:37:39Z"), so text order is time order.
-- Booleans are 0/1 integers, so one decoder serves both engines.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE counters (
    name       TEXT PRIMARY KEY,
    next_value INTEGER NOT NULL
);

CREATE TABLE packages (
    package_id         TEXT PRIMARY KEY,
    package_type       INTEGER NOT NULL,
    name               TEXT NOT NULL,
    version            TEXT NOT NULL DEFAULT '',
    manufacturer       TEXT NOT NULL DEFAULT '',
    language           TEXT NOT NULL DEFAULT '',
    description        TEXT NOT NULL DEFAULT '',
    pkg_source_path    TEXT NOT NULL DEFAULT '',
    pkg_source_flag    INTEGER NOT NULL,
    source_version     INTEGER NOT NULL DEFAULT 0,
    source_date        TEXT,
    last_refresh_time  TEXT,
    package_size       INTEGER NOT NULL DEFAULT 0,
    pkg_flags          INTEGER NOT NULL DEFAULT 0,
    priority           INTEGER NOT NULL DEFAULT 2,
    action_in_progress INTEGER NOT NULL DEFAULT 0,
    source_site        TEXT NOT NULL,
    refresh_schedule   TEXT NOT NULL DEFAULT '',
    -- Occurrences of refresh_schedule up to this time have been handled.
    schedule_checked_at TEXT,
    manifest_hash      TEXT,
    created_at         TEXT NOT NULL
);

CREATE TABLE distribution_points (
    nal_path              TEXT PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    site_code             TEXT NOT NULL,
    url                   TEXT,
    description           TEXT NOT NULL DEFAULT '',
    is_pull               INTEGER NOT NULL DEFAULT 0,
    priority              INTEGER NOT NULL DEFAULT 200,
    enrollment_token_hash TEXT,
    credential_hash       TEXT,
    created_at            TEXT NOT NULL
);

CREATE TABLE dp_groups (
    group_id    TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    source_site TEXT NOT NULL,
    created_on  TEXT NOT NULL,
    modified_on TEXT NOT NULL
);

CREATE TABLE dp_group_members (
    group_id TEXT NOT NULL REFERENCES dp_groups (group_id) ON DELETE CASCADE,
    nal_path TEXT NOT NULL REFERENCES distribution_points (nal_path) ON DELETE CASCADE,
    PRIMARY KEY (group_id, nal_path)
);

CREATE TABLE dp_group_packages (
    group_id   TEXT NOT NULL REFERENCES dp_groups (group_id) ON DELETE CASCADE,
    package_id TEXT NOT NULL REFERENCES packages (package_id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, package_id)
);

-- One package on one DP: SMS_DistributionPoint and SMS_PackageStatusDistPointsSummarizer.
CREATE TABLE package_dps (
    package_id        TEXT NOT NULL REFERENCES packages (package_id) ON DELETE CASCADE,
    nal_path          TEXT NOT NULL REFERENCES distribution_points (nal_path) ON DELETE CASCADE,
    site_code         TEXT NOT NULL,
    state             INTEGER NOT NULL,
    target_version    INTEGER NOT NULL,
    installed_version INTEGER NOT NULL DEFAULT 0,
    redistribute      INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT,
    last_copied       TEXT,
    summary_date      TEXT NOT NULL,
    last_message      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (package_id, nal_path)
);

CREATE TABLE status_messages (
    id                INTEGER PRIMARY KEY AUTOINCREMENT, -- ids are never reused
    package_id        TEXT NOT NULL,
    nal_path          TEXT NOT NULL,
    site_code         TEXT NOT NULL,
    message_id        INTEGER NOT NULL,
    message_state     INTEGER NOT NULL,
    severity          INTEGER NOT NULL,
    description       TEXT NOT NULL,
    bytes_transferred INTEGER NOT NULL DEFAULT 0,
    time              TEXT NOT NULL
);
CREATE INDEX status_messages_package ON status_messages (package_id);

-- DP and group names are unique whatever their case, as ConfigMgr's collation makes them.
CREATE UNIQUE INDEX distribution_points_name_ci ON distribution_points (lower(name));
CREATE UNIQUE INDEX dp_groups_name_ci ON dp_groups (lower(name));

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
