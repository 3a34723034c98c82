//! `ggml::inspect` / `ggml::parse`, the whisper.cpp model check that runs before a file
//! reaches whisper.cpp: any bytes give a file or a `GgmlError`, and what it accepts is
//! self-consistent.

#![no_main]

use huddle_models::ggml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let inspected = ggml::inspect(data);
    let Ok(file) = ggml::parse(data) else {
        assert!(inspected.is_err(), "inspect accepts what parse refuses");
        return;
    };
    assert_eq!(inspected.ok().as_ref(), Some(&file.info));
    assert_eq!(file.info.n_tokens, file.tokens.len());
    assert_eq!(file.info.n_tensors, file.tensors.len());
    assert_eq!(file.mel_filters.len(), file.info.hparams.n_mels as usize * 201);
    for t in &file.tensors {
        if let Some(values) = t.to_f32() {
            assert_eq!(values.len(), t.ne.iter().product::<usize>(), "tensor {}", t.name);
        }
    }
});
