-- Per package and per DP, how many package-on-DP rows are in each kind of state, kept by
-- triggers. The SQLite migration of the same number explains it (kinds, invariant); writers
-- run one at a time (Db::begin's advisory lock), as for the counts of 0006.
CREATE TABLE package_state_counts (
    package_id  TEXT PRIMARY KEY REFERENCES packages (package_id) ON DELETE CASCADE,
    targeted    BIGINT NOT NULL DEFAULT 0,
    installed   BIGINT NOT NULL DEFAULT 0,
    in_progress BIGINT NOT NULL DEFAULT 0,
    retrying    BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE dp_state_counts (
    nal_path    TEXT PRIMARY KEY REFERENCES distribution_points (nal_path) ON DELETE CASCADE,
    targeted    BIGINT NOT NULL DEFAULT 0,
    installed   BIGINT NOT NULL DEFAULT 0,
    in_progress BIGINT NOT NULL DEFAULT 0,
    retrying    BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0
);

INSERT INTO package_state_counts (package_id, targeted, installed, in_progress, retrying, failed)
SELECT p.package_id, COUNT(r.state),
    COALESCE(SUM(CASE WHEN r.state = 0 THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(CASE WHEN r.state IN (1, 4, 7, 8) THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(CASE WHEN r.state IN (2, 5) THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(CASE WHEN r.state IN (3, 6) THEN 1 ELSE 0 END), 0)
FROM packages p LEFT JOIN package_dps r ON r.package_id = p.package_id GROUP BY p.package_id;
INSERT INTO dp_state_counts (nal_path, targeted, installed, in_progress, retrying, failed)
SELECT d.nal_path, COUNT(r.state),
    COALESCE(SUM(CASE WHEN r.state = 0 THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(CASE WHEN r.state IN (1, 4, 7, 8) THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(CASE WHEN r.state IN (2, 5) THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(CASE WHEN r.state IN (3, 6) THEN 1 ELSE 0 END), 0)
FROM distribution_points d LEFT JOIN package_dps r ON r.nal_path = d.nal_path GROUP BY d.nal_path;

CREATE FUNCTION state_counts_package_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO package_state_counts (package_id) VALUES (NEW.package_id);
    RETURN NULL;
END $$;
CREATE TRIGGER state_counts_package_added AFTER INSERT ON packages
FOR EACH ROW EXECUTE FUNCTION state_counts_package_added();

CREATE FUNCTION state_counts_dp_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dp_state_counts (nal_path) VALUES (NEW.nal_path);
    RETURN NULL;
END $$;
CREATE TRIGGER state_counts_dp_added AFTER INSERT ON distribution_points
FOR EACH ROW EXECUTE FUNCTION state_counts_dp_added();

-- A row's contribution to each count: +1 or -1 (sign) in the kinds its state is in.
CREATE FUNCTION state_counts_move(pkg TEXT, nal TEXT, state BIGINT, sign BIGINT, rows BIGINT)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    i BIGINT := CASE WHEN state = 0 THEN sign ELSE 0 END;
    p BIGINT := CASE WHEN state IN (1, 4, 7, 8) THEN sign ELSE 0 END;
    r BIGINT := CASE WHEN state IN (2, 5) THEN sign ELSE 0 END;
    f BIGINT := CASE WHEN state IN (3, 6) THEN sign ELSE 0 END;
BEGIN
    UPDATE package_state_counts SET targeted = targeted + rows, installed = installed + i,
        in_progress = in_progress + p, retrying = retrying + r, failed = failed + f
    WHERE package_id = pkg;
    UPDATE dp_state_counts SET targeted = targeted + rows, installed = installed + i,
        in_progress = in_progress + p, retrying = retrying + r, failed = failed + f
    WHERE nal_path = nal;
END $$;

CREATE FUNCTION state_counts_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM state_counts_move(NEW.package_id, NEW.nal_path, NEW.state, 1, 1);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM state_counts_move(OLD.package_id, OLD.nal_path, OLD.state, -1, -1);
    ELSIF OLD.state <> NEW.state THEN
        PERFORM state_counts_move(OLD.package_id, OLD.nal_path, OLD.state, -1, 0);
        PERFORM state_counts_move(NEW.package_id, NEW.nal_path, NEW.state, 1, 0);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER state_counts_row_changed AFTER INSERT OR DELETE OR UPDATE OF state ON package_dps
FOR EACH ROW EXECUTE FUNCTION state_counts_row_changed();
