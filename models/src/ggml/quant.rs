//! Element encodings written into ggml files: f32, f16 and q8_0.
//!
//! q8_0 follows ggml's reference `quantize_row_q8_0_ref`: each block of 32 values is stored
//! as an f16 scale `d = max|x| / 127` followed by 32 `i8` values `round(x / d)` (34 bytes).

use half::f16;

/// Values per q8_0 block.
pub const Q8_0_BLOCK: usize = 32;
/// Bytes per q8_0 block: an f16 scale and 32 `i8`.
pub const Q8_0_BLOCK_BYTES: usize = 2 + Q8_0_BLOCK;

/// Appends `values` as little-endian f32.
pub fn encode_f32(values: &[f32], out: &mut Vec<u8>) {
    out.reserve(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends `values` as little-endian IEEE half floats (round to nearest even).
pub fn encode_f16(values: &[f32], out: &mut Vec<u8>) {
    out.reserve(values.len() * 2);
    for &v in values {
        out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
    }
}

/// Appends `values` as q8_0 blocks. `values.len()` must be a multiple of [`Q8_0_BLOCK`];
/// returns `false` (and writes nothing) otherwise.
pub fn encode_q8_0(values: &[f32], out: &mut Vec<u8>) -> bool {
    if !values.len().is_multiple_of(Q8_0_BLOCK) {
        return false;
    }
    out.reserve(values.len() / Q8_0_BLOCK * Q8_0_BLOCK_BYTES);
    for block in values.chunks_exact(Q8_0_BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        for &v in block {
            // `as` saturates, so a NaN becomes 0 and nothing can wrap.
            out.push((v * id).round() as i8 as u8);
        }
    }
    true
}

/// Decodes q8_0 blocks back to f32 (for tests and checks).
pub fn decode_q8_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / Q8_0_BLOCK_BYTES * Q8_0_BLOCK);
    for block in bytes.chunks_exact(Q8_0_BLOCK_BYTES) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        out.extend(block[2..].iter().map(|&q| f32::from(q as i8) * d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
            })
            .collect()
    }

    #[test]
    fn q8_0_error_is_within_half_a_step() {
        let values = pseudo_random(32 * 500, 7);
        let mut bytes = Vec::new();
        assert!(encode_q8_0(&values, &mut bytes));
        assert_eq!(bytes.len(), 500 * Q8_0_BLOCK_BYTES);
        let back = decode_q8_0(&bytes);
        for (block, deq) in values.chunks(32).zip(back.chunks(32)) {
            let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            // Half a quantisation step, plus the f16 rounding of the scale (2^-11 relative,
            // times at most 127 steps).
            let bound = d * 0.5 + amax * 2f32.powi(-11) + 1e-12;
            for (x, y) in block.iter().zip(deq) {
                assert!((x - y).abs() <= bound, "{x} vs {y}, bound {bound}");
            }
        }
        let rms_err =
            (values.iter().zip(&back).map(|(x, y)| (x - y).powi(2)).sum::<f32>() / values.len() as f32).sqrt();
        let rms = (values.iter().map(|x| x * x).sum::<f32>() / values.len() as f32).sqrt();
        assert!(rms_err / rms < 0.01, "relative rms error {}", rms_err / rms);
    }

    #[test]
    fn q8_0_block_layout() {
        let mut values = [0.0f32; 32];
        values[0] = 1.27;
        values[1] = -1.27;
        values[2] = 0.5;
        let mut bytes = Vec::new();
        assert!(encode_q8_0(&values, &mut bytes));
        let d = f16::from_le_bytes([bytes[0], bytes[1]]).to_f32();
        assert!((d - 0.01).abs() < 1e-5, "{d}");
        assert_eq!(bytes[2] as i8, 127);
        assert_eq!(bytes[3] as i8, -127);
        assert_eq!(bytes[4] as i8, 50);
        assert!(bytes[5..].iter().all(|&b| b == 0));
    }

    #[test]
    fn q8_0_zero_block_and_bad_length() {
        let mut bytes = Vec::new();
        assert!(encode_q8_0(&[0.0; 32], &mut bytes));
        assert_eq!(bytes, vec![0u8; 34]);
        let mut bytes = Vec::new();
        assert!(!encode_q8_0(&[1.0; 33], &mut bytes));
        assert!(bytes.is_empty());
    }

    #[test]
    fn f16_and_f32_encodings() {
        let mut out = Vec::new();
        encode_f16(&[1.0, -2.0, 65504.0], &mut out);
        assert_eq!(out, vec![0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b]);
        let mut out = Vec::new();
        encode_f32(&[1.0], &mut out);
        assert_eq!(out, 1.0f32.to_le_bytes());
    }
}
