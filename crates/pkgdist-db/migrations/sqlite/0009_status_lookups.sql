-- The latest status message about one package on one DP, and about one DP: one index lookup
-- each (SMS_DPGroupDistributionStatusDetails, SMS_DPStatusInfo.LastStatusTime). On PostgreSQL
-- the old single-column indexes made both read every message of the package or of the DP;
-- on SQLite the rowid (the id) already ended each index, and the new ones say so explicitly.
-- The package index is a prefix of the new row index, so it goes.
CREATE INDEX status_messages_row ON status_messages (package_id, nal_path, id);
CREATE INDEX status_messages_dp_id ON status_messages (nal_path, id);
DROP INDEX status_messages_dp;
DROP INDEX status_messages_package;
