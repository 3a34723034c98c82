//! The BERT encoder of all-MiniLM-L6-v2 over packed sequences, and mean pooling.
//!
//! The token rows of every sequence in a batch are stacked into one matrix with no
//! padding, so the linear layers run on exactly the real tokens, and attention runs per
//! sequence (a sequence only ever sees its own tokens, so no mask is needed). A sequence's
//! vector does not depend on what else is in the batch.

use serde::Deserialize;

use rayon::prelude::*;

use super::kernels::{self, Heads, Linear, Precision, Then};

/// The parts of a Hugging Face BERT `config.json` the encoder needs.
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".to_owned()
}
fn default_position_type() -> String {
    "absolute".to_owned()
}

impl BertConfig {
    /// Rejects what this encoder does not implement.
    pub fn check(&self) -> Result<(), String> {
        if self.hidden_act != "gelu" {
            return Err(format!("activation {:?} is not supported (only gelu)", self.hidden_act));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!("position embeddings {:?} are not supported", self.position_embedding_type));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden size {} does not split into {} heads",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Ok(())
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn then(&self, eps: f32) -> Then<'_> {
        Then::LayerNorm { gamma: &self.gamma, beta: &self.beta, eps }
    }
}

struct Layer {
    /// queries, keys and values in one `3 * hidden x hidden` matrix
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: Norm,
}

/// A loaded BERT encoder.
pub struct Bert {
    config: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
}

/// Named f32 tensors, looked up with or without a `bert.` prefix.
pub trait Tensors {
    /// The tensor's values, checked to have `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String>;
}

impl Tensors for safetensors::SafeTensors<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let view = self
            .tensor(name)
            .or_else(|_| self.tensor(&format!("bert.{name}")))
            .map_err(|_| format!("tensor {name} is missing"))?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(format!("tensor {name} is {:?}, not F32", view.dtype()));
        }
        if view.shape() != shape {
            return Err(format!("tensor {name} has shape {:?}, not {shape:?}", view.shape()));
        }
        Ok(view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

impl Bert {
    pub fn load(config: BertConfig, tensors: &dyn Tensors, precision: Precision) -> Result<Bert, String> {
        config.check()?;
        let h = config.hidden_size;
        let f = config.intermediate_size;
        let norm = |p: &str| -> Result<Norm, String> {
            Ok(Norm {
                gamma: tensors.get(&format!("{p}.LayerNorm.weight"), &[h])?,
                beta: tensors.get(&format!("{p}.LayerNorm.bias"), &[h])?,
            })
        };
        let linear = |p: &str, n: usize, k: usize| -> Result<Linear, String> {
            let w = tensors.get(&format!("{p}.weight"), &[n, k])?;
            let b = tensors.get(&format!("{p}.bias"), &[n])?;
            Ok(Linear::new(w, b, n, k, precision))
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let mut w = Vec::with_capacity(3 * h * h);
            let mut b = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                w.extend(tensors.get(&format!("{p}.attention.self.{part}.weight"), &[h, h])?);
                b.extend(tensors.get(&format!("{p}.attention.self.{part}.bias"), &[h])?);
            }
            layers.push(Layer {
                qkv: Linear::new(w, b, 3 * h, h, precision),
                attn_out: linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: norm(&format!("{p}.attention.output"))?,
                ffn_in: linear(&format!("{p}.intermediate.dense"), f, h)?,
                ffn_out: linear(&format!("{p}.output.dense"), h, f)?,
                ffn_norm: norm(&format!("{p}.output"))?,
            });
        }
        Ok(Bert {
            word: tensors.get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position: tensors.get("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?,
            token_type: tensors.get("embeddings.token_type_embeddings.weight", &[2, h])?[..h].to_vec(),
            embed_norm: norm("embeddings")?,
            layers,
            config,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn precision(&self) -> Precision {
        self.layers.first().map_or(Precision::F32, |l| l.qkv.precision())
    }

    /// The last hidden states of `seqs` (token ids, special tokens included), one
    /// `hidden`-wide row per token, sequence after sequence.
    pub fn hidden_states(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, String> {
        let h = self.config.hidden_size;
        let f = self.config.intermediate_size;
        let eps = self.config.layer_norm_eps as f32;
        let mut spans = Vec::with_capacity(seqs.len());
        let mut tokens = 0;
        for s in seqs {
            if s.len() > self.config.max_position_embeddings {
                return Err(format!("{} tokens is more than the model reads", s.len()));
            }
            spans.push((tokens, s.len()));
            tokens += s.len();
        }
        let mut x = Vec::with_capacity(tokens * h);
        for s in seqs {
            for (pos, &id) in s.iter().enumerate() {
                let id = id as usize;
                if id >= self.config.vocab_size {
                    return Err(format!("token id {id} is outside the vocabulary"));
                }
                let word = &self.word[id * h..(id + 1) * h];
                let position = &self.position[pos * h..(pos + 1) * h];
                x.extend(word.iter().zip(position).zip(&self.token_type).map(|((w, p), t)| w + p + t));
            }
        }
        kernels::layer_norm(&mut x, &self.embed_norm.gamma, &self.embed_norm.beta, eps);
        let heads = Heads { hidden: h, heads: self.config.num_attention_heads };
        let mut qkv = vec![0.0f32; tokens * 3 * h];
        let mut context = vec![0.0f32; tokens * h];
        let mut mid = vec![0.0f32; tokens * h];
        let mut inner = vec![0.0f32; tokens * f];
        for layer in &self.layers {
            layer.qkv.forward(&x, None, &mut qkv, Then::Nothing);
            kernels::attention(&qkv, &spans, heads, &mut context);
            layer.attn_out.forward(&context, Some(&x), &mut mid, layer.attn_norm.then(eps));
            layer.ffn_in.forward(&mid, None, &mut inner, Then::Gelu);
            layer.ffn_out.forward(&inner, Some(&mid), &mut x, layer.ffn_norm.then(eps));
        }
        Ok(x)
    }

    /// Mean-pooled, L2-normalised vectors of `seqs` (as sentence-transformers pools
    /// all-MiniLM-L6-v2).
    ///
    /// A batch is cut into one group of sequences per thread (of about equal tokens) and
    /// the groups run side by side, so the threads rarely wait for each other; the kernels
    /// inside split their work too, which keeps one long text on every core.
    pub fn embed(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let groups = rayon::current_num_threads().min(seqs.len()).max(1);
        let mut bounds = vec![0];
        let mut tokens = 0;
        for (i, s) in seqs.iter().enumerate() {
            tokens += s.len();
            if tokens * groups >= total * bounds.len() && bounds.len() < groups && i + 1 < seqs.len() {
                bounds.push(i + 1);
            }
        }
        bounds.push(seqs.len());
        let parts: Vec<Result<Vec<Vec<f32>>, String>> =
            bounds.par_windows(2).map(|w| self.embed_group(&seqs[w[0]..w[1]])).collect();
        let mut out = Vec::with_capacity(seqs.len());
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }

    fn embed_group(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let h = self.config.hidden_size;
        let states = self.hidden_states(seqs)?;
        let mut out = Vec::with_capacity(seqs.len());
        let mut row = 0;
        for s in seqs {
            let mut v = vec![0.0f32; h];
            for t in states[row * h..(row + s.len()) * h].chunks_exact(h) {
                for (a, b) in v.iter_mut().zip(t) {
                    *a += b;
                }
            }
            row += s.len();
            let count = (s.len() as f32).max(1e-9);
            for a in v.iter_mut() {
                *a /= count;
            }
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            for a in v.iter_mut() {
                *a /= norm;
            }
            out.push(v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Tensors by name: shape and values.
    type Named = HashMap<String, (Vec<usize>, Vec<f32>)>;

    impl Tensors for Named {
        fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
            let (s, v) = self.get(name).ok_or_else(|| format!("tensor {name} is missing"))?;
            assert_eq!(s, shape, "{name}");
            Ok(v.clone())
        }
    }

    fn random(n: usize, seed: &mut u64, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                ((*seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
            })
            .collect()
    }

    fn tiny() -> (BertConfig, Named) {
        let config = BertConfig {
            vocab_size: 50,
            hidden_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 2, // heads 32 wide, as MiniLM's
            intermediate_size: 128,
            max_position_embeddings: 40,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
            position_embedding_type: "absolute".into(),
        };
        let (h, f) = (64, 128);
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut t = HashMap::new();
        let mut put = |name: String, shape: Vec<usize>, scale: f32| {
            let n = shape.iter().product();
            t.insert(name, (shape, random(n, &mut seed, scale)));
        };
        put("embeddings.word_embeddings.weight".into(), vec![50, h], 1.0);
        put("embeddings.position_embeddings.weight".into(), vec![40, h], 0.5);
        put("embeddings.token_type_embeddings.weight".into(), vec![2, h], 0.1);
        put("embeddings.LayerNorm.weight".into(), vec![h], 1.0);
        put("embeddings.LayerNorm.bias".into(), vec![h], 0.1);
        for l in 0..2 {
            let p = format!("encoder.layer.{l}");
            for part in ["query", "key", "value"] {
                put(format!("{p}.attention.self.{part}.weight"), vec![h, h], 0.3);
                put(format!("{p}.attention.self.{part}.bias"), vec![h], 0.1);
            }
            put(format!("{p}.attention.output.dense.weight"), vec![h, h], 0.3);
            put(format!("{p}.attention.output.dense.bias"), vec![h], 0.1);
            put(format!("{p}.attention.output.LayerNorm.weight"), vec![h], 1.0);
            put(format!("{p}.attention.output.LayerNorm.bias"), vec![h], 0.1);
            put(format!("{p}.intermediate.dense.weight"), vec![f, h], 0.3);
            put(format!("{p}.intermediate.dense.bias"), vec![f], 0.1);
            put(format!("{p}.output.dense.weight"), vec![h, f], 0.2);
            put(format!("{p}.output.dense.bias"), vec![h], 0.1);
            put(format!("{p}.output.LayerNorm.weight"), vec![h], 1.0);
            put(format!("{p}.output.LayerNorm.bias"), vec![h], 0.1);
        }
        (config, t)
    }

    /// BERT as PyTorch runs it: a padded batch with an additive attention mask, in f64.
    fn reference(config: &BertConfig, t: &Named, seqs: &[&[u32]]) -> Vec<Vec<f64>> {
        let g = |n: &str| t[n].1.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let (h, heads) = (config.hidden_size, config.num_attention_heads);
        let d = h / heads;
        let len = seqs.iter().map(|s| s.len()).max().unwrap();
        let linear = |x: &[Vec<f64>], p: &str| -> Vec<Vec<f64>> {
            let (w, b) = (g(&format!("{p}.weight")), g(&format!("{p}.bias")));
            let n = b.len();
            let k = x[0].len();
            x.iter()
                .map(|r| (0..n).map(|j| b[j] + (0..k).map(|e| r[e] * w[j * k + e]).sum::<f64>()).collect())
                .collect()
        };
        let norm = |x: &mut [Vec<f64>], p: &str| {
            let (gm, bt) = (g(&format!("{p}.LayerNorm.weight")), g(&format!("{p}.LayerNorm.bias")));
            for r in x.iter_mut() {
                let mean = r.iter().sum::<f64>() / h as f64;
                let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
                for (c, v) in r.iter_mut().enumerate() {
                    *v = (*v - mean) / (var + 1e-12).sqrt() * gm[c] + bt[c];
                }
            }
        };
        let erf = crate::embed::kernels::tests::erf_reference;
        seqs.iter()
            .map(|s| {
                // pad to the batch's longest sequence, masked
                let (word, pos, tt) = (
                    g("embeddings.word_embeddings.weight"),
                    g("embeddings.position_embeddings.weight"),
                    g("embeddings.token_type_embeddings.weight"),
                );
                let mut x: Vec<Vec<f64>> = (0..len)
                    .map(|p| {
                        let id = s.get(p).copied().unwrap_or(0) as usize;
                        (0..h).map(|c| word[id * h + c] + pos[p * h + c] + tt[c]).collect()
                    })
                    .collect();
                norm(&mut x, "embeddings");
                for l in 0..config.num_hidden_layers {
                    let p = format!("encoder.layer.{l}");
                    let q = linear(&x, &format!("{p}.attention.self.query"));
                    let k = linear(&x, &format!("{p}.attention.self.key"));
                    let v = linear(&x, &format!("{p}.attention.self.value"));
                    let mut ctx = vec![vec![0.0; h]; len];
                    for hd in 0..heads {
                        for i in 0..len {
                            let scores: Vec<f64> = (0..len)
                                .map(|j| {
                                    let dot: f64 = (0..d).map(|e| q[i][hd * d + e] * k[j][hd * d + e]).sum();
                                    dot / (d as f64).sqrt() + if j < s.len() { 0.0 } else { -1e9 }
                                })
                                .collect();
                            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                            let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                            let total: f64 = e.iter().sum();
                            for c in 0..d {
                                ctx[i][hd * d + c] = (0..len).map(|j| e[j] / total * v[j][hd * d + c]).sum();
                            }
                        }
                    }
                    let mut mid = linear(&ctx, &format!("{p}.attention.output.dense"));
                    for (m, r) in mid.iter_mut().zip(&x) {
                        for (a, b) in m.iter_mut().zip(r) {
                            *a += b;
                        }
                    }
                    norm(&mut mid, &format!("{p}.attention.output"));
                    let mut inner = linear(&mid, &format!("{p}.intermediate.dense"));
                    for r in inner.iter_mut() {
                        for v in r.iter_mut() {
                            *v = 0.5 * *v * (1.0 + erf(*v / 2f64.sqrt()));
                        }
                    }
                    let mut out = linear(&inner, &format!("{p}.output.dense"));
                    for (o, r) in out.iter_mut().zip(&mid) {
                        for (a, b) in o.iter_mut().zip(r) {
                            *a += b;
                        }
                    }
                    norm(&mut out, &format!("{p}.output"));
                    x = out;
                }
                // mean pooling over the real tokens, then L2
                let mut v = vec![0.0; h];
                for r in &x[..s.len()] {
                    for (a, b) in v.iter_mut().zip(r) {
                        *a += b;
                    }
                }
                let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
                v.iter().map(|a| a / n).collect()
            })
            .collect()
    }

    fn cos(a: &[f32], b: &[f64]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot / (na * nb)
    }

    fn seqs() -> Vec<Vec<u32>> {
        vec![
            vec![1, 7, 2],
            vec![1, 3, 4, 5, 6, 8, 9, 10, 11, 2],
            vec![1, 2],
            (0..37).map(|i| (i * 7 % 50) as u32).collect(),
        ]
    }

    #[test]
    fn packed_batches_match_a_padded_reference() {
        let (config, tensors) = tiny();
        let seqs = seqs();
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let want = reference(&config, &tensors, &refs);
        for precision in [Precision::F32, Precision::Bf16] {
            if precision == Precision::Bf16 && !kernels::bf16_supported() {
                continue;
            }
            let bert = Bert::load(config.clone(), &tensors, precision).unwrap();
            assert_eq!(bert.precision(), precision);
            let got = bert.embed(&refs).unwrap();
            let floor = if precision == Precision::F32 { 0.999_999 } else { 0.999 };
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let c = cos(g, w);
                assert!(c >= floor, "{precision:?} sequence {i}: cosine {c} with the reference");
            }
        }
    }

    #[test]
    fn a_sequence_gets_the_same_vector_alone_or_in_a_batch() {
        let (config, tensors) = tiny();
        let seqs = seqs();
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        for precision in [Precision::F32, Precision::Bf16] {
            if precision == Precision::Bf16 && !kernels::bf16_supported() {
                continue;
            }
            let bert = Bert::load(config.clone(), &tensors, precision).unwrap();
            let batch = bert.embed(&refs).unwrap();
            for (s, b) in refs.iter().zip(&batch) {
                let alone = bert.embed(&[s]).unwrap().remove(0);
                match precision {
                    // the bf16 kernel computes every row the same way whatever the batch
                    Precision::Bf16 => assert_eq!(&alone, b, "packing changed a vector"),
                    // gemm picks its blocking (and so its summation order) by shape
                    Precision::F32 => {
                        let b64: Vec<f64> = b.iter().map(|&x| x as f64).collect();
                        assert!(cos(&alone, &b64) > 0.999_999, "packing changed a vector");
                    }
                }
            }
        }
    }

    #[test]
    fn bad_inputs_and_weights_are_errors() {
        let (config, mut tensors) = tiny();
        let bert = Bert::load(config.clone(), &tensors, Precision::F32).unwrap();
        assert!(bert.embed(&[&[1, 99]]).unwrap_err().contains("vocabulary"));
        assert!(bert.embed(&[&[1; 41]]).unwrap_err().contains("more than"));
        assert!(bert.embed(&[]).unwrap().is_empty());
        tensors.remove("encoder.layer.1.output.dense.bias");
        let e = Bert::load(config.clone(), &tensors, Precision::F32).err().unwrap();
        assert!(e.contains("encoder.layer.1.output.dense.bias"), "{e}");
        let relu = BertConfig { hidden_act: "relu".into(), ..config };
        assert!(relu.check().unwrap_err().contains("relu"));
    }
}
