-- What changed, numbered, so the site link moves only changes (design.md, "The site link").
--
-- Every write of a reported column of a package-on-DP row takes the next value of the counter
-- 'change' into changed_seq; every removal of a row takes one into row_removals. A child site
-- reports the rows and removals numbered after what its parent has acknowledged, not its
-- whole table every poll. Writers run one at a time (SQLite's write lock; on PostgreSQL the
-- advisory lock of Db::begin and the counter's row lock), so numbers are handed out in commit
-- order: a reader that has seen change n has seen every change before it.
--
-- (On PostgreSQL one number serves a whole transaction; here each row takes its own, which
-- costs a counter update per row but no more: SQLite updates the counter's row in place.)
--
-- Removals are kept for a while and then forgotten (Db::prune_row_removals, hourly, keeping
-- the last hour's): a report whose base is before what was forgotten goes whole instead.
--
-- The counter 'package_change' moves with every change to what a package's metadata carries
-- down the link, so a parent answers "unchanged" instead of listing every package every poll.
--
-- sites.report_seq (at a parent): the child's change number its copy of the child's rows is
-- complete up to; -1 until a whole report has been applied.
ALTER TABLE package_dps ADD COLUMN changed_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX package_dps_changed ON package_dps (changed_seq);
-- A child's sync asks for intents after the last it applied: rows with one are few.
CREATE INDEX package_dps_intent ON package_dps (intent_seq) WHERE intent_seq > 0;
ALTER TABLE sites ADD COLUMN report_seq INTEGER NOT NULL DEFAULT -1;

CREATE TABLE row_removals (
    seq        INTEGER NOT NULL,
    package_id TEXT NOT NULL,
    nal_path   TEXT NOT NULL,
    PRIMARY KEY (seq, package_id, nal_path)
);

INSERT INTO counters (name, next_value) VALUES ('change', 1) ON CONFLICT (name) DO NOTHING;
INSERT INTO counters (name, next_value) VALUES ('package_change', 1) ON CONFLICT (name) DO NOTHING;

CREATE TRIGGER change_row_added AFTER INSERT ON package_dps
BEGIN
    UPDATE counters SET next_value = next_value + 1 WHERE name = 'change';
    UPDATE package_dps SET changed_seq = (SELECT next_value - 1 FROM counters WHERE name = 'change')
    WHERE package_id = NEW.package_id AND nal_path = NEW.nal_path;
END;

CREATE TRIGGER change_row_changed AFTER UPDATE OF site_code, state, target_version, installed_version,
    attempts, next_attempt_at, last_copied, summary_date, last_message, progress_bytes, progress_done,
    progress_total ON package_dps
BEGIN
    UPDATE counters SET next_value = next_value + 1 WHERE name = 'change';
    UPDATE package_dps SET changed_seq = (SELECT next_value - 1 FROM counters WHERE name = 'change')
    WHERE package_id = NEW.package_id AND nal_path = NEW.nal_path;
END;

CREATE TRIGGER change_row_removed AFTER DELETE ON package_dps
BEGIN
    UPDATE counters SET next_value = next_value + 1 WHERE name = 'change';
    INSERT INTO row_removals (seq, package_id, nal_path)
    SELECT next_value - 1, OLD.package_id, OLD.nal_path FROM counters WHERE name = 'change';
END;

CREATE TRIGGER change_package_added AFTER INSERT ON packages
BEGIN
    UPDATE counters SET next_value = next_value + 1 WHERE name = 'package_change';
END;

CREATE TRIGGER change_package_changed AFTER UPDATE OF package_type, name, version, manufacturer, language,
    description, source_version, source_date, package_size, pkg_flags, priority, source_site,
    manifest_hash, created_at ON packages
BEGIN
    UPDATE counters SET next_value = next_value + 1 WHERE name = 'package_change';
END;

CREATE TRIGGER change_package_removed AFTER DELETE ON packages
BEGIN
    UPDATE counters SET next_value = next_value + 1 WHERE name = 'package_change';
END;
