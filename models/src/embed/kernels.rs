//! The arithmetic of the BERT forward pass: linear layers (bf16 AVX-512 or f32), attention
//! over one packed sequence, layer norm and GELU.
//!
//! Linear layers come in two kinds, chosen when the weights are loaded:
//! - bf16: on x86-64 CPUs with AVX512_BF16 the weights are rounded to bf16 and packed into
//!   column panels; the activations are rounded to bf16 row by row and `vdpbf16ps` multiplies
//!   them, accumulating in f32. Twice the multiply-adds per instruction of f32 FMA.
//! - f32: the `gemm` crate, on every other CPU (and when asked for).
//!
//! Everything else (attention, softmax, layer norm, GELU) is f32 everywhere, written as plain
//! loops that the compiler vectorises; on AVX-512 CPUs they are compiled a second time with
//! AVX-512 enabled. `exp` and `erf` are computed here (no libm calls) so that those loops
//! vectorise too.

use rayon::prelude::*;

/// Which arithmetic the linear layers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// bf16 inputs and weights, f32 accumulation (AVX512_BF16 only).
    Bf16,
    /// f32 throughout.
    F32,
}

impl Precision {
    /// bf16 where the CPU multiplies bf16 natively, f32 elsewhere.
    pub fn best_available() -> Precision {
        if bf16_supported() { Precision::Bf16 } else { Precision::F32 }
    }
}

/// Whether this CPU runs the bf16 kernel (AVX-512 F/BW and AVX512_BF16).
pub fn bf16_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the f32 loops can be compiled for AVX-512 here.
fn avx512_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `fn $name(args)` calling the `#[inline(always)]` function `$body` from a copy compiled
/// with AVX-512 enabled where the CPU has it, so that `$body`'s loops vectorise with zmm
/// registers, and from a plain copy elsewhere.
macro_rules! simd_dispatch {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                fn wide($($arg: $ty),*) {
                    $body($($arg),*)
                }
                static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
                if *AVX512.get_or_init(avx512_supported) {
                    // SAFETY: the CPU has the features `wide` is compiled for (checked).
                    return unsafe { wide($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// Rounds to the nearest bf16 (ties to even), as the bits of the bf16.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 value of bf16 bits.
#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// e^x for f32, within 2 ulp, without libm (so that loops calling it vectorise). Inputs
/// below -87 give about 1e-38 rather than 0, which is all softmax and erf need.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75; // few mantissa bits: n * LN2_HI is exact
    const LN2_LO: f32 = 1.428_606_8e-6;
    const SHIFTER: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + SHIFTER;
    let n = t - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO; // |r| <= ln2 / 2
    // Taylor series of e^r to r^7: error below 1e-8 relative on |r| <= 0.35
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^n from the integer in t's low mantissa bits
    let scale = f32::from_bits(t.to_bits().wrapping_sub(SHIFTER.to_bits()).wrapping_add(127) << 23);
    p * scale
}

/// The error function, within 5e-7 absolute (Abramowitz and Stegun 7.1.26, whose 1.5e-7
/// grows a little in f32).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// BERT's GELU, the exact (erf) form.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU of every element, in place.
pub fn gelu_in_place(x: &mut [f32]) {
    let chunk = 16 * 1024;
    x.par_chunks_mut(chunk).for_each(gelu_slice);
}

simd_dispatch!(fn gelu_slice(x: &mut [f32]) => gelu_slice_body);

#[inline(always)]
fn gelu_slice_body(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = gelu(*v);
    }
}

#[inline(always)]
fn sum16(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = v.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Layer norm of each `gamma.len()`-long row of `x`, in place.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let dim = gamma.len();
    let rows_per_task = (16 * 1024 / dim).max(1);
    x.par_chunks_mut(rows_per_task * dim).for_each(|rows| layer_norm_rows(rows, gamma, beta, eps));
}

simd_dispatch!(fn layer_norm_rows(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) => layer_norm_body);

#[inline(always)]
fn layer_norm_body(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let dim = gamma.len();
    for row in x.chunks_exact_mut(dim) {
        let mean = sum16(row) / dim as f32;
        for v in row.iter_mut() {
            *v -= mean;
        }
        let mut sq = [0.0f32; 16];
        let chunks = row.chunks_exact(16);
        let mut rest = 0.0;
        for v in chunks.remainder() {
            rest += v * v;
        }
        for c in chunks {
            for i in 0..16 {
                sq[i] += c[i] * c[i];
            }
        }
        let var = (sq.iter().sum::<f32>() + rest) / dim as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = *v * inv * g + b;
        }
    }
}

/// Shape of multi-head self-attention.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub hidden: usize,
    pub heads: usize,
}

/// Self-attention of packed sequences (no padding, no mask). `qkv` holds one row of
/// `3 * hidden` per token (queries, keys, values; head `h` in columns `h * d .. (h + 1) * d`
/// of each); `seqs` are `(first row, length)`. Writes one `hidden` row per token to `out`.
pub fn attention(qkv: &[f32], seqs: &[(usize, usize)], shape: Heads, out: &mut [f32]) {
    let hidden = shape.hidden;
    // tasks: a run of query rows of one sequence; long sequences are cut so that one long
    // text still uses every core
    const ROWS: usize = 32;
    let mut tasks = Vec::new();
    let mut rest = out;
    for &(start, len) in seqs {
        let mut i = 0;
        while i < len {
            let end = (i + ROWS).min(len);
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut((end - i) * hidden);
            tasks.push((start, len, i, mine));
            rest = tail;
            i = end;
        }
    }
    tasks.into_par_iter().for_each(|(start, len, first, out)| attend(qkv, start, len, first, shape, out));
}

simd_dispatch!(
    /// Attention of query rows `first..first + out.len() / hidden` of the sequence at `start`.
    fn attend(qkv: &[f32], start: usize, len: usize, first: usize, shape: Heads, out: &mut [f32]) => attend_body
);

#[inline(always)]
fn attend_body(qkv: &[f32], start: usize, len: usize, first: usize, shape: Heads, out: &mut [f32]) {
    let Heads { hidden, heads } = shape;
    let d = hidden / heads;
    let stride = 3 * hidden;
    let padded = len.next_multiple_of(16);
    let scale = 1.0 / (d as f32).sqrt();
    let rows = out.len() / hidden;
    // The sequence's keys (transposed: one row of `padded` per column), values and the
    // task's queries (scaled), copied row after row: reading the strided qkv rows head by
    // head instead waits on the cache at every row.
    let mut kt = vec![0.0f32; hidden * padded];
    let mut values = Vec::with_capacity(len * hidden);
    for j in 0..len {
        let row = &qkv[(start + j) * stride..][..stride];
        for (e, &kv) in row[hidden..2 * hidden].iter().enumerate() {
            kt[e * padded + j] = kv;
        }
        values.extend_from_slice(&row[2 * hidden..]);
    }
    let mut queries = Vec::with_capacity(rows * hidden);
    for i in 0..rows {
        queries.extend(qkv[(start + first + i) * stride..][..hidden].iter().map(|&x| x * scale));
    }
    let mut scores = vec![0.0f32; padded];
    for h in 0..heads {
        let kt = &kt[h * d * padded..(h + 1) * d * padded];
        for i in 0..rows {
            let q = &queries[i * hidden + h * d..][..d];
            // scores, 16 keys at a time, in four independent sums (the accumulators stay
            // in registers and the additions overlap)
            for (c, chunk) in scores.chunks_exact_mut(16).enumerate() {
                let key = |e: usize| -> &[f32; 16] { kt[e * padded + c * 16..][..16].try_into().unwrap() };
                let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; 16], [0.0f32; 16], [0.0f32; 16], [0.0f32; 16]);
                let quads = d / 4 * 4;
                for e in (0..quads).step_by(4) {
                    axpy16(&mut a0, q[e], key(e));
                    axpy16(&mut a1, q[e + 1], key(e + 1));
                    axpy16(&mut a2, q[e + 2], key(e + 2));
                    axpy16(&mut a3, q[e + 3], key(e + 3));
                }
                for (e, &qe) in q.iter().enumerate().skip(quads) {
                    axpy16(&mut a0, qe, key(e));
                }
                for l in 0..16 {
                    chunk[l] = (a0[l] + a1[l]) + (a2[l] + a3[l]);
                }
            }
            let s = &mut scores[..len];
            let max = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            for x in s.iter_mut() {
                *x = exp(*x - max);
            }
            let inv = 1.0 / sum16(s);
            // the weighted values, 16 columns at a time
            let o = &mut out[i * hidden + h * d..][..d];
            let whole = d / 16 * 16;
            for c in (0..whole).step_by(16) {
                let value = |j: usize| -> &[f32; 16] { values[j * hidden + h * d + c..][..16].try_into().unwrap() };
                let (mut a0, mut a1) = ([0.0f32; 16], [0.0f32; 16]);
                let evens = len / 2 * 2;
                for j in (0..evens).step_by(2) {
                    axpy16(&mut a0, s[j], value(j));
                    axpy16(&mut a1, s[j + 1], value(j + 1));
                }
                if evens < len {
                    axpy16(&mut a0, s[evens], value(evens));
                }
                for (l, o) in o[c..c + 16].iter_mut().enumerate() {
                    *o = (a0[l] + a1[l]) * inv;
                }
            }
            for (e, o) in o.iter_mut().enumerate().skip(whole) {
                let v: f32 = s.iter().enumerate().map(|(j, &p)| p * values[j * hidden + h * d + e]).sum();
                *o = v * inv;
            }
        }
    }
}

/// `acc += a * x`, sixteen lanes.
#[inline(always)]
fn axpy16(acc: &mut [f32; 16], a: f32, x: &[f32; 16]) {
    for l in 0..16 {
        acc[l] += a * x[l];
    }
}

/// A linear layer `y = x Wᵀ + b` (`W` is `n x k`, as PyTorch stores it).
pub struct Linear {
    n: usize,
    k: usize,
    bias: Vec<f32>,
    weights: Weights,
}

enum Weights {
    /// Row-major, multiplied by the `gemm` crate (CPUs without AVX2 and FMA).
    F32(Vec<f32>),
    /// Packed for the AVX2/FMA f32 kernel.
    #[cfg(target_arch = "x86_64")]
    F32Packed(Vec<f32>),
    #[cfg(target_arch = "x86_64")]
    Bf16(Vec<u32>),
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linear").field("n", &self.n).field("k", &self.k).field("precision", &self.precision()).finish()
    }
}

impl Linear {
    /// `weights` is `n` rows of `k`; bf16 is used only where the CPU supports it.
    pub fn new(weights: Vec<f32>, bias: Vec<f32>, n: usize, k: usize, precision: Precision) -> Linear {
        Linear::with_kernel(weights, bias, n, k, precision, true)
    }

    /// As [`Linear::new`]; `packed_f32: false` keeps f32 weights for `gemm` even where
    /// the AVX2 kernel runs (to test that path).
    fn with_kernel(
        weights: Vec<f32>,
        bias: Vec<f32>,
        n: usize,
        k: usize,
        precision: Precision,
        packed_f32: bool,
    ) -> Linear {
        assert_eq!(weights.len(), n * k, "linear weights are not {n} x {k}");
        assert_eq!(bias.len(), n, "linear bias is not {n} long");
        let weights = match precision {
            #[cfg(target_arch = "x86_64")]
            Precision::Bf16 if bf16_supported() => Weights::Bf16(bf16::pack(&weights, n, k)),
            #[cfg(target_arch = "x86_64")]
            _ if packed_f32 && avx2::supported() => Weights::F32Packed(avx2::pack(&weights, n, k)),
            _ => Weights::F32(weights),
        };
        Linear { n, k, bias, weights }
    }

    pub fn precision(&self) -> Precision {
        match self.weights {
            Weights::F32(_) => Precision::F32,
            #[cfg(target_arch = "x86_64")]
            Weights::F32Packed(_) => Precision::F32,
            #[cfg(target_arch = "x86_64")]
            Weights::Bf16(_) => Precision::Bf16,
        }
    }

    /// `out = x Wᵀ + b (+ residual)` for the `m = x.len() / k` rows of `x`, then `then`
    /// on each output row.
    pub fn forward(&self, x: &[f32], residual: Option<&[f32]>, out: &mut [f32], then: Then<'_>) {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        assert_eq!(x.len(), m * k);
        assert_eq!(out.len(), m * n);
        if let Some(r) = residual {
            assert_eq!(r.len(), m * n);
        }
        if let Then::LayerNorm { gamma, beta, .. } = then {
            assert!(gamma.len() == n && beta.len() == n);
        }
        if m == 0 {
            return;
        }
        // rows cut into tasks, a few per thread for balance when there are many (then in
        // whole microkernel tiles), else one per thread
        let threads = rayon::current_num_threads().max(1);
        let rows = if m >= 256 { m.div_ceil(threads * 4).next_multiple_of(8) } else { m.div_ceil(threads).max(4) };
        out.par_chunks_mut(rows * n).enumerate().for_each(|(t, out)| {
            let first = t * rows;
            let count = out.len() / n;
            let x = &x[first * k..(first + count) * k];
            let residual = residual.map(|r| &r[first * n..(first + count) * n]);
            match &self.weights {
                Weights::F32(w) => f32_rows(w, &self.bias, n, k, x, residual, out),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Weights::F32Packed` is only built when the CPU has AVX2 and FMA.
                Weights::F32Packed(w) => unsafe { avx2::rows(w, &self.bias, n, k, x, residual, out) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Weights::Bf16` is only built when the CPU supports the kernel.
                Weights::Bf16(w) => unsafe { bf16::rows(w, &self.bias, n, k, x, residual, out) },
            }
            match then {
                Then::Nothing => {}
                Then::Gelu => gelu_slice(out),
                Then::LayerNorm { gamma, beta, eps } => layer_norm_rows(out, gamma, beta, eps),
            }
        });
    }
}

/// What a linear layer does to its output rows after the product (while they are still in
/// the cache of the thread that computed them).
#[derive(Clone, Copy, Debug)]
pub enum Then<'a> {
    Nothing,
    /// [`gelu`] of every element.
    Gelu,
    /// [`layer_norm`] of every row.
    LayerNorm {
        gamma: &'a [f32],
        beta: &'a [f32],
        eps: f32,
    },
}

/// f32 rows through `gemm`, with the bias and residual written first and accumulated onto.
fn f32_rows(w: &[f32], bias: &[f32], n: usize, k: usize, x: &[f32], residual: Option<&[f32]>, out: &mut [f32]) {
    let m = x.len() / k;
    for (i, row) in out.chunks_exact_mut(n).enumerate() {
        row.copy_from_slice(bias);
        if let Some(r) = residual {
            for (o, r) in row.iter_mut().zip(&r[i * n..(i + 1) * n]) {
                *o += r;
            }
        }
    }
    // SAFETY: the strides describe `out` (m x n, row-major), `x` (m x k, row-major) and
    // `w` read as its transpose (k x n); the lengths were checked by the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The AVX2/FMA f32 kernel: what CPUs without AVX512_BF16 (most laptops) run.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Output columns per panel: two ymm registers.
    pub const NR: usize = 16;
    /// Rows per microkernel call at most (6 x 2 accumulators, 2 for the panel, 1 for x).
    pub const MR: usize = 6;

    pub fn supported() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// `w` (`n x k`) in column panels of [`NR`]: for panel `p` and input `e`, the `NR`
    /// floats at `(p * k + e) * NR` are `W[c][e]` for the panel's columns `c`; zero
    /// beyond `n`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Vec<f32> {
        let panels = n.div_ceil(NR);
        let mut out = vec![0f32; panels * k * NR];
        for p in 0..panels {
            for e in 0..k {
                for c in 0..NR.min(n - p * NR) {
                    out[(p * k + e) * NR + c] = w[(p * NR + c) * k + e];
                }
            }
        }
        out
    }

    /// Rows of `x` (`k` wide) times the packed weights, plus bias and residual, into `out`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA. `w` must come from [`pack`] with the same `n` and
    /// `k` (checked), and the slices must hold whole rows (checked).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn rows(
        w: &[f32],
        bias: &[f32],
        n: usize,
        k: usize,
        x: &[f32],
        residual: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let m = x.len() / k;
        assert!(w.len() == n.div_ceil(NR) * k * NR && bias.len() == n && x.len() == m * k && out.len() == m * n);
        assert!(residual.is_none_or(|r| r.len() == m * n));
        for p in 0..n.div_ceil(NR) {
            let col = p * NR;
            let panel = &w[p * k * NR..(p + 1) * k * NR];
            let valid = (n - col).min(NR);
            let mut r = 0;
            while r < m {
                let mr = (m - r).min(MR);
                let x = &x[r * k..];
                let acc = match mr {
                    6 => tile::<6>(x, k, k, panel),
                    5 => tile::<5>(x, k, k, panel),
                    4 => tile::<4>(x, k, k, panel),
                    3 => tile::<3>(x, k, k, panel),
                    2 => tile::<2>(x, k, k, panel),
                    _ => tile::<1>(x, k, k, panel),
                };
                for (i, row) in acc.iter().take(mr).enumerate() {
                    let at = (r + i) * n + col;
                    let dst = &mut out[at..at + valid];
                    for (c, d) in dst.iter_mut().enumerate() {
                        *d = row[c] + bias[col + c] + residual.map_or(0.0, |res| res[at + c]);
                    }
                }
                r += mr;
            }
        }
    }

    /// `R` rows of `x` (from `x[0]`, `stride` apart, `kl` inputs each) times a packed
    /// panel's `kl` inputs.
    #[target_feature(enable = "avx2,fma")]
    fn tile<const R: usize>(x: &[f32], stride: usize, kl: usize, panel: &[f32]) -> [[f32; NR]; MR] {
        assert!(x.len() >= (R - 1) * stride + kl && panel.len() >= kl * NR);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let (xp, bp) = (x.as_ptr(), panel.as_ptr());
        for e in 0..kl {
            // SAFETY: e < kl, so the panel's NR floats for input e and each row's input e
            // are inside the slices (asserted above).
            unsafe {
                let b0 = _mm256_loadu_ps(bp.add(e * NR));
                let b1 = _mm256_loadu_ps(bp.add(e * NR + 8));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let a = _mm256_broadcast_ss(&*xp.add(i * stride + e));
                    acc[0] = _mm256_fmadd_ps(a, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(a, b1, acc[1]);
                }
            }
        }
        let mut out = [[0f32; NR]; MR];
        for (o, acc) in out.iter_mut().zip(&acc) {
            // SAFETY: each row of `out` holds NR = 16 floats, two ymm stores.
            unsafe {
                _mm256_storeu_ps(o.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(o.as_mut_ptr().add(8), acc[1]);
            }
        }
        out
    }
}

/// The AVX512_BF16 kernel.
#[cfg(target_arch = "x86_64")]
mod bf16 {
    use std::arch::x86_64::*;

    use super::bf16_bits;

    /// Output columns per panel: three zmm registers of f32.
    pub const NR: usize = 48;
    /// Rows per microkernel call at most (8 x 3 accumulators).
    pub const MR: usize = 8;

    /// `w` (`n x k`) as bf16 pairs in column panels of [`NR`]: for panel `p` and pair `q`,
    /// the `NR` words at `(p * pairs + q) * NR` hold `(W[c][2q], W[c][2q + 1])` for the
    /// panel's columns `c`. Zero beyond `n` and `k`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Vec<u32> {
        let pairs = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let mut out = vec![0u32; panels * pairs * NR];
        for p in 0..panels {
            for q in 0..pairs {
                for c in 0..NR {
                    let row = p * NR + c;
                    if row >= n {
                        continue;
                    }
                    let lo = bf16_bits(w[row * k + 2 * q]) as u32;
                    let hi = if 2 * q + 1 < k { bf16_bits(w[row * k + 2 * q + 1]) as u32 } else { 0 };
                    out[(p * pairs + q) * NR + c] = lo | hi << 16;
                }
            }
        }
        out
    }

    /// Rows of `x` (`k` wide) times the packed weights, plus bias and residual, into `out`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW and AVX512_BF16. `w` must come from [`pack`] with the
    /// same `n` and `k` (checked), and the slices must hold whole rows (checked).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn rows(
        w: &[u32],
        bias: &[f32],
        n: usize,
        k: usize,
        x: &[f32],
        residual: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let m = x.len() / k;
        let pairs = k.div_ceil(2);
        assert!(w.len() == n.div_ceil(NR) * pairs * NR && bias.len() == n && x.len() == m * k && out.len() == m * n);
        assert!(residual.is_none_or(|r| r.len() == m * n));
        // the rows as bf16 pairs, zero-padded to an even width
        let mut a = vec![0u32; m * pairs];
        for (dst, src) in a.chunks_exact_mut(pairs).zip(x.chunks_exact(k)) {
            let whole = src.chunks_exact(2);
            let odd = whole.remainder();
            for (d, s) in dst.iter_mut().zip(whole) {
                *d = bf16_bits(s[0]) as u32 | (bf16_bits(s[1]) as u32) << 16;
            }
            if let [last] = odd {
                dst[pairs - 1] = bf16_bits(*last) as u32;
            }
        }
        let panels = n.div_ceil(NR);
        for p in 0..panels {
            let col = p * NR;
            let valid = (n - col).min(NR);
            let mask = |z: usize| -> __mmask16 {
                let lanes = valid.saturating_sub(z * 16).min(16);
                ((1u32 << lanes) - 1) as __mmask16
            };
            let mut r = 0;
            while r < m {
                let mr = (m - r).min(MR);
                let tile = Tile {
                    pairs,
                    a: &a[r * pairs..],
                    b: &w[p * pairs * NR..(p + 1) * pairs * NR],
                    c: &mut out[r * n + col..],
                    ldc: n,
                    bias: &bias[col..],
                    residual: residual.map(|res| &res[r * n + col..]),
                    masks: [mask(0), mask(1), mask(2)],
                };
                // SAFETY: the CPU features are this function's; the tile's slices hold `mr`
                // rows (`pairs` pairs of `a`, `ldc`-strided rows of `c` and `residual` with
                // the masked columns inside them) and one whole panel of `b`.
                unsafe {
                    match mr {
                        8 => tile.run::<8>(),
                        7 => tile.run::<7>(),
                        6 => tile.run::<6>(),
                        5 => tile.run::<5>(),
                        4 => tile.run::<4>(),
                        3 => tile.run::<3>(),
                        2 => tile.run::<2>(),
                        _ => tile.run::<1>(),
                    }
                }
                r += mr;
            }
        }
    }

    /// One microkernel call: up to [`MR`] rows by one panel.
    struct Tile<'a> {
        pairs: usize,
        a: &'a [u32],
        b: &'a [u32],
        c: &'a mut [f32],
        ldc: usize,
        bias: &'a [f32],
        residual: Option<&'a [f32]>,
        masks: [__mmask16; 3],
    }

    impl Tile<'_> {
        /// # Safety
        /// The CPU must have AVX-512 F/BW and AVX512_BF16; `a` must hold `R` rows of
        /// `pairs`, `b` a panel of `pairs * NR`, and `c` and `residual` `R` rows of `ldc`
        /// with the unmasked columns inside the slice.
        #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
        unsafe fn run<const R: usize>(self) {
            debug_assert!(self.a.len() >= (R - 1) * self.pairs + self.pairs);
            debug_assert!(self.b.len() >= self.pairs * NR);
            let mut acc = [[_mm512_setzero_ps(); 3]; R];
            let a = self.a.as_ptr();
            let b = self.b.as_ptr();
            for q in 0..self.pairs {
                // SAFETY: q < pairs, so the panel's pair q (NR words) and each row's word
                // q are inside the slices (checked by the caller).
                unsafe {
                    let bq = b.add(q * NR);
                    let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bq as *const __m512i));
                    let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bq.add(16) as *const __m512i));
                    let b2: __m512bh = std::mem::transmute(_mm512_loadu_si512(bq.add(32) as *const __m512i));
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(i * self.pairs + q) as i32));
                        acc[0] = _mm512_dpbf16_ps(acc[0], x, b0);
                        acc[1] = _mm512_dpbf16_ps(acc[1], x, b1);
                        acc[2] = _mm512_dpbf16_ps(acc[2], x, b2);
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                for (z, &v) in acc.iter().enumerate() {
                    let m = self.masks[z];
                    if m == 0 {
                        continue;
                    }
                    let at = i * self.ldc + z * 16;
                    // SAFETY: masked lanes are neither read nor written; the unmasked ones
                    // are columns of the panel inside row i (checked by the caller).
                    unsafe {
                        let mut v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, self.bias.as_ptr().add(z * 16)));
                        if let Some(r) = self.residual {
                            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, r.as_ptr().add(at)));
                        }
                        _mm512_mask_storeu_ps(self.c.as_mut_ptr().add(at), m, v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// xorshift floats in [-1, 1)
    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn reference_linear(w: &[f32], bias: &[f32], x: &[f32], residual: Option<&[f32]>, n: usize, k: usize) -> Vec<f64> {
        let m = x.len() / k;
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = bias[j] as f64 + residual.map_or(0.0, |r| r[i * n + j] as f64);
                for e in 0..k {
                    s += x[i * k + e] as f64 * w[j * k + e] as f64;
                }
                out[i * n + j] = s;
            }
        }
        out
    }

    fn round_bf16(v: &[f32]) -> Vec<f32> {
        v.iter().map(|&x| bf16_to_f32(bf16_bits(x))).collect()
    }

    fn check_linear(precision: Precision) {
        check_linear_with(precision, true);
    }

    fn check_linear_with(precision: Precision, packed_f32: bool) {
        let shapes = [(1, 16, 1), (5, 40, 7), (8, 48, 32), (13, 100, 64), (37, 384, 384), (300, 96, 33)];
        for (seed, &(m, n, k)) in shapes.iter().enumerate() {
            let w = random(n * k, seed as u64 * 3 + 1);
            let bias = random(n, seed as u64 * 3 + 2);
            let x = random(m * k, seed as u64 * 3 + 3);
            let residual = random(m * n, seed as u64 * 3 + 4);
            let layer = Linear::with_kernel(w.clone(), bias.clone(), n, k, precision, packed_f32);
            assert_eq!(layer.precision(), precision);
            // bf16 rounds both operands; the products are then exact in f32
            let (rw, rx) = match precision {
                Precision::Bf16 => (round_bf16(&w), round_bf16(&x)),
                Precision::F32 => (w.clone(), x.clone()),
            };
            for res in [None, Some(residual.as_slice())] {
                let want = reference_linear(&rw, &bias, &rx, res, n, k);
                let mut got = vec![f32::NAN; m * n];
                layer.forward(&x, res, &mut got, Then::Nothing);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (*g as f64 - w).abs() <= 1e-5 * (k as f64).sqrt() + 1e-5 * w.abs(),
                        "{m}x{n}x{k} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn f32_linear_matches_a_reference() {
        // the AVX2/FMA kernel where the CPU has it, and `gemm`
        check_linear(Precision::F32);
        check_linear_with(Precision::F32, false);
    }

    #[test]
    fn bf16_linear_matches_a_reference_on_rounded_inputs() {
        if !bf16_supported() {
            eprintln!("skipped: this CPU has no AVX512_BF16");
            return;
        }
        check_linear(Precision::Bf16);
    }

    #[test]
    fn bf16_linear_stays_close_to_f32() {
        if !bf16_supported() {
            eprintln!("skipped: this CPU has no AVX512_BF16");
            return;
        }
        let (m, n, k) = (20, 384, 384);
        let w = random(n * k, 7);
        let x = random(m * k, 8);
        let bias = vec![0.0; n];
        let mut a = vec![0.0; m * n];
        let mut b = vec![0.0; m * n];
        Linear::new(w.clone(), bias.clone(), n, k, Precision::Bf16).forward(&x, None, &mut a, Then::Nothing);
        Linear::new(w, bias, n, k, Precision::F32).forward(&x, None, &mut b, Then::Nothing);
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let cos = dot / (na * nb);
        assert!(cos > 0.9999, "bf16 vs f32 cosine {cos}");
        assert!(cos < 1.0 - 1e-9, "bf16 should not be bit-identical to f32 ({cos})");
    }

    /// erf in f64 (also the reference of the encoder's tests).
    pub(crate) fn erf_reference(x: f64) -> f64 {
        if x.abs() > 4.0 {
            return x.signum(); // within 2e-8
        }
        // Maclaurin series; the cancellation costs under 1e-9 for |x| <= 4
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_erf_and_gelu_are_accurate() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            assert!((got - want).abs() <= 3e-7 * want, "exp({x}) = {got}, want {want}");
        }
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
        for i in -800..=800 {
            let x = i as f32 / 100.0;
            let want = erf_reference(x as f64);
            let got = erf(x) as f64;
            assert!((got - want).abs() <= 5e-7, "erf({x}) = {got}, want {want}");
            let g = gelu(x) as f64;
            let gw = 0.5 * x as f64 * (1.0 + erf_reference(x as f64 / 2f64.sqrt()));
            assert!((g - gw).abs() <= 5e-7 * (1.0 + gw.abs()), "gelu({x}) = {g}, want {gw}");
        }
        let mut v: Vec<f32> = (-50_000..50_000).map(|i| i as f32 / 5_000.0).collect();
        let want: Vec<f32> = v.iter().map(|&x| gelu(x)).collect();
        gelu_in_place(&mut v);
        assert_eq!(v, want, "the vectorised GELU is the scalar one");
    }

    #[test]
    fn layer_norm_matches_a_reference() {
        let dim = 40;
        let x = random(7 * dim, 11);
        let gamma = random(dim, 12);
        let beta = random(dim, 13);
        let mut got = x.clone();
        layer_norm(&mut got, &gamma, &beta, 1e-12);
        for (r, row) in x.chunks(dim).enumerate() {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
            for c in 0..dim {
                let want = (row[c] as f64 - mean) / (var + 1e-12).sqrt() * gamma[c] as f64 + beta[c] as f64;
                let g = got[r * dim + c] as f64;
                assert!((g - want).abs() < 1e-5, "[{r},{c}] {g} vs {want}");
            }
        }
    }

    #[test]
    fn attention_matches_a_reference_per_sequence() {
        // head widths 8 (the scalar remainder), 32 (MiniLM's) and 36 (both)
        for (hidden, heads) in [(24, 3), (64, 2), (72, 2)] {
            let shape = Heads { hidden, heads };
            let d = hidden / heads;
            let seqs = [(0, 1), (1, 5), (6, 40), (46, 17)];
            let t = 63;
            let qkv = random(t * 3 * hidden, 21 + hidden as u64);
            let mut got = vec![f32::NAN; t * hidden];
            attention(&qkv, &seqs, shape, &mut got);
            let at = |row: usize, col: usize| qkv[row * 3 * hidden + col] as f64;
            for &(start, len) in &seqs {
                for h in 0..heads {
                    for i in 0..len {
                        let scores: Vec<f64> = (0..len)
                            .map(|j| {
                                (0..d)
                                    .map(|e| at(start + i, h * d + e) * at(start + j, hidden + h * d + e))
                                    .sum::<f64>()
                                    / (d as f64).sqrt()
                            })
                            .collect();
                        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                        let total: f64 = exps.iter().sum();
                        for e in 0..d {
                            let want: f64 =
                                (0..len).map(|j| exps[j] / total * at(start + j, 2 * hidden + h * d + e)).sum();
                            let g = got[(start + i) * hidden + h * d + e] as f64;
                            assert!((g - want).abs() < 1e-5, "d {d} seq {start} head {h} row {i} [{e}]: {g} vs {want}");
                        }
                    }
                }
            }
        }
    }
}
