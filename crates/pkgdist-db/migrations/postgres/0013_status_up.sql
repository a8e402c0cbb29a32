-- Status messages go up the hierarchy (issue 20): how far this site has taken each child's
-- status messages (the child's message IDs). A report carries the messages after it.
ALTER TABLE sites ADD COLUMN status_seq BIGINT NOT NULL DEFAULT 0;
-- The cap on status messages is per site (the top of a hierarchy holds every site's).
CREATE INDEX status_messages_site ON status_messages (site_code, id);
-- Packages by owner: what a child reports up, what a parent holds of a child's subtree.
CREATE INDEX packages_owner ON packages (source_site);
