//! A streaming voice-activity segmenter for 16 kHz mono audio.
//!
//! The stream is cut into frames (20 ms by default) and each frame's energy is compared,
//! in dB, with a tracked noise floor:
//!
//! - **Noise floor.** Set at the start of the stream from the quietest frame of its first
//!   500 ms (the decisions for those frames are made once that is known, so speech that
//!   starts at sample 0 is not mistaken for noise), then it follows the signal down
//!   quickly and up slowly ([`VadConfig::noise_rise_db_per_s`]).
//! - **Speech frames.** A frame is speech when it is [`VadConfig::threshold_db`] above the
//!   floor (less [`VadConfig::hysteresis_db`] once an utterance has started) and above
//!   the absolute floor [`VadConfig::abs_floor_dbfs`], so that digital silence and very
//!   quiet noise never count.
//! - **Utterances.** One starts after [`VadConfig::onset_ms`] of consecutive speech
//!   frames, and ends after [`VadConfig::min_silence_ms`] without one. It keeps
//!   [`VadConfig::pad_ms`] of audio before the onset and after the last speech frame
//!   (after: at most `min_silence_ms`), and is dropped if it held less than
//!   [`VadConfig::min_speech_ms`] of speech frames.
//! - **Long monologues** are cut when an utterance reaches
//!   [`VadConfig::max_utterance_ms`]: at the quietest 100 ms in the last
//!   [`VadConfig::cut_search_ms`], so a cut falls in a pause between words where there
//!   is one. The rest carries on as the next utterance.
//! - **Noise steps.** A level that has been steady (standard deviation under
//!   [`VadConfig::stationary_db`]) for [`VadConfig::stationary_ms`] is noise, not speech
//!   (speech rises and falls with every syllable): the floor jumps to it and the
//!   utterance, if it holds speech from before the steady stretch, ends there. This is
//!   what recovers from noise that starts after digital silence (a microphone unmuted).
//!
//! Pushing the same audio in any chunk sizes gives the same utterances. The segmenter
//! allocates nothing per sample: its buffer holds at most `max_utterance_ms` plus the pads
//! and a frame, allocated once.
//!
//! ```
//! use huddle_models::audio::vad::{Segmenter, VadConfig};
//!
//! // 1 s of digital silence, 1 s of a 220 Hz tone that swells and fades three times
//! // (something like syllables), 1 s of silence.
//! let mut pcm = vec![0.0f32; 16_000];
//! pcm.extend((0..16_000).map(|i| {
//!     let t = i as f32 / 16_000.0;
//!     0.25 * (0.6 + 0.4 * (6.28 * 3.0 * t).sin()) * (6.28 * 220.0 * t).sin()
//! }));
//! pcm.extend(vec![0.0f32; 16_000]);
//! let mut segmenter = Segmenter::new(VadConfig::default());
//! let utterances = segmenter.push(&pcm);
//! assert_eq!(utterances.len(), 1);
//! let u = &utterances[0];
//! assert!(!u.cut);
//! assert!((840..=1000).contains(&u.start_ms()), "{}", u.start_ms());
//! assert!((2000..=2160).contains(&u.end_ms()), "{}", u.end_ms());
//! ```

use std::collections::VecDeque;

use super::TARGET_RATE;

/// Samples per millisecond at 16 kHz.
const SAMPLES_PER_MS: u64 = TARGET_RATE as u64 / 1000;
/// The start of a stream used to set the first noise floor.
const WARMUP_MS: u32 = 500;
/// Frame energies are floored here (digital silence).
const MIN_DB: f32 = -100.0;
/// The share of the gap the floor closes per frame when the signal is below it.
const FLOOR_FALL: f32 = 0.5;
/// The stretch whose mean energy chooses where a long utterance is cut.
const CUT_SMOOTH_MS: u32 = 100;

/// Segmenter settings. Times are in milliseconds, levels in dB (dBFS: 0 dB is a
/// full-scale square wave).
#[derive(Debug, Clone, PartialEq)]
pub struct VadConfig {
    /// Analysis frame length (5..=100 ms).
    pub frame_ms: u32,
    /// Silence that ends an utterance. This is the latency floor of the pipeline: an
    /// utterance is only handed on this long after its last word.
    pub min_silence_ms: u32,
    /// Utterances with fewer speech frames than this are dropped (clicks, coughs).
    pub min_speech_ms: u32,
    /// Audio kept before the onset and after the last speech frame (after: at most
    /// `min_silence_ms`).
    pub pad_ms: u32,
    /// Utterances are cut to at most this length (at least 2000 ms).
    pub max_utterance_ms: u32,
    /// How far back from `max_utterance_ms` to look for a pause to cut at (at most half
    /// of `max_utterance_ms`).
    pub cut_search_ms: u32,
    /// Consecutive speech needed to start an utterance.
    pub onset_ms: u32,
    /// How far above the noise floor a frame must be to count as speech.
    pub threshold_db: f32,
    /// Once in an utterance, frames down to `threshold_db - hysteresis_db` above the floor
    /// still count as speech.
    pub hysteresis_db: f32,
    /// Frames below this level never count as speech.
    pub abs_floor_dbfs: f32,
    /// How fast the noise floor may rise, in dB per second.
    pub noise_rise_db_per_s: f32,
    /// How long a level must stay steady to be taken for noise; 0 disables the check.
    pub stationary_ms: u32,
    /// The standard deviation of frame energies, in dB, under which a level is steady.
    pub stationary_db: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            frame_ms: 20,
            min_silence_ms: 300,
            min_speech_ms: 200,
            pad_ms: 150,
            max_utterance_ms: 15_000,
            cut_search_ms: 3_000,
            onset_ms: 40,
            threshold_db: 10.0,
            hysteresis_db: 4.0,
            abs_floor_dbfs: -50.0,
            noise_rise_db_per_s: 3.0,
            stationary_ms: 1_000,
            stationary_db: 2.0,
        }
    }
}

/// A stretch of speech, with its padding, at 16 kHz.
#[derive(Clone, PartialEq)]
pub struct Utterance {
    /// Offset of the first sample in the stream, at 16 kHz, including the pad.
    pub start_sample: u64,
    /// 16 kHz mono samples.
    pub samples: Vec<f32>,
    /// True when the utterance was cut at `max_utterance_ms` rather than ended by
    /// silence; the next utterance continues it.
    pub cut: bool,
}

impl std::fmt::Debug for Utterance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Utterance")
            .field("start_sample", &self.start_sample)
            .field("samples", &format_args!("[{} samples]", self.samples.len()))
            .field("cut", &self.cut)
            .finish()
    }
}

impl Utterance {
    /// Start in milliseconds from the start of the stream.
    pub fn start_ms(&self) -> u64 {
        self.start_sample / SAMPLES_PER_MS
    }

    /// End (exclusive) in milliseconds from the start of the stream.
    pub fn end_ms(&self) -> u64 {
        self.end_sample() / SAMPLES_PER_MS
    }

    /// Offset just past the last sample, at 16 kHz.
    pub fn end_sample(&self) -> u64 {
        self.start_sample + self.samples.len() as u64
    }
}

/// Settings turned into frames and samples, clamped to workable values.
#[derive(Debug, Clone, Copy)]
struct Params {
    frame: u64,
    silence_frames: u32,
    speech_frames: u32,
    onset_frames: u32,
    pad: u64,
    trail_pad: u64,
    max_len: u64,
    cut_frames: usize,
    smooth_frames: usize,
    stationary_frames: usize,
    warmup_frames: usize,
    threshold_db: f32,
    hysteresis_db: f32,
    abs_floor_db: f32,
    rise_per_frame: f32,
    stationary_db: f32,
    /// Samples kept while idle, for the pad and the onset frames.
    pre: u64,
    /// Frames of history kept.
    history: usize,
}

impl Params {
    fn new(c: &VadConfig) -> Params {
        let frame_ms = c.frame_ms.clamp(5, 100);
        let frames = |ms: u32| ms.div_ceil(frame_ms).max(1);
        let frame = u64::from(frame_ms) * SAMPLES_PER_MS;
        let max_ms = c.max_utterance_ms.max(2_000);
        let silence_frames = frames(c.min_silence_ms);
        let onset_frames = frames(c.onset_ms);
        let pad = u64::from(c.pad_ms) * SAMPLES_PER_MS;
        let cut_frames = (c.cut_search_ms.clamp(frame_ms, max_ms / 2) / frame_ms) as usize;
        let stationary_frames = if c.stationary_ms == 0 { 0 } else { frames(c.stationary_ms).max(2) as usize };
        let speech_frames = if c.min_speech_ms == 0 { 0 } else { frames(c.min_speech_ms) };
        // No utterance can end inside the warm-up, so that `finish` has at most one to
        // return: the shortest that can end needs its speech and then silence (or a
        // steady stretch).
        let shortest_end = onset_frames.max(speech_frames)
            + if stationary_frames == 0 { silence_frames } else { silence_frames.min(stationary_frames as u32) };
        let warmup_frames = frames(WARMUP_MS).min(shortest_end - 1).max(1) as usize;
        let finite = |v: f32, default: f32| if v.is_finite() { v } else { default };
        Params {
            frame,
            silence_frames,
            speech_frames,
            onset_frames,
            pad,
            trail_pad: pad.min(u64::from(silence_frames) * frame),
            max_len: u64::from(max_ms) * SAMPLES_PER_MS,
            cut_frames,
            smooth_frames: frames(CUT_SMOOTH_MS) as usize,
            stationary_frames,
            warmup_frames,
            threshold_db: finite(c.threshold_db, 10.0).max(0.0),
            hysteresis_db: finite(c.hysteresis_db, 0.0).max(0.0),
            abs_floor_db: finite(c.abs_floor_dbfs, -50.0),
            rise_per_frame: finite(c.noise_rise_db_per_s, 3.0).max(0.0) * frame_ms as f32 / 1000.0,
            stationary_db: finite(c.stationary_db, 2.0).max(0.0),
            pre: pad + u64::from(onset_frames) * frame,
            history: cut_frames.max(stationary_frames + silence_frames as usize + 1),
        }
    }

    /// Samples the buffer can ever hold.
    fn capacity(&self) -> usize {
        (self.max_len + self.pre + self.warmup_frames as u64 * self.frame + 2 * self.frame) as usize
    }
}

/// One analysed frame.
#[derive(Debug, Clone, Copy)]
struct Frame {
    db: f32,
    speech: bool,
}

/// An utterance in progress.
#[derive(Debug, Clone, Copy)]
struct Active {
    start: u64,
    /// End of the last speech frame.
    last_speech_end: u64,
    speech_frames: u32,
    silent_frames: u32,
}

/// Splits a 16 kHz mono stream into utterances; see the [module docs](self).
pub struct Segmenter {
    config: VadConfig,
    p: Params,
    /// Samples from stream offset `buf_start` on.
    buf: VecDeque<f32>,
    buf_start: u64,
    /// Sum of squares of the samples of the frame being filled.
    frame_energy: f64,
    frame_fill: u64,
    /// Frames completed since the stream started.
    frames_done: u64,
    /// Frame energies of the warm-up, until the first floor is set.
    warmup: Vec<f32>,
    floor: Option<f32>,
    /// The last frames, newest at the back.
    history: VecDeque<Frame>,
    /// Consecutive speech frames while idle.
    onset_run: u32,
    active: Option<Active>,
    /// End of the last utterance handed out: the next one starts no earlier.
    last_end: u64,
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter")
            .field("position", &self.position())
            .field("buffered", &self.buf.len())
            .field("floor_db", &self.floor)
            .field("in_speech", &self.active.is_some())
            .finish_non_exhaustive()
    }
}

impl Segmenter {
    /// A segmenter for a new stream. Out-of-range settings are clamped (see
    /// [`VadConfig`]).
    pub fn new(config: VadConfig) -> Segmenter {
        let p = Params::new(&config);
        Segmenter {
            buf: VecDeque::with_capacity(p.capacity()),
            warmup: Vec::with_capacity(p.warmup_frames),
            history: VecDeque::with_capacity(p.history + 1),
            p,
            config,
            buf_start: 0,
            frame_energy: 0.0,
            frame_fill: 0,
            frames_done: 0,
            floor: None,
            onset_run: 0,
            active: None,
            last_end: 0,
        }
    }

    /// The settings this segmenter was made with.
    pub fn config(&self) -> &VadConfig {
        &self.config
    }

    /// Whether an utterance is in progress.
    pub fn in_speech(&self) -> bool {
        self.active.is_some()
    }

    /// Samples held: the utterance in progress, or the pad kept for the next onset.
    pub fn buffered_samples(&self) -> usize {
        self.buf.len()
    }

    /// The current noise floor in dBFS, once the first 500 ms have set it.
    pub fn noise_floor_db(&self) -> Option<f32> {
        self.floor
    }

    /// Samples pushed since the stream started.
    pub fn position(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }

    /// Adds 16 kHz mono samples (any number) and returns the utterances that ended in
    /// them, oldest first.
    pub fn push(&mut self, samples: &[f32]) -> Vec<Utterance> {
        let mut out = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = ((self.p.frame - self.frame_fill) as usize).min(rest.len());
            let (now, later) = rest.split_at(take);
            self.buf.extend(now.iter().copied());
            self.frame_energy += now.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>();
            self.frame_fill += take as u64;
            rest = later;
            if self.frame_fill == self.p.frame {
                let mean = self.frame_energy / self.p.frame as f64;
                let db = ((10.0 * (mean + 1e-12).log10()) as f32).max(MIN_DB);
                self.frame_energy = 0.0;
                self.frame_fill = 0;
                self.on_frame(db, &mut out);
            }
        }
        out
    }

    /// Ends the stream: returns the utterance in progress, if it holds enough speech, and
    /// resets the segmenter for a new stream.
    pub fn finish(&mut self) -> Option<Utterance> {
        let mut out = Vec::new();
        if self.floor.is_none() {
            self.end_warmup(&mut out);
        }
        // The warm-up is shorter than the shortest utterance that can end (see
        // `Params::new`), so replaying it ends none.
        debug_assert!(out.is_empty());
        let end = self.position();
        let last = self.active.take().and_then(|a| self.close(a, end));
        *self = Segmenter::new(self.config.clone());
        last
    }

    fn on_frame(&mut self, db: f32, out: &mut Vec<Utterance>) {
        let k = self.frames_done;
        self.frames_done += 1;
        if self.floor.is_some() {
            self.step(k, db, out);
            return;
        }
        self.warmup.push(db);
        if self.warmup.len() == self.p.warmup_frames {
            self.end_warmup(out);
        }
    }

    /// Sets the first floor from the warm-up frames and runs them through the state
    /// machine.
    fn end_warmup(&mut self, out: &mut Vec<Utterance>) {
        let min = self.warmup.iter().copied().fold(f32::INFINITY, f32::min);
        self.floor = Some(if min.is_finite() { min } else { MIN_DB });
        let first = self.frames_done - self.warmup.len() as u64;
        let warmup = std::mem::take(&mut self.warmup);
        for (i, &db) in warmup.iter().enumerate() {
            self.step(first + i as u64, db, out);
        }
    }

    /// One frame, `k`-th of the stream, with energy `db`, after the warm-up.
    fn step(&mut self, k: u64, db: f32, out: &mut Vec<Utterance>) {
        let p = self.p;
        let pos = (k + 1) * p.frame;
        let floor = self.floor.unwrap_or(MIN_DB);
        let margin = if self.active.is_some() { p.threshold_db - p.hysteresis_db } else { p.threshold_db };
        let speech = db > floor + margin && db > p.abs_floor_db;
        let floor =
            if db < floor { floor + (db - floor) * FLOOR_FALL } else { floor + (db - floor).min(p.rise_per_frame) };
        self.floor = Some(floor.max(MIN_DB));
        if self.history.len() == p.history {
            self.history.pop_front();
        }
        self.history.push_back(Frame { db, speech });

        let Some(mut a) = self.active else {
            self.onset_run = if speech { self.onset_run + 1 } else { 0 };
            if self.onset_run >= p.onset_frames {
                let onset = (k + 1 - u64::from(self.onset_run)) * p.frame;
                let start = onset.saturating_sub(p.pad).max(self.last_end).max(self.buf_start);
                self.active =
                    Some(Active { start, last_speech_end: pos, speech_frames: self.onset_run, silent_frames: 0 });
                self.onset_run = 0;
                self.trim_before(start);
            } else {
                self.trim_before(pos.saturating_sub(p.pre));
            }
            return;
        };

        if speech {
            a.speech_frames += 1;
            a.silent_frames = 0;
            a.last_speech_end = pos;
        } else {
            a.silent_frames += 1;
        }
        if a.silent_frames >= p.silence_frames {
            self.active = None;
            out.extend(self.close(a, pos));
            self.trim_before(pos.saturating_sub(p.pre));
        } else if let Some(before) = self.steady_noise(k, a.start) {
            // The steady stretch is noise: lift the floor to it and end the utterance
            // where the stretch began.
            let (mean, speech_in_window, last_speech) = before;
            self.floor = Some(mean);
            a.speech_frames -= speech_in_window.min(a.speech_frames);
            match last_speech {
                Some(end) => a.last_speech_end = end,
                None => a.speech_frames = 0,
            }
            self.active = None;
            out.extend(self.close(a, pos));
            self.trim_before(pos.saturating_sub(p.pre));
        } else if pos - a.start >= p.max_len {
            let cut = self.cut_point(k, a.start);
            out.push(Utterance { start_sample: a.start, samples: self.copy(a.start, cut), cut: true });
            self.last_end = cut;
            let cut_frame = cut / p.frame;
            let first = k + 1 - self.history.len() as u64;
            a.speech_frames =
                self.history.iter().enumerate().filter(|&(i, f)| first + i as u64 > cut_frame && f.speech).count()
                    as u32;
            a.start = cut;
            self.active = Some(a);
            self.trim_before(cut);
        } else {
            self.active = Some(a);
        }
    }

    /// If the last `stationary_frames` frames (all inside the utterance starting at
    /// `start`) are steady: their mean energy, how many were speech, and the end of the
    /// last speech frame before them.
    fn steady_noise(&self, k: u64, start: u64) -> Option<(f32, u32, Option<u64>)> {
        let n = self.p.stationary_frames;
        if n == 0 || self.history.len() < n || (k + 1 - n as u64) * self.p.frame < start {
            return None;
        }
        let window = self.history.range(self.history.len() - n..);
        let mean = window.clone().map(|f| f.db).sum::<f32>() / n as f32;
        let var = window.clone().map(|f| (f.db - mean) * (f.db - mean)).sum::<f32>() / n as f32;
        if var.sqrt() >= self.p.stationary_db {
            return None;
        }
        let speech = window.filter(|f| f.speech).count() as u32;
        let first = k + 1 - self.history.len() as u64;
        let last_speech = self
            .history
            .range(..self.history.len() - n)
            .rposition(|f| f.speech)
            .map(|i| (first + i as u64 + 1) * self.p.frame)
            .filter(|&end| end > start);
        Some((mean, speech, last_speech))
    }

    /// Where to cut an utterance that started at `start` and reached the length limit at
    /// frame `k`: the middle of the quietest `CUT_SMOOTH_MS` in the last `cut_search_ms`.
    fn cut_point(&self, k: u64, start: u64) -> u64 {
        let p = &self.p;
        let first = k + 1 - self.history.len() as u64;
        // Candidate frames lie inside the utterance, leave it at least one frame, and lie
        // in the search window.
        let lowest = (start / p.frame + 1).max(k + 1 - p.cut_frames.min(self.history.len()) as u64);
        let half = p.smooth_frames / 2;
        let mut best: Option<(f32, u64)> = None;
        for j in lowest..=k {
            let i = (j - first) as usize;
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(self.history.len());
            let score = self.history.range(lo..hi).map(|f| f.db).sum::<f32>() / (hi - lo) as f32;
            if best.is_none_or(|(s, _)| score <= s) {
                best = Some((score, j));
            }
        }
        let j = best.map_or(k, |(_, j)| j);
        (j * p.frame + p.frame / 2).clamp(start + 1, (k + 1) * p.frame)
    }

    /// The utterance `a`, ended at stream offset `pos`, if it holds enough speech.
    fn close(&mut self, a: Active, pos: u64) -> Option<Utterance> {
        let end = (a.last_speech_end + self.p.trail_pad).min(pos);
        if a.speech_frames < self.p.speech_frames || end <= a.start {
            return None;
        }
        self.last_end = end;
        Some(Utterance { start_sample: a.start, samples: self.copy(a.start, end), cut: false })
    }

    /// A copy of the stream from offset `from` to `to`.
    fn copy(&self, from: u64, to: u64) -> Vec<f32> {
        let lo = from.saturating_sub(self.buf_start) as usize;
        let hi = (to.saturating_sub(self.buf_start) as usize).min(self.buf.len());
        self.buf.range(lo.min(hi)..hi).copied().collect()
    }

    /// Drops buffered samples before stream offset `offset`.
    fn trim_before(&mut self, offset: u64) {
        let n = (offset.saturating_sub(self.buf_start) as usize).min(self.buf.len());
        if n > 0 {
            self.buf.drain(..n);
            self.buf_start += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic white noise at `dbfs` RMS.
    fn noise(len: usize, dbfs: f32, seed: &mut u64) -> Vec<f32> {
        let amp = 10f32.powf(dbfs / 20.0) * 3f32.sqrt();
        (0..len)
            .map(|_| {
                *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
            })
            .collect()
    }

    /// A syllable-modulated tone: something speech-like in level.
    fn voice(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                0.2 * (0.55 + 0.45 * (std::f32::consts::TAU * 4.0 * t).sin())
                    * (std::f32::consts::TAU * 180.0 * t).sin()
            })
            .collect()
    }

    fn run(pcm: &[f32], config: VadConfig) -> Vec<Utterance> {
        let mut s = Segmenter::new(config);
        let mut out = s.push(pcm);
        out.extend(s.finish());
        out
    }

    #[test]
    fn can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Segmenter>();
        assert_send::<crate::audio::resample::Resampler>();
        let u = Utterance { start_sample: 16, samples: vec![0.0; 3], cut: false };
        assert_eq!(format!("{u:?}"), "Utterance { start_sample: 16, samples: [3 samples], cut: false }");
    }

    #[test]
    fn silence_and_steady_noise_give_nothing() {
        let mut seed = 1;
        assert!(run(&vec![0.0; 16_000 * 10], VadConfig::default()).is_empty());
        assert!(run(&noise(16_000 * 10, -45.0, &mut seed), VadConfig::default()).is_empty());
        assert!(run(&noise(16_000 * 10, -20.0, &mut seed), VadConfig::default()).is_empty());
    }

    #[test]
    fn noise_after_digital_silence_is_not_speech() {
        let mut seed = 7;
        let mut pcm = vec![0.0; 16_000 * 2];
        pcm.extend(noise(16_000 * 6, -35.0, &mut seed));
        let mut s = Segmenter::new(VadConfig::default());
        assert!(s.push(&pcm).is_empty());
        assert!(!s.in_speech());
        assert!(s.finish().is_none());
        // ... and speech after it is still found.
        let mut pcm = vec![0.0; 16_000 * 2];
        pcm.extend(noise(16_000 * 4, -35.0, &mut seed));
        let mut talk = voice(16_000);
        for (t, n) in talk.iter_mut().zip(noise(16_000, -35.0, &mut seed)) {
            *t += n;
        }
        pcm.extend(talk);
        pcm.extend(noise(16_000, -35.0, &mut seed));
        let found = run(&pcm, VadConfig::default());
        assert_eq!(found.len(), 1, "{:?}", found.iter().map(|u| (u.start_ms(), u.end_ms())).collect::<Vec<_>>());
        assert!(found[0].start_ms().abs_diff(6_000) <= 200 && found[0].end_ms().abs_diff(7_000) <= 200);
    }

    #[test]
    fn speech_at_sample_zero_is_found() {
        let mut pcm = voice(16_000);
        pcm.extend(vec![0.0; 8_000]);
        let found = run(&pcm, VadConfig::default());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].start_sample, 0);
        assert!(found[0].end_ms().abs_diff(1_150) <= 60, "{}", found[0].end_ms());
    }

    #[test]
    fn short_bursts_are_dropped() {
        let mut pcm = vec![0.0; 16_000];
        pcm.extend(voice(1_600)); // 100 ms
        pcm.extend(vec![0.0; 16_000]);
        assert!(run(&pcm, VadConfig::default()).is_empty());
    }

    #[test]
    fn long_speech_is_cut_and_memory_is_bounded() {
        let config = VadConfig { max_utterance_ms: 4_000, cut_search_ms: 1_000, ..VadConfig::default() };
        let mut pcm = vec![0.0; 8_000];
        pcm.extend(voice(16_000 * 10));
        let mut s = Segmenter::new(config.clone());
        let mut found = Vec::new();
        let mut most = 0;
        for chunk in pcm.chunks(1_000) {
            found.extend(s.push(chunk));
            most = most.max(s.buffered_samples());
        }
        found.extend(s.finish());
        assert!(most <= 16 * (4_000 + 150 + 40 + 20), "{most}");
        assert!(found.len() >= 3, "{}", found.len());
        for (a, b) in found.iter().zip(&found[1..]) {
            assert!(a.cut);
            assert_eq!(a.end_sample(), b.start_sample, "cut pieces are contiguous");
        }
        assert!(found.iter().all(|u| u.samples.len() <= 16 * 4_000));
        assert!(!found.last().unwrap().cut);
    }

    #[test]
    fn out_of_range_config_is_clamped() {
        let config = VadConfig {
            frame_ms: 0,
            max_utterance_ms: 0,
            cut_search_ms: u32::MAX,
            threshold_db: f32::NAN,
            ..VadConfig::default()
        };
        let mut pcm = vec![0.0; 16_000];
        pcm.extend(voice(16_000 * 5));
        pcm.extend(vec![0.0; 16_000]);
        let found = run(&pcm, config);
        assert!(!found.is_empty() && found.iter().all(|u| u.samples.len() <= 32_000));
    }
}
