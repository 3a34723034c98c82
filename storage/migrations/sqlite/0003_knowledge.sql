-- The knowledge base. A document is also its ingest job; its chunks, and the
-- transcript segments of the entity's rooms, are knowledge items: text, an
-- embedding (little-endian f32) and filters. An item's id is its id in the
-- entity's vector index, so ids are never reused (AUTOINCREMENT).
CREATE TABLE documents (
    id            TEXT   NOT NULL PRIMARY KEY,
    entity_id     TEXT   NOT NULL REFERENCES entities (id),
    department_id TEXT   REFERENCES departments (id),
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
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_id      TEXT   NOT NULL REFERENCES entities (id),
    kind           TEXT   NOT NULL,
    department_id  TEXT,
    document_id    TEXT   REFERENCES documents (id),
    chunk_index    BIGINT,
    room_id        TEXT   REFERENCES rooms (id),
    segment_seq    BIGINT,
    participant_id TEXT,
    text           TEXT   NOT NULL,
    vector         BLOB   NOT NULL,
    created_at_ms  BIGINT NOT NULL
);

CREATE INDEX knowledge_items_entity_idx ON knowledge_items (entity_id, id);
CREATE INDEX knowledge_items_document_idx ON knowledge_items (document_id);
