//! `extract_text` for uploaded documents: input that starts with `%PDF-` goes to the PDF
//! path, anything else to the Markdown and plain-text paths and `strip_markdown`. Every
//! input must give text or an `ExtractError`, never a panic that escapes.
//!
//! `extract_text` catches panics inside the PDF libraries by design (a bad upload must not
//! take the node down), but libFuzzer's panic hook aborts on every panic, caught or not. So
//! the hook set here ignores panics raised outside huddle's own code; a panic in huddle's
//! code still aborts, and one that escapes `extract_text` aborts the run either way.

#![no_main]

use huddle_models::extract::{DocumentFormat, extract_text, strip_markdown};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        let abort_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.location().is_some_and(|l| l.file().contains("models/src/")) {
                abort_hook(info);
            }
        }));
    },
    |data: &[u8]| {
        if data.starts_with(b"%PDF-") {
            let _ = extract_text(data, DocumentFormat::Pdf);
            return;
        }
        if let Ok(text) = extract_text(data, DocumentFormat::Markdown) {
            assert!(!text.trim().is_empty());
        }
        let _ = extract_text(data, DocumentFormat::Text);
        // Each line of Markdown gives at most one line of text.
        let md = String::from_utf8_lossy(data);
        assert!(strip_markdown(&md).lines().count() <= md.lines().count());
    }
);
