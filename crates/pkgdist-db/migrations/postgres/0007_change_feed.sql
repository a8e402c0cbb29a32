-- What changed, numbered, so the site link moves only changes (design.md, "The site link").
-- The SQLite migration of the same number explains it; the numbers come from the same
-- counters, taken in triggers, so they follow commit order: the counter's row stays locked
-- until the writer commits. Every writer of a numbered column goes through Db::begin (its
-- advisory lock first), so no writer holds a row another waits for while it waits for the
-- counter.
ALTER TABLE package_dps ADD COLUMN changed_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX package_dps_changed ON package_dps (changed_seq);
-- A child's sync asks for intents after the last it applied: rows with one are few.
CREATE INDEX package_dps_intent ON package_dps (intent_seq) WHERE intent_seq > 0;
ALTER TABLE sites ADD COLUMN report_seq BIGINT NOT NULL DEFAULT -1;

CREATE TABLE row_removals (
    seq        BIGINT NOT NULL,
    package_id TEXT NOT NULL,
    nal_path   TEXT NOT NULL,
    PRIMARY KEY (seq, package_id, nal_path)
);

INSERT INTO counters (name, next_value) VALUES ('change', 1) ON CONFLICT (name) DO NOTHING;
INSERT INTO counters (name, next_value) VALUES ('package_change', 1) ON CONFLICT (name) DO NOTHING;

CREATE FUNCTION next_change(counter TEXT) RETURNS BIGINT LANGUAGE SQL VOLATILE AS $$
    UPDATE counters SET next_value = next_value + 1 WHERE name = counter RETURNING next_value - 1
$$;

-- One number per transaction, not per row: every row a transaction writes or removes takes the
-- same number. Each update of the counter's row leaves a version that cannot be reclaimed
-- before the transaction ends, so a number per row would make a transaction of n rows cost
-- n² (a parent applying a child's first report, a refresh of a package on 1,000 DPs). The
-- number is kept for the rest of the transaction in a transaction-local setting.
CREATE FUNCTION change_number() RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    v TEXT := current_setting('pkgdist.change', true);
BEGIN
    IF v IS NULL OR v = '' THEN
        v := next_change('change')::TEXT;
        PERFORM set_config('pkgdist.change', v, true);
    END IF;
    RETURN v::BIGINT;
END $$;

CREATE FUNCTION change_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO row_removals (seq, package_id, nal_path)
        VALUES (change_number(), OLD.package_id, OLD.nal_path)
        ON CONFLICT DO NOTHING;
        RETURN OLD;
    END IF;
    NEW.changed_seq := change_number();
    RETURN NEW;
END $$;
CREATE TRIGGER change_row_written BEFORE INSERT OR UPDATE OF site_code, state, target_version,
    installed_version, attempts, next_attempt_at, last_copied, summary_date, last_message,
    progress_bytes, progress_done, progress_total ON package_dps
FOR EACH ROW EXECUTE FUNCTION change_row();
CREATE TRIGGER change_row_removed AFTER DELETE ON package_dps
FOR EACH ROW EXECUTE FUNCTION change_row();

CREATE FUNCTION change_package() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM next_change('package_change');
    RETURN NULL;
END $$;
CREATE TRIGGER change_package_written AFTER INSERT OR DELETE OR UPDATE OF package_type, name, version,
    manufacturer, language, description, source_version, source_date, package_size, pkg_flags,
    priority, source_site, manifest_hash, created_at ON packages
FOR EACH STATEMENT EXECUTE FUNCTION change_package();
