-- huddle's initial schema (Postgres).
--
-- Timestamps are BIGINT milliseconds since the Unix epoch (UTC); unsigned
-- counters are stored as BIGINT too. Room statuses and participant kinds are
-- their SCREAMING_CASE names; event data is JSONB. Ids and names use the "C"
-- collation so that they sort bytewise, exactly as on SQLite.

CREATE TABLE entities (
    id                       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name                     TEXT    NOT NULL,
    kind                     TEXT    NOT NULL,
    default_instructions     TEXT    NOT NULL,
    max_participants         BIGINT  NOT NULL,
    recording_retention_days BIGINT  NOT NULL,
    active                   BOOLEAN NOT NULL,
    created_at_ms            BIGINT  NOT NULL,
    updated_at_ms            BIGINT  NOT NULL
);

-- list_entities: oldest first, keyset on (created_at_ms, id).
CREATE INDEX entities_created_idx ON entities (created_at_ms, id);

CREATE TABLE departments (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    entity_id     TEXT COLLATE "C" NOT NULL REFERENCES entities (id),
    name          TEXT COLLATE "C" NOT NULL,
    instructions  TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (entity_id, name)
);

CREATE TABLE api_keys (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    entity_id     TEXT COLLATE "C" NOT NULL REFERENCES entities (id),
    key_hash      TEXT   NOT NULL UNIQUE,
    prefix        TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX api_keys_entity_idx ON api_keys (entity_id);

CREATE TABLE rooms (
    id                  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    entity_id           TEXT COLLATE "C" NOT NULL REFERENCES entities (id),
    department_id       TEXT COLLATE "C" REFERENCES departments (id),
    title               TEXT   NOT NULL,
    custom_instructions TEXT   NOT NULL,
    status              TEXT   NOT NULL,
    max_participants    BIGINT NOT NULL,
    scheduled_for_ms    BIGINT,
    created_at_ms       BIGINT NOT NULL,
    started_at_ms       BIGINT,
    ended_at_ms         BIGINT,
    cancel_reason       TEXT,
    event_seq           BIGINT NOT NULL
);

-- list_rooms: newest first, filtered by entity and status.
CREATE INDEX rooms_entity_status_created_idx
    ON rooms (entity_id, status, created_at_ms DESC, id DESC);
-- list_rooms across all entities.
CREATE INDEX rooms_created_idx ON rooms (created_at_ms DESC, id DESC);
-- list_open_room_ids at start-up.
CREATE INDEX rooms_status_idx ON rooms (status);

CREATE TABLE participants (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    room_id      TEXT COLLATE "C" NOT NULL REFERENCES rooms (id),
    kind         TEXT   NOT NULL,
    display_name TEXT   NOT NULL,
    email        TEXT,
    phone        TEXT,
    identity     TEXT   NOT NULL,
    joined_at_ms BIGINT NOT NULL,
    left_at_ms   BIGINT
);

CREATE INDEX participants_room_idx ON participants (room_id, joined_at_ms, id);

CREATE TABLE room_events (
    room_id TEXT COLLATE "C" NOT NULL REFERENCES rooms (id),
    seq     BIGINT NOT NULL,
    kind    TEXT   NOT NULL,
    data    JSONB  NOT NULL,
    at_ms   BIGINT NOT NULL,
    PRIMARY KEY (room_id, seq)
);
