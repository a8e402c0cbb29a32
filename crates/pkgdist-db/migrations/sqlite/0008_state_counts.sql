-- How many package-on-DP rows of each package and of each DP are in each kind of state, kept
-- by triggers as migration 0006 keeps group counts: SMS_PackageStatusRootSummarizer (per
-- package) and SMS_DPStatusInfo (per DP) then read one row, not every row of the package or DP
-- (10,000 of a DP at 1,000 DPs x 10,000 packages).
--
-- Kinds by state code: installed 0; in progress 1 (install pending), 4 (removal pending),
-- 7 (content updating), 8 (validating); retrying 2, 5; failed 3, 6. The invariant, checked on
-- both engines by the group-sync property test (Db::state_counts_drift): every count equals a
-- recount of the rows.
CREATE TABLE package_state_counts (
    package_id  TEXT PRIMARY KEY REFERENCES packages (package_id) ON DELETE CASCADE,
    targeted    INTEGER NOT NULL DEFAULT 0,
    installed   INTEGER NOT NULL DEFAULT 0,
    in_progress INTEGER NOT NULL DEFAULT 0,
    retrying    INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE dp_state_counts (
    nal_path    TEXT PRIMARY KEY REFERENCES distribution_points (nal_path) ON DELETE CASCADE,
    targeted    INTEGER NOT NULL DEFAULT 0,
    installed   INTEGER NOT NULL DEFAULT 0,
    in_progress INTEGER NOT NULL DEFAULT 0,
    retrying    INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0
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

CREATE TRIGGER state_counts_package_added AFTER INSERT ON packages
BEGIN
    INSERT INTO package_state_counts (package_id) VALUES (NEW.package_id);
END;
CREATE TRIGGER state_counts_dp_added AFTER INSERT ON distribution_points
BEGIN
    INSERT INTO dp_state_counts (nal_path) VALUES (NEW.nal_path);
END;

CREATE TRIGGER state_counts_row_added AFTER INSERT ON package_dps
BEGIN
    UPDATE package_state_counts SET targeted = targeted + 1,
        installed = installed + (CASE WHEN NEW.state = 0 THEN 1 ELSE 0 END),
        in_progress = in_progress + (CASE WHEN NEW.state IN (1, 4, 7, 8) THEN 1 ELSE 0 END),
        retrying = retrying + (CASE WHEN NEW.state IN (2, 5) THEN 1 ELSE 0 END),
        failed = failed + (CASE WHEN NEW.state IN (3, 6) THEN 1 ELSE 0 END)
    WHERE package_id = NEW.package_id;
    UPDATE dp_state_counts SET targeted = targeted + 1,
        installed = installed + (CASE WHEN NEW.state = 0 THEN 1 ELSE 0 END),
        in_progress = in_progress + (CASE WHEN NEW.state IN (1, 4, 7, 8) THEN 1 ELSE 0 END),
        retrying = retrying + (CASE WHEN NEW.state IN (2, 5) THEN 1 ELSE 0 END),
        failed = failed + (CASE WHEN NEW.state IN (3, 6) THEN 1 ELSE 0 END)
    WHERE nal_path = NEW.nal_path;
END;

CREATE TRIGGER state_counts_row_removed AFTER DELETE ON package_dps
BEGIN
    UPDATE package_state_counts SET targeted = targeted - 1,
        installed = installed - (CASE WHEN OLD.state = 0 THEN 1 ELSE 0 END),
        in_progress = in_progress - (CASE WHEN OLD.state IN (1, 4, 7, 8) THEN 1 ELSE 0 END),
        retrying = retrying - (CASE WHEN OLD.state IN (2, 5) THEN 1 ELSE 0 END),
        failed = failed - (CASE WHEN OLD.state IN (3, 6) THEN 1 ELSE 0 END)
    WHERE package_id = OLD.package_id;
    UPDATE dp_state_counts SET targeted = targeted - 1,
        installed = installed - (CASE WHEN OLD.state = 0 THEN 1 ELSE 0 END),
        in_progress = in_progress - (CASE WHEN OLD.state IN (1, 4, 7, 8) THEN 1 ELSE 0 END),
        retrying = retrying - (CASE WHEN OLD.state IN (2, 5) THEN 1 ELSE 0 END),
        failed = failed - (CASE WHEN OLD.state IN (3, 6) THEN 1 ELSE 0 END)
    WHERE nal_path = OLD.nal_path;
END;

CREATE TRIGGER state_counts_row_changed AFTER UPDATE OF state ON package_dps
WHEN OLD.state <> NEW.state
BEGIN
    UPDATE package_state_counts SET
        installed = installed + (CASE WHEN NEW.state = 0 THEN 1 ELSE 0 END) - (CASE WHEN OLD.state = 0 THEN 1 ELSE 0 END),
        in_progress = in_progress + (CASE WHEN NEW.state IN (1, 4, 7, 8) THEN 1 ELSE 0 END) - (CASE WHEN OLD.state IN (1, 4, 7, 8) THEN 1 ELSE 0 END),
        retrying = retrying + (CASE WHEN NEW.state IN (2, 5) THEN 1 ELSE 0 END) - (CASE WHEN OLD.state IN (2, 5) THEN 1 ELSE 0 END),
        failed = failed + (CASE WHEN NEW.state IN (3, 6) THEN 1 ELSE 0 END) - (CASE WHEN OLD.state IN (3, 6) THEN 1 ELSE 0 END)
    WHERE package_id = NEW.package_id;
    UPDATE dp_state_counts SET
        installed = installed + (CASE WHEN NEW.state = 0 THEN 1 ELSE 0 END) - (CASE WHEN OLD.state = 0 THEN 1 ELSE 0 END),
        in_progress = in_progress + (CASE WHEN NEW.state IN (1, 4, 7, 8) THEN 1 ELSE 0 END) - (CASE WHEN OLD.state IN (1, 4, 7, 8) THEN 1 ELSE 0 END),
        retrying = retrying + (CASE WHEN NEW.state IN (2, 5) THEN 1 ELSE 0 END) - (CASE WHEN OLD.state IN (2, 5) THEN 1 ELSE 0 END),
        failed = failed + (CASE WHEN NEW.state IN (3, 6) THEN 1 ELSE 0 END) - (CASE WHEN OLD.state IN (3, 6) THEN 1 ELSE 0 END)
    WHERE nal_path = NEW.nal_path;
END;
