-- Node certificates (issue 15): the SHA-256 fingerprint of the certificate the site issued to
-- a DP or child site when it enrolled over TLS. Public (the certificate is), and what makes
-- removing the node revoke it: its requests must come with this certificate.
ALTER TABLE distribution_points ADD COLUMN cert_sha256 TEXT;
ALTER TABLE sites ADD COLUMN cert_sha256 TEXT;

-- Audit messages (issue 15): one per change made through the management API, naming the
-- token that made it, as ConfigMgr's SMS Provider records audit status messages (MessageType
-- 768). Read as SMS_StatusMessage; kept apart from the distribution status messages, with a
-- retention of their own.
CREATE TABLE audit_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, -- ids are never reused
    time TEXT NOT NULL,
    site_code TEXT NOT NULL,
    machine_name TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    token_id TEXT NOT NULL,
    token_name TEXT NOT NULL,
    http_method TEXT NOT NULL,
    target TEXT NOT NULL,
    status INTEGER NOT NULL,
    description TEXT NOT NULL
);
CREATE INDEX audit_messages_time ON audit_messages (time);
