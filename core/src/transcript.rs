//! What was said in a room: final transcript segments.

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// One final transcript segment: an utterance of one participant, decoded.
///
/// A segment is also a room event (`transcript_segment`, same `seq`), so watchers get it
/// in order with everything else that happens in the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptSegment {
    pub room_id: String,
    /// The seq of the room event that carries this segment.
    pub seq: u64,
    pub participant_id: String,
    /// Start of the speech, in milliseconds since the room started.
    pub start_ms: u64,
    /// End of the speech, in milliseconds since the room started.
    pub end_ms: u64,
    pub text: String,
    /// Mean token probability, 0..=1.
    pub confidence: f32,
    /// The model's probability that the audio held no speech, 0..=1.
    pub no_speech_prob: f32,
    /// Language code, e.g. `en`.
    pub language: String,
    /// When the segment was recorded (wall clock).
    pub at_ms: Millis,
}
