//! Streaming conversion of mono audio to 16 kHz, with `rubato`.
//!
//! Rates whose ratio to 16 kHz reduces to a short period (8, 11.025, 22.05, 44.1, 48,
//! 96 kHz and the other usual ones) use rubato's synchronous FFT resampler on blocks of
//! about 20 ms (an even number of the ratio's periods, 40 ms at 22.05 kHz). Its delay is
//! dropped from the front, so output sample `n` is input time `n / 16000` s exactly.
//! Any other rate in range falls back to rubato's asynchronous windowed-sinc resampler,
//! aligned to within one output sample. [`Resampler::flush`] makes the total exactly
//! `round(input_len * 16000 / from_rate)` samples.

use rubato::Resampler as _;
use rubato::{FftFixedInOut, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction};

use super::{AudioError, Result, TARGET_RATE, check_rate};

/// Input block length the resampler aims for, in milliseconds.
const BLOCK_MS: u32 = 20;
/// The FFT resampler is used when the rate ratio's period is at most this many ms.
const MAX_FFT_PERIOD_MS: u32 = 100;

/// The rubato resampler in use.
enum Kind {
    Fft(FftFixedInOut<f32>),
    Sinc(SincFixedIn<f32>),
}

impl Kind {
    /// Output samples to drop so that output lines up with input. rubato 0.16's
    /// `SincFixedIn` starts reading half a filter length back, so its output is already
    /// aligned (whatever `output_delay` says); the `delay_is_compensated` test pins both.
    fn delay(&self) -> usize {
        match self {
            Kind::Fft(r) => r.output_delay(),
            Kind::Sinc(_) => 0,
        }
    }
}

/// Calls the same method on whichever resampler `kind` holds.
macro_rules! with_kind {
    ($kind:expr, $r:ident => $body:expr) => {
        match $kind {
            Kind::Fft($r) => $body,
            Kind::Sinc($r) => $body,
        }
    };
}

/// The working part of a resampler that is not a pass-through.
struct Engine {
    resampler: Kind,
    /// One channel of input gathered until a block is full.
    input: Vec<Vec<f32>>,
    /// One channel of output, sized to the resampler's maximum.
    output: Vec<Vec<f32>>,
    /// Output samples still to drop: the resampler's delay.
    skip: usize,
}

/// Converts a stream at one rate to 16 kHz. Feed it any chunk sizes with
/// [`Resampler::process`], then call [`Resampler::flush`] at the end of the stream.
pub struct Resampler {
    from_rate: u32,
    /// `None` when the input is already at 16 kHz.
    engine: Option<Engine>,
    /// Input samples taken since the stream started.
    consumed: u64,
    /// Output samples emitted since the stream started.
    produced: u64,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from_rate", &self.from_rate)
            .field("pass_through", &self.engine.is_none())
            .field("consumed", &self.consumed)
            .field("produced", &self.produced)
            .finish()
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn construction_error(e: impl std::fmt::Display) -> AudioError {
    AudioError::Resample(e.to_string())
}

impl Resampler {
    /// A resampler from `from_rate` Hz to 16 kHz. Rates outside 8000..=192000 are an
    /// error.
    pub fn new(from_rate: u32) -> Result<Resampler> {
        check_rate(from_rate)?;
        let engine = if from_rate == TARGET_RATE {
            None
        } else {
            let block = from_rate * BLOCK_MS / 1000;
            let period = from_rate / gcd(from_rate, TARGET_RATE);
            let resampler = if period <= from_rate * MAX_FFT_PERIOD_MS / 1000 {
                // An even number of periods per block puts the filter's centre, and so the
                // delay, on a whole output sample.
                let periods = block.div_ceil(period).next_multiple_of(2);
                let block = (periods * period) as usize;
                Kind::Fft(
                    FftFixedInOut::<f32>::new(from_rate as usize, TARGET_RATE as usize, block, 1)
                        .map_err(construction_error)?,
                )
            } else {
                let params = SincInterpolationParameters {
                    sinc_len: 128,
                    f_cutoff: 0.92,
                    oversampling_factor: 128,
                    interpolation: SincInterpolationType::Linear,
                    window: WindowFunction::BlackmanHarris2,
                };
                let ratio = f64::from(TARGET_RATE) / f64::from(from_rate);
                Kind::Sinc(SincFixedIn::<f32>::new(ratio, 1.0, params, block as usize, 1).map_err(construction_error)?)
            };
            let input = vec![Vec::with_capacity(with_kind!(&resampler, r => r.input_frames_max()))];
            let output = with_kind!(&resampler, r => r.output_buffer_allocate(true));
            let skip = resampler.delay();
            Some(Engine { resampler, input, output, skip })
        };
        Ok(Resampler { from_rate, engine, consumed: 0, produced: 0 })
    }

    /// The input rate.
    pub fn from_rate(&self) -> u32 {
        self.from_rate
    }

    /// Output samples due for the input taken so far: `round(consumed * 16000 / from_rate)`.
    fn due(&self) -> u64 {
        let rate = u64::from(self.from_rate);
        (self.consumed * u64::from(TARGET_RATE) + rate / 2) / rate
    }

    /// Resamples `input` (any length, including zero) and appends what is ready to `out`.
    /// Output lags input by a block and the resampler's delay (about 30 ms) until
    /// [`Resampler::flush`].
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.consumed += input.len() as u64;
        let Some(engine) = self.engine.as_mut() else {
            out.extend_from_slice(input);
            self.produced += input.len() as u64;
            return;
        };
        let mut rest = input;
        while !rest.is_empty() {
            let need = engine.input_frames_next();
            let take = (need - engine.input[0].len()).min(rest.len());
            engine.input[0].extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if engine.input[0].len() == need {
                self.produced += engine.run_block(out, u64::MAX);
            }
        }
    }

    /// Emits the rest of the stream: the block in progress and the resampler's delay
    /// line, padded with silence and trimmed so that the whole output is
    /// `round(input_len * 16000 / from_rate)` samples. The resampler is then ready for a
    /// new stream.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        let due = self.due();
        if let Some(engine) = self.engine.as_mut() {
            while self.produced < due {
                let need = engine.input_frames_next();
                engine.input[0].resize(need, 0.0);
                self.produced += engine.run_block(out, due - self.produced);
            }
            with_kind!(&mut engine.resampler, r => r.reset());
            engine.input[0].clear();
            engine.skip = engine.resampler.delay();
        }
        self.consumed = 0;
        self.produced = 0;
    }
}

impl Engine {
    fn input_frames_next(&self) -> usize {
        with_kind!(&self.resampler, r => r.input_frames_next())
    }

    /// Resamples the full input block, appends at most `limit` samples past the delay to
    /// `out` and returns how many it appended.
    fn run_block(&mut self, out: &mut Vec<f32>, limit: u64) -> u64 {
        let (_, written) =
            with_kind!(&mut self.resampler, r => r.process_into_buffer(&self.input, &mut self.output, None))
                .expect("the resampler's buffers are sized by the resampler itself");
        self.input[0].clear();
        let block = &self.output[0][..written];
        let dropped = self.skip.min(block.len());
        self.skip -= dropped;
        let ready = &block[dropped..];
        let n = ready.len().min(usize::try_from(limit).unwrap_or(usize::MAX));
        out.extend_from_slice(&ready[..n]);
        n as u64
    }
}

/// Resamples a whole buffer at `from_rate` to 16 kHz: exactly
/// `round(samples.len() * 16000 / from_rate)` samples.
pub fn resample_to_16k(samples: &[f32], from_rate: u32) -> Result<Vec<f32>> {
    let mut resampler = Resampler::new(from_rate)?;
    let rate = u64::from(from_rate);
    let len = (samples.len() as u64 * u64::from(TARGET_RATE) + rate / 2) / rate;
    let mut out = Vec::with_capacity(len as usize + 1);
    resampler.process(samples, &mut out);
    resampler.flush(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the peak of a resampled click lands, for a click at `at` seconds.
    fn click_peak(rate: u32, at: f64) -> (usize, usize) {
        let mut input = vec![0.0f32; rate as usize];
        input[(at * f64::from(rate)) as usize] = 1.0;
        let out = resample_to_16k(&input, rate).unwrap();
        let peak = out.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap().0;
        (peak, (at * 16_000.0) as usize)
    }

    #[test]
    fn delay_is_compensated() {
        for rate in [44_101, 30_001, 8_001, 191_999, 8_000, 11_025, 22_050, 44_100, 48_000, 96_000] {
            let (peak, want) = click_peak(rate, 0.5);
            assert!(peak.abs_diff(want) <= 1, "{rate} Hz: click at {peak}, expected {want}");
        }
    }

    #[test]
    fn pass_through_at_16k() {
        let input: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        assert_eq!(resample_to_16k(&input, 16_000).unwrap(), input);
    }

    #[test]
    fn out_of_range_rates_are_refused() {
        assert!(Resampler::new(7_999).is_err());
        assert!(Resampler::new(192_001).is_err());
        assert!(resample_to_16k(&[0.0], 0).is_err());
    }

    #[test]
    fn flush_resets_for_a_new_stream() {
        let input: Vec<f32> = (0..4410).map(|i| (i as f32 * 0.01).sin()).collect();
        let mut r = Resampler::new(44_100).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        r.process(&input, &mut a);
        r.flush(&mut a);
        r.process(&input, &mut b);
        r.flush(&mut b);
        assert_eq!(a.len(), 1600);
        assert_eq!(a, b);
    }
}
