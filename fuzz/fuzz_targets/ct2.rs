//! `Ct2Model::parse`, the CTranslate2 `model.bin` reader: any bytes give a model or a
//! `Ct2Error`, and a parsed model's views stay inside the file and match their shapes.

#![no_main]

use huddle_models::ct2::Ct2Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Ct2Model::parse(data.to_vec()) else { return };
    for name in model.names() {
        let t = model.get(name).expect("a listed variable resolves");
        assert_eq!(t.data.len(), t.len() * t.dtype.size(), "{name}: data does not match shape {:?}", t.shape);
        if let Some(values) = t.to_f32() {
            assert_eq!(values.len(), t.len());
        }
        let _ = t.scalar_int();
    }
    for (alias, _) in model.aliases() {
        assert!(model.get(alias).is_some(), "alias {alias} does not resolve");
    }
});
