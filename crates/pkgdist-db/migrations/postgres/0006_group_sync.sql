-- How many members of a group hold each of the group's packages INSTALLED at the package's
-- current version, kept by triggers on every table it depends on. A group's ContentInSync and
-- OutOfSyncContentCount then read one row per package of the group, instead of one lookup
-- per package and member (10,000,000 at 1,000 DPs x 10,000 packages).
--
-- The invariant, checked on both engines by the conformance suite (Db::group_sync_drift):
--   in_sync = COUNT of members m of group_id with a package_dps row (package_id, m) whose
--             state is 0 (INSTALLED) and installed_version is the package's source_version.
-- Every trigger evaluates "in sync" against the package's current source_version, so a
-- refresh (which changes it) recounts the package, and row changes move the count by their
-- difference. (The SQLite migration of the same number has the same triggers.) Writers run
-- one at a time (an advisory lock taken by every write transaction, Db::begin), as on
-- SQLite: two at once could each miss the other's uncommitted change.
-- dp_groups.member_count is kept the same way, so comparing a count with it costs nothing.
ALTER TABLE dp_groups ADD COLUMN member_count BIGINT NOT NULL DEFAULT 0;
UPDATE dp_groups SET member_count = (SELECT COUNT(*) FROM dp_group_members m WHERE m.group_id = dp_groups.group_id);

CREATE TABLE group_package_sync (
    group_id   TEXT NOT NULL,
    package_id TEXT NOT NULL,
    in_sync    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, package_id),
    FOREIGN KEY (group_id, package_id) REFERENCES dp_group_packages (group_id, package_id) ON DELETE CASCADE
);
-- A refresh recounts one package in every group.
CREATE INDEX group_package_sync_package ON group_package_sync (package_id);

INSERT INTO group_package_sync (group_id, package_id, in_sync)
SELECT gp.group_id, gp.package_id,
    (SELECT COUNT(*) FROM dp_group_members m
        JOIN package_dps r ON r.nal_path = m.nal_path AND r.package_id = gp.package_id
        JOIN packages p ON p.package_id = gp.package_id
     WHERE m.group_id = gp.group_id AND r.state = 0 AND r.installed_version = p.source_version)
FROM dp_group_packages gp;

-- 1 when a row is in sync with its package's current version, else 0.
CREATE FUNCTION group_sync_flag(state BIGINT, installed BIGINT, package TEXT) RETURNS BIGINT
LANGUAGE SQL STABLE AS $$
    SELECT CASE WHEN state = 0 AND installed = (SELECT source_version FROM packages WHERE package_id = package)
        THEN 1 ELSE 0 END
$$;

CREATE FUNCTION group_sync_package_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO group_package_sync (group_id, package_id, in_sync)
    SELECT NEW.group_id, NEW.package_id,
        (SELECT COUNT(*) FROM dp_group_members m
            JOIN package_dps r ON r.nal_path = m.nal_path AND r.package_id = NEW.package_id
            JOIN packages p ON p.package_id = NEW.package_id
         WHERE m.group_id = NEW.group_id AND r.state = 0 AND r.installed_version = p.source_version);
    RETURN NULL;
END $$;
CREATE TRIGGER group_sync_package_added AFTER INSERT ON dp_group_packages
FOR EACH ROW EXECUTE FUNCTION group_sync_package_added();

-- A DP joins (+1) or leaves (-1) a group: each package of the group it holds in sync.
CREATE FUNCTION group_sync_member_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    m dp_group_members%ROWTYPE;
    delta BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN m := NEW; delta := 1; ELSE m := OLD; delta := -1; END IF;
    UPDATE dp_groups SET member_count = member_count + delta WHERE group_id = m.group_id;
    UPDATE group_package_sync SET in_sync = in_sync + delta
    WHERE group_id = m.group_id AND package_id IN (
        SELECT r.package_id FROM package_dps r JOIN packages p ON p.package_id = r.package_id
        WHERE r.nal_path = m.nal_path AND r.state = 0 AND r.installed_version = p.source_version);
    RETURN NULL;
END $$;
CREATE TRIGGER group_sync_member_changed AFTER INSERT OR DELETE ON dp_group_members
FOR EACH ROW EXECUTE FUNCTION group_sync_member_changed();

-- A row appears, goes, or changes state or installed version: the difference of its flags.
CREATE FUNCTION group_sync_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta BIGINT := 0;
    pkg TEXT;
    nal TEXT;
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        delta := delta + group_sync_flag(NEW.state, NEW.installed_version, NEW.package_id);
        pkg := NEW.package_id; nal := NEW.nal_path;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        delta := delta - group_sync_flag(OLD.state, OLD.installed_version, OLD.package_id);
        pkg := OLD.package_id; nal := OLD.nal_path;
    END IF;
    IF delta <> 0 THEN
        UPDATE group_package_sync SET in_sync = in_sync + delta
        WHERE package_id = pkg AND group_id IN (SELECT group_id FROM dp_group_members WHERE nal_path = nal);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER group_sync_row_changed AFTER INSERT OR DELETE OR UPDATE OF state, installed_version ON package_dps
FOR EACH ROW EXECUTE FUNCTION group_sync_row_changed();

CREATE FUNCTION group_sync_version_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.source_version <> OLD.source_version THEN
        UPDATE group_package_sync s SET in_sync = (
            SELECT COUNT(*) FROM dp_group_members m
                JOIN package_dps r ON r.nal_path = m.nal_path AND r.package_id = NEW.package_id
            WHERE m.group_id = s.group_id AND r.state = 0 AND r.installed_version = NEW.source_version)
        WHERE s.package_id = NEW.package_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER group_sync_version_changed AFTER UPDATE OF source_version ON packages
FOR EACH ROW EXECUTE FUNCTION group_sync_version_changed();

-- A DP being deleted leaves its groups first, while its rows still exist, so its in-sync
-- rows are taken off their groups' counts: PostgreSQL's cascade deletes the memberships and
-- the rows in one step, after which neither trigger above could see the other's rows.
CREATE FUNCTION group_sync_dp_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM dp_group_members WHERE nal_path = OLD.nal_path;
    RETURN OLD;
END $$;
CREATE TRIGGER group_sync_dp_deleted BEFORE DELETE ON distribution_points
FOR EACH ROW EXECUTE FUNCTION group_sync_dp_deleted();
