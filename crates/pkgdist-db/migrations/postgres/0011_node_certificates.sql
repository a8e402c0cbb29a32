-- Node certificates (issue 15): the SHA-256 fingerprint of the certificate the site issued to
-- a DP or child site when it enrolled over TLS. Public (the certificate is), and what makes
-- removing the node revoke it: its requests must come with this certificate.
ALTER TABLE distribution_points ADD COLUMN cert_sha256 TEXT;
ALTER TABLE sites ADD COLUMN cert_sha256 TEXT;
