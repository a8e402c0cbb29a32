-- A package being deleted (issue 20): hidden from the package classes, refused as a target,
-- out of its groups, while its DPs drop its content (its rows are REMOVAL_*). Once it has no
-- row left, the distribution manager deletes it for good. The partial index keeps the sweep
-- for such packages to the few being deleted, at any number of packages.
ALTER TABLE packages ADD COLUMN deleting BIGINT NOT NULL DEFAULT 0;
CREATE INDEX packages_deleting ON packages (package_id) WHERE deleting = 1;
