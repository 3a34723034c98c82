-- API keys can be revoked, and record when they were last used (updated at
-- most once a minute per key). A revoked key stays listed; it no longer
-- authenticates.

ALTER TABLE api_keys ADD COLUMN revoked_at_ms BIGINT;
ALTER TABLE api_keys ADD COLUMN last_used_at_ms BIGINT;
