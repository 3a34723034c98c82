-- How far each room's event log has been routed into notifications
-- (invitations, cancellations, summaries, room.* webhooks). After a crash or a
-- restart the router resumes every room from here, so an event committed but
-- not yet routed still sends its notices (idempotency keys make a repeat send
-- nothing). Rooms from before this migration count as routed to their end.
CREATE TABLE room_routing (
    room_id    TEXT   NOT NULL PRIMARY KEY REFERENCES rooms (id),
    routed_seq BIGINT NOT NULL
);

INSERT INTO room_routing (room_id, routed_seq) SELECT id, event_seq FROM rooms;
