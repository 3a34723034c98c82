-- LiveKit: a room may be bound to a LiveKit room (by name). Among rooms that
-- are not over, a LiveKit room name belongs to one room at a time; a finished
-- LiveKit room's name may be used again.
ALTER TABLE rooms ADD COLUMN livekit_room TEXT;
CREATE UNIQUE INDEX rooms_livekit_open ON rooms (livekit_room)
    WHERE livekit_room IS NOT NULL AND status IN ('SCHEDULED', 'ACTIVE');
CREATE INDEX rooms_livekit ON rooms (livekit_room, created_at_ms) WHERE livekit_room IS NOT NULL;

-- Recordings reported by LiveKit's egress_ended webhook; a repeated webhook
-- updates the same row.
CREATE TABLE recordings (
    egress_id      TEXT   NOT NULL PRIMARY KEY,
    room_id        TEXT   NOT NULL REFERENCES rooms (id),
    status         TEXT   NOT NULL,
    locations      TEXT   NOT NULL,
    started_at_ms  BIGINT,
    ended_at_ms    BIGINT,
    error          TEXT,
    recorded_at_ms BIGINT NOT NULL
);
CREATE INDEX recordings_room ON recordings (room_id, recorded_at_ms);
