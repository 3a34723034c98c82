-- The knowledge base. A document is also its ingest job; its chunks, and the
-- transcript segments of the entity's rooms, are knowledge items: text, an
-- embedding (little-endian f32) and filters. An item's id is its id in the
-- entity's vector index, so ids are never reused (an identity column).
CREATE TABLE documents (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    entity_id     TEXT COLLATE "C" NOT NULL REFERENCES entities (id),
    department_id TEXT COLLATE "C" REFERENCES departments (id),
    filename      TEXT   NOT NULL,
    content_type  TEXT   NOT NULL,
    bytes         BIGINT NOT NULL,
    sha256        TEXT   NOT NULL,
    status        TEXT   NOT NULL,
    error         TEXT,
    chunks        BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE INDEX documents_entity_idx ON documents (entity_id, created_at_ms, id);

CREATE TABLE knowledge_items (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_id      TEXT COLLATE "C" NOT NULL REFERENCES entities (id),
    kind           TEXT   NOT NULL,
    department_id  TEXT COLLATE "C",
    document_id    TEXT COLLATE "C" REFERENCES documents (id),
    chunk_index    BIGINT,
    room_id        TEXT COLLATE "C" REFERENCES rooms (id),
    segment_seq    BIGINT,
    participant_id TEXT COLLATE "C",
    text           TEXT   NOT NULL,
    vector         BYTEA  NOT NULL,
    created_at_ms  BIGINT NOT NULL
);

CREATE INDEX knowledge_items_entity_idx ON knowledge_items (entity_id, id);
CREATE INDEX knowledge_items_document_idx ON knowledge_items (document_id);
