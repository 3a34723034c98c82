-- Several nodes on one database: each ingest job records the node that runs it,
-- so that a node starting up fails only its own interrupted jobs.
ALTER TABLE documents ADD COLUMN node_id TEXT;

CREATE INDEX documents_processing_idx ON documents (node_id) WHERE status = 'PROCESSING';
