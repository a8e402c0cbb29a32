-- The latest status message about one package on one DP, and about one DP: one index lookup
-- each (SMS_DPGroupDistributionStatusDetails, SMS_DPStatusInfo.LastStatusTime). Before, the
-- first read every message of the package and the second every message of the DP.
CREATE INDEX status_messages_row ON status_messages (package_id, nal_path, id);
CREATE INDEX status_messages_dp_id ON status_messages (nal_path, id);
DROP INDEX status_messages_dp;
