-- A LiveKit room name belongs to one entity for ever: the first room bound to
-- a name claims it for its entity (in create_room's transaction), and no later
-- room of another entity can be bound to it. A claim is never moved or freed.
CREATE TABLE livekit_rooms (
    name          TEXT   NOT NULL PRIMARY KEY,
    entity_id     TEXT   NOT NULL REFERENCES entities (id),
    created_at_ms BIGINT NOT NULL
);

-- Bindings made before this migration: each name goes to the entity of its
-- earliest room, and rooms of other entities bound to it are unbound (their
-- `created` event still names it).
INSERT INTO livekit_rooms (name, entity_id, created_at_ms)
SELECT r.livekit_room, r.entity_id, r.created_at_ms FROM rooms r
WHERE r.livekit_room IS NOT NULL
  AND NOT EXISTS (
    SELECT 1 FROM rooms e
    WHERE e.livekit_room = r.livekit_room
      AND (e.created_at_ms < r.created_at_ms OR (e.created_at_ms = r.created_at_ms AND e.id < r.id))
  );
UPDATE rooms SET livekit_room = NULL
WHERE livekit_room IS NOT NULL
  AND entity_id <> (SELECT o.entity_id FROM livekit_rooms o WHERE o.name = rooms.livekit_room);

-- The LiveKit session (LiveKit's room sid) a bound room is in, once known: from
-- the agent's join, or from the first webhook applied to it. Webhooks of
-- another session of the same name do not change the room.
ALTER TABLE rooms ADD COLUMN livekit_sid TEXT;
CREATE INDEX rooms_livekit_sid ON rooms (livekit_room, livekit_sid) WHERE livekit_sid IS NOT NULL;
