-- Final transcript segments. Each is also a `transcript_segment` room event
-- with the same seq, written in the same transaction; this table is what
-- GetTranscript pages through and what search indexes read.
CREATE TABLE transcript_segments (
    room_id        TEXT   NOT NULL REFERENCES rooms (id),
    seq            BIGINT NOT NULL,
    participant_id TEXT   NOT NULL REFERENCES participants (id),
    start_ms       BIGINT NOT NULL,
    end_ms         BIGINT NOT NULL,
    text           TEXT   NOT NULL,
    confidence     REAL   NOT NULL,
    no_speech_prob REAL   NOT NULL,
    language       TEXT   NOT NULL,
    at_ms          BIGINT NOT NULL,
    PRIMARY KEY (room_id, seq)
);
