//! The mel filter bank whisper.cpp reads from the model file.
//!
//! Whisper's `mel_filters.npz` holds `librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`:
//! triangular filters on the Slaney mel scale (linear below 1 kHz, logarithmic above), each
//! normalised to unit area (`norm="slaney"`). This computes the same matrix in f64 and rounds
//! to f32 at the end, as librosa does.

/// Hertz to mel, Slaney's formula (librosa's `hz_to_mel(htk=False)`).
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ { min_log_mel + (hz / MIN_LOG_HZ).ln() / logstep } else { hz / F_SP }
}

/// Mel to hertz, the inverse of [`hz_to_mel`].
fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel { MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp() } else { F_SP * mel }
}

/// `n_mels` x `n_fft / 2 + 1` filter weights, row-major, from 0 Hz to the Nyquist frequency.
pub fn mel_filters(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let nyquist = f64::from(sample_rate) / 2.0;
    // FFT bin centre frequencies: linspace(0, sr/2, n_bins).
    let fft_freqs: Vec<f64> = (0..n_bins).map(|k| nyquist * k as f64 / (n_bins - 1) as f64).collect();
    // n_mels + 2 band edges evenly spaced in mel between 0 Hz and Nyquist.
    let (mel_lo, mel_hi) = (hz_to_mel(0.0), hz_to_mel(nyquist));
    let edges: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz(mel_lo + (mel_hi - mel_lo) * i as f64 / (n_mels + 1) as f64)).collect();

    let mut weights = Vec::with_capacity(n_mels * n_bins);
    for m in 0..n_mels {
        let (lo, centre, hi) = (edges[m], edges[m + 1], edges[m + 2]);
        let enorm = 2.0 / (hi - lo);
        for &f in &fft_freqs {
            let lower = (f - lo) / (centre - lo);
            let upper = (hi - f) / (hi - centre);
            weights.push((lower.min(upper).max(0.0) * enorm) as f32);
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of `librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)` (librosa 0.11,
    /// float32), as (mel band, fft bin, value); the matrix has 391 non-zero weights.
    #[allow(clippy::excessive_precision)]
    const LIBROSA: &[(usize, usize, f32)] = &[
        (0, 1, 0.02486259490251541),
        (1, 1, 0.001990821911022067),
        (1, 2, 0.022871771827340126),
        (2, 2, 0.003981643822044134),
        (2, 3, 0.02088095061480999),
        (7, 7, 0.013935752213001251),
        (7, 8, 0.010926840826869011),
        (15, 14, 0.0010180906392633915),
        (15, 15, 0.023844502866268158),
        (23, 22, 0.01694466546177864),
        (23, 23, 0.007917927578091621),
        (31, 30, 0.012738768011331558),
        (31, 31, 0.011751330457627773),
        (39, 40, 0.001418047584593296),
        (39, 41, 0.011486922390758991),
        (47, 55, 0.004385921638458967),
        (47, 56, 0.009832492098212242),
        (55, 74, 0.0009245910914614797),
        (55, 75, 0.0038708120118826628),
        (63, 101, 0.0012943691108375788),
        (63, 102, 0.002888072282075882),
        (71, 137, 0.0006716204807162285),
        (71, 138, 0.0015337044605985284),
        (79, 186, 0.000366741674952209),
        (79, 187, 0.0008330700220540166),
        // Zeros outside the triangles.
        (0, 0, 0.0),
        (0, 2, 0.0),
        (40, 60, 0.0),
        (79, 200, 0.0),
    ];

    #[test]
    fn scale_round_trips() {
        for hz in [0.0, 100.0, 999.0, 1000.0, 1234.5, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn matches_librosa() {
        let w = mel_filters(16000, 400, 80);
        assert_eq!(w.len(), 80 * 201);
        for &(m, k, want) in LIBROSA {
            let got = w[m * 201 + k];
            assert!((got - want).abs() <= want.abs() * 1e-5 + 1e-9, "mel {m} bin {k}: {got} vs librosa {want}");
        }
    }

    #[test]
    fn non_zero_count_matches_librosa() {
        let w = mel_filters(16000, 400, 80);
        assert_eq!(w.iter().filter(|&&x| x > 0.0).count(), 391);
    }

    /// Compares every weight with a dump of librosa's matrix (80 x 201 little-endian f32)
    /// when `HUDDLE_MEL_REFERENCE` names one.
    #[test]
    fn matches_librosa_dump_if_given() {
        let Ok(path) = std::env::var("HUDDLE_MEL_REFERENCE") else {
            return;
        };
        let bytes = std::fs::read(path).unwrap();
        let w = mel_filters(16000, 400, 80);
        let mut worst = 0.0f32;
        for (i, c) in bytes.chunks_exact(4).enumerate() {
            let want = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            worst = worst.max((w[i] - want).abs());
        }
        assert!(worst < 1e-8, "worst absolute difference {worst}");
    }

    #[test]
    fn every_band_has_unit_area() {
        // Slaney normalisation: each triangle's area in Hz is 1, so the sum of weights times
        // the bin width (40 Hz) is close to 1 for bands that are wider than a few bins.
        let w = mel_filters(16000, 400, 80);
        for m in 40..80 {
            let sum: f32 = w[m * 201..(m + 1) * 201].iter().sum();
            assert!((sum * 40.0 - 1.0).abs() < 0.1, "band {m}: {}", sum * 40.0);
        }
        assert!(w.iter().all(|&x| x >= 0.0 && x.is_finite()));
    }
}
