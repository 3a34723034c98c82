//! The tensors whisper.cpp's loader expects, their shapes and storage kinds, and the
//! CTranslate2 variables each one comes from.
//!
//! Names and shapes follow `whisper_model_load` in whisper.cpp's `src/whisper.cpp`
//! (`ASR_TENSOR_NAMES` in `src/whisper-arch.h`). Shapes are in ggml order (`ne[0]` is the
//! fastest-moving dimension), the reverse of the row-major CTranslate2 shapes.

use super::Hparams;

/// How a tensor is stored, which decides its element type in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Biases, layer norms, positional embeddings: always f32.
    F32,
    /// Convolution kernels: f16 unless the whole file is f32.
    Conv,
    /// 2-D weight matrices: the file's weight type (f16, q8_0, ...).
    Weight,
}

/// Where a tensor's values come from in the CTranslate2 model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    /// The CTranslate2 variable.
    pub var: String,
    /// Its expected row-major shape.
    pub shape: Vec<usize>,
    /// The rows (outermost index) to take; all rows when `None`. Unfuses QKV and KV.
    pub rows: Option<(usize, usize)>,
}

/// One tensor of the whisper.cpp model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorSpec {
    pub name: String,
    /// Shape in ggml order.
    pub ne: Vec<usize>,
    pub kind: Kind,
    pub source: Source,
}

impl TensorSpec {
    pub(crate) fn len(&self) -> usize {
        self.ne.iter().product()
    }
}

struct Builder(Vec<TensorSpec>);

impl Builder {
    fn push(&mut self, name: String, ne: &[usize], kind: Kind, var: String, shape: &[usize]) {
        self.0.push(TensorSpec {
            name,
            ne: ne.to_vec(),
            kind,
            source: Source { var, shape: shape.to_vec(), rows: None },
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn rows(&mut self, name: String, ne: &[usize], kind: Kind, var: String, shape: &[usize], from: usize, to: usize) {
        self.0.push(TensorSpec {
            name,
            ne: ne.to_vec(),
            kind,
            source: Source { var, shape: shape.to_vec(), rows: Some((from, to)) },
        });
    }

    /// `{dst}.weight` / `{dst}.bias` from a CTranslate2 layer norm (`gamma` / `beta`).
    fn layer_norm(&mut self, dst: &str, src: &str, n: usize) {
        self.push(format!("{dst}.weight"), &[n], Kind::F32, format!("{src}/gamma"), &[n]);
        self.push(format!("{dst}.bias"), &[n], Kind::F32, format!("{src}/beta"), &[n]);
    }

    /// A dense layer `[n_out, n_in]` with its bias.
    fn linear(&mut self, dst: &str, src: &str, n_in: usize, n_out: usize) {
        self.push(format!("{dst}.weight"), &[n_in, n_out], Kind::Weight, format!("{src}/weight"), &[n_out, n_in]);
        self.push(format!("{dst}.bias"), &[n_out], Kind::F32, format!("{src}/bias"), &[n_out]);
    }

    /// Slices `parts` fused `[n, n]` projections out of `src` (`[parts * n, n]`). `names`
    /// gives each part's whisper.cpp prefix and whether it has a bias (keys have none).
    fn fused(&mut self, src: &str, n: usize, names: &[(&str, bool)]) {
        let parts = names.len();
        for (i, &(dst, has_bias)) in names.iter().enumerate() {
            self.rows(
                format!("{dst}.weight"),
                &[n, n],
                Kind::Weight,
                format!("{src}/weight"),
                &[parts * n, n],
                i * n,
                (i + 1) * n,
            );
            if has_bias {
                self.rows(
                    format!("{dst}.bias"),
                    &[n],
                    Kind::F32,
                    format!("{src}/bias"),
                    &[parts * n],
                    i * n,
                    (i + 1) * n,
                );
            }
        }
    }

    fn mlp(&mut self, dst: &str, src: &str, n: usize) {
        self.layer_norm(&format!("{dst}.mlp_ln"), &format!("{src}/ffn/layer_norm"), n);
        self.linear(&format!("{dst}.mlp.0"), &format!("{src}/ffn/linear_0"), n, 4 * n);
        self.linear(&format!("{dst}.mlp.2"), &format!("{src}/ffn/linear_1"), 4 * n, n);
    }
}

/// Every tensor of a whisper.cpp model with these hyper-parameters, in file order.
pub(crate) fn whisper_tensors(h: &Hparams) -> Vec<TensorSpec> {
    let s = h.n_audio_state as usize;
    let t = h.n_text_state as usize;
    let mels = h.n_mels as usize;
    let audio_ctx = h.n_audio_ctx as usize;
    let text_ctx = h.n_text_ctx as usize;
    let vocab = h.n_vocab as usize;
    let mut b = Builder(Vec::new());

    b.push(
        "encoder.positional_embedding".into(),
        &[s, audio_ctx],
        Kind::F32,
        "encoder/position_encodings/encodings".into(),
        &[audio_ctx, s],
    );
    for (conv, n_in) in [("conv1", mels), ("conv2", s)] {
        b.push(
            format!("encoder.{conv}.weight"),
            &[3, n_in, s],
            Kind::Conv,
            format!("encoder/{conv}/weight"),
            &[s, n_in, 3],
        );
        b.push(format!("encoder.{conv}.bias"), &[1, s], Kind::F32, format!("encoder/{conv}/bias"), &[s]);
    }
    for i in 0..h.n_audio_layer as usize {
        let dst = format!("encoder.blocks.{i}");
        let src = format!("encoder/layer_{i}");
        b.layer_norm(&format!("{dst}.attn_ln"), &format!("{src}/self_attention/layer_norm"), s);
        b.fused(
            &format!("{src}/self_attention/linear_0"),
            s,
            &[
                (&format!("{dst}.attn.query"), true),
                (&format!("{dst}.attn.key"), false),
                (&format!("{dst}.attn.value"), true),
            ],
        );
        b.linear(&format!("{dst}.attn.out"), &format!("{src}/self_attention/linear_1"), s, s);
        b.mlp(&dst, &src, s);
    }
    b.layer_norm("encoder.ln_post", "encoder/layer_norm", s);

    b.push(
        "decoder.positional_embedding".into(),
        &[t, text_ctx],
        Kind::F32,
        "decoder/position_encodings/encodings".into(),
        &[text_ctx, t],
    );
    b.push(
        "decoder.token_embedding.weight".into(),
        &[t, vocab],
        Kind::Weight,
        "decoder/embeddings/weight".into(),
        &[vocab, t],
    );
    for i in 0..h.n_text_layer as usize {
        let dst = format!("decoder.blocks.{i}");
        let src = format!("decoder/layer_{i}");
        b.layer_norm(&format!("{dst}.attn_ln"), &format!("{src}/self_attention/layer_norm"), t);
        b.fused(
            &format!("{src}/self_attention/linear_0"),
            t,
            &[
                (&format!("{dst}.attn.query"), true),
                (&format!("{dst}.attn.key"), false),
                (&format!("{dst}.attn.value"), true),
            ],
        );
        b.linear(&format!("{dst}.attn.out"), &format!("{src}/self_attention/linear_1"), t, t);
        b.layer_norm(&format!("{dst}.cross_attn_ln"), &format!("{src}/attention/layer_norm"), t);
        b.linear(&format!("{dst}.cross_attn.query"), &format!("{src}/attention/linear_0"), t, t);
        b.fused(
            &format!("{src}/attention/linear_1"),
            t,
            &[(&format!("{dst}.cross_attn.key"), false), (&format!("{dst}.cross_attn.value"), true)],
        );
        b.linear(&format!("{dst}.cross_attn.out"), &format!("{src}/attention/linear_2"), t, t);
        b.mlp(&dst, &src, t);
    }
    b.layer_norm("decoder.ln", "decoder/layer_norm", t);
    b.0
}

/// The key-projection bias rows that whisper.cpp has no tensor for (whisper's keys have
/// no bias; CTranslate2 stores zeros there): `(variable, from, to)`.
pub(crate) fn dropped_key_biases(h: &Hparams) -> Vec<(String, usize, usize)> {
    let s = h.n_audio_state as usize;
    let t = h.n_text_state as usize;
    let mut out = Vec::new();
    for i in 0..h.n_audio_layer as usize {
        out.push((format!("encoder/layer_{i}/self_attention/linear_0/bias"), s, 2 * s));
    }
    for i in 0..h.n_text_layer as usize {
        out.push((format!("decoder/layer_{i}/self_attention/linear_0/bias"), t, 2 * t));
        out.push((format!("decoder/layer_{i}/attention/linear_1/bias"), 0, t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn tiny() -> Hparams {
        Hparams {
            n_vocab: 51864,
            n_audio_ctx: 1500,
            n_audio_state: 384,
            n_audio_head: 6,
            n_audio_layer: 4,
            n_text_ctx: 448,
            n_text_state: 384,
            n_text_head: 6,
            n_text_layer: 4,
            n_mels: 80,
            ftype: 1,
        }
    }

    #[test]
    fn tensor_count_matches_whisper_cpp() {
        // whisper.cpp: 7 encoder globals + 15 per encoder layer, 4 decoder globals + 24 per
        // decoder layer.
        let specs = whisper_tensors(&tiny());
        assert_eq!(specs.len(), 7 + 15 * 4 + 4 + 24 * 4);
        let names: HashSet<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), specs.len());
        for name in [
            "encoder.conv1.bias",
            "encoder.blocks.3.attn.key.weight",
            "decoder.blocks.0.cross_attn.value.bias",
            "decoder.token_embedding.weight",
            "decoder.ln.bias",
        ] {
            assert!(names.contains(name), "{name}");
        }
        assert!(!names.contains("encoder.blocks.0.attn.key.bias"));
    }

    #[test]
    fn unfused_rows_cover_the_fused_matrix() {
        let specs = whisper_tensors(&tiny());
        let q = specs.iter().find(|s| s.name == "decoder.blocks.1.attn.value.weight").unwrap();
        assert_eq!(q.source.var, "decoder/layer_1/self_attention/linear_0/weight");
        assert_eq!(q.source.shape, vec![1152, 384]);
        assert_eq!(q.source.rows, Some((768, 1152)));
        let kv = specs.iter().find(|s| s.name == "decoder.blocks.1.cross_attn.key.weight").unwrap();
        assert_eq!(kv.source.shape, vec![768, 384]);
        assert_eq!(kv.source.rows, Some((0, 384)));
    }
}
