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
-- difference. `+r.state` keeps SQLite off the state index in these lookups: without
-- statistics its planner would take it over the (package, DP) key or the DP index, and read
-- every INSTALLED row of the site for one DP or package.
-- dp_groups.member_count is kept the same way, so comparing a count with it costs nothing.
ALTER TABLE dp_groups ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;
UPDATE dp_groups SET member_count = (SELECT COUNT(*) FROM dp_group_members m WHERE m.group_id = dp_groups.group_id);

CREATE TABLE group_package_sync (
    group_id   TEXT NOT NULL,
    package_id TEXT NOT NULL,
    in_sync    INTEGER NOT NULL DEFAULT 0,
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
     WHERE m.group_id = gp.group_id AND +r.state = 0 AND r.installed_version = p.source_version)
FROM dp_group_packages gp;

CREATE TRIGGER group_sync_package_added AFTER INSERT ON dp_group_packages
BEGIN
    INSERT INTO group_package_sync (group_id, package_id, in_sync)
    SELECT NEW.group_id, NEW.package_id,
        (SELECT COUNT(*) FROM dp_group_members m
            JOIN package_dps r ON r.nal_path = m.nal_path AND r.package_id = NEW.package_id
            JOIN packages p ON p.package_id = NEW.package_id
         WHERE m.group_id = NEW.group_id AND +r.state = 0 AND r.installed_version = p.source_version);
END;

CREATE TRIGGER group_sync_member_added AFTER INSERT ON dp_group_members
BEGIN
    UPDATE dp_groups SET member_count = member_count + 1 WHERE group_id = NEW.group_id;
    UPDATE group_package_sync SET in_sync = in_sync + 1
    WHERE group_id = NEW.group_id AND package_id IN (
        SELECT r.package_id FROM package_dps r JOIN packages p ON p.package_id = r.package_id
        WHERE r.nal_path = NEW.nal_path AND +r.state = 0 AND r.installed_version = p.source_version);
END;

CREATE TRIGGER group_sync_member_removed AFTER DELETE ON dp_group_members
BEGIN
    UPDATE dp_groups SET member_count = member_count - 1 WHERE group_id = OLD.group_id;
    UPDATE group_package_sync SET in_sync = in_sync - 1
    WHERE group_id = OLD.group_id AND package_id IN (
        SELECT r.package_id FROM package_dps r JOIN packages p ON p.package_id = r.package_id
        WHERE r.nal_path = OLD.nal_path AND +r.state = 0 AND r.installed_version = p.source_version);
END;

CREATE TRIGGER group_sync_row_added AFTER INSERT ON package_dps
WHEN NEW.state = 0 AND NEW.installed_version = (SELECT source_version FROM packages WHERE package_id = NEW.package_id)
BEGIN
    UPDATE group_package_sync SET in_sync = in_sync + 1
    WHERE package_id = NEW.package_id
        AND group_id IN (SELECT group_id FROM dp_group_members WHERE nal_path = NEW.nal_path);
END;

CREATE TRIGGER group_sync_row_removed AFTER DELETE ON package_dps
WHEN OLD.state = 0 AND OLD.installed_version = (SELECT source_version FROM packages WHERE package_id = OLD.package_id)
BEGIN
    UPDATE group_package_sync SET in_sync = in_sync - 1
    WHERE package_id = OLD.package_id
        AND group_id IN (SELECT group_id FROM dp_group_members WHERE nal_path = OLD.nal_path);
END;

CREATE TRIGGER group_sync_row_changed AFTER UPDATE OF state, installed_version ON package_dps
WHEN (NEW.state = 0 AND NEW.installed_version = (SELECT source_version FROM packages WHERE package_id = NEW.package_id))
  <> (OLD.state = 0 AND OLD.installed_version = (SELECT source_version FROM packages WHERE package_id = OLD.package_id))
BEGIN
    UPDATE group_package_sync
    SET in_sync = in_sync + CASE WHEN NEW.state = 0
        AND NEW.installed_version = (SELECT source_version FROM packages WHERE package_id = NEW.package_id) THEN 1 ELSE -1 END
    WHERE package_id = NEW.package_id
        AND group_id IN (SELECT group_id FROM dp_group_members WHERE nal_path = NEW.nal_path);
END;

CREATE TRIGGER group_sync_version_changed AFTER UPDATE OF source_version ON packages
WHEN NEW.source_version <> OLD.source_version
BEGIN
    UPDATE group_package_sync SET in_sync = (
        SELECT COUNT(*) FROM dp_group_members m
            JOIN package_dps r ON r.nal_path = m.nal_path AND r.package_id = NEW.package_id
        WHERE m.group_id = group_package_sync.group_id AND +r.state = 0 AND r.installed_version = NEW.source_version)
    WHERE package_id = NEW.package_id;
END;

-- A DP being deleted leaves its groups first, while its rows still exist, so its in-sync
-- rows are taken off their groups' counts (the cascade then deletes the rows).
CREATE TRIGGER group_sync_dp_deleted BEFORE DELETE ON distribution_points
BEGIN
    DELETE FROM dp_group_members WHERE nal_path = OLD.nal_path;
END;
