//! `parse_wav`, the RIFF/WAVE decoder for uploaded audio: any bytes give audio or an
//! `AudioError`; decoded samples are finite, in -1..=1, and survive a PCM16 round trip.

#![no_main]

use huddle_models::audio::wav::{encode_pcm16, parse_wav};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(audio) = parse_wav(data) else { return };
    assert!(audio.channels > 0);
    assert!(audio.samples.iter().all(|s| s.is_finite() && (-1.0..=1.0).contains(s)), "sample out of range");
    let _ = audio.duration_ms();
    let again = parse_wav(&encode_pcm16(&audio.samples, audio.sample_rate)).expect("our own PCM16 parses");
    assert_eq!(again.samples.len(), audio.samples.len());
    assert_eq!(again.sample_rate, audio.sample_rate);
});
