-- Notifications: the durable outbox. A send request writes one row per
-- recipient in one transaction (with its idempotency key); workers claim due
-- rows (status PENDING, or SENDING whose claim lapsed), deliver them and record
-- every attempt. `due_at_ms` is when the next attempt is due for a PENDING row
-- and when the claim lapses for a SENDING one.
CREATE TABLE notifications (
    id            TEXT   NOT NULL PRIMARY KEY,
    entity_id     TEXT   NOT NULL REFERENCES entities (id),
    channel       TEXT   NOT NULL,
    recipient     TEXT   NOT NULL,
    content       TEXT   NOT NULL,
    status        TEXT   NOT NULL,
    due_at_ms     BIGINT NOT NULL,
    attempt_count BIGINT NOT NULL,
    claimed_by    TEXT,
    last_error    TEXT,
    provider_id   TEXT,
    read_at_ms    BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE INDEX notifications_due_idx ON notifications (due_at_ms) WHERE status IN ('PENDING', 'SENDING');
CREATE INDEX notifications_entity_idx ON notifications (entity_id, created_at_ms, id);
CREATE INDEX notifications_chat_idx ON notifications (recipient, created_at_ms, id) WHERE channel = 'chat';
CREATE INDEX notifications_provider_idx ON notifications (provider_id) WHERE provider_id IS NOT NULL;

CREATE TABLE notification_attempts (
    notification_id TEXT   NOT NULL REFERENCES notifications (id),
    attempt         BIGINT NOT NULL,
    at_ms           BIGINT NOT NULL,
    duration_ms     BIGINT NOT NULL,
    response_code   BIGINT,
    error           TEXT,
    PRIMARY KEY (notification_id, attempt)
);

-- A send request's idempotency key and the ids it produced.
CREATE TABLE notification_requests (
    entity_id       TEXT   NOT NULL REFERENCES entities (id),
    idempotency_key TEXT   NOT NULL,
    ids             TEXT   NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (entity_id, idempotency_key)
);

CREATE TABLE webhook_endpoints (
    id                       TEXT    NOT NULL PRIMARY KEY,
    entity_id                TEXT    NOT NULL REFERENCES entities (id),
    url                      TEXT    NOT NULL,
    event_types              TEXT    NOT NULL,
    headers                  TEXT    NOT NULL,
    secret                   TEXT    NOT NULL,
    previous_secret          TEXT,
    previous_secret_until_ms BIGINT,
    disabled                 BOOLEAN NOT NULL,
    disabled_reason          TEXT,
    created_at_ms            BIGINT  NOT NULL,
    updated_at_ms            BIGINT  NOT NULL
);

CREATE INDEX webhook_endpoints_entity_idx ON webhook_endpoints (entity_id, created_at_ms, id);

CREATE TABLE notification_preferences (
    entity_id     TEXT    NOT NULL REFERENCES entities (id),
    recipient     TEXT    NOT NULL,
    channel       TEXT    NOT NULL,
    opted_out     BOOLEAN NOT NULL,
    updated_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (entity_id, recipient, channel)
);
