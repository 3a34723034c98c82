//! all-MiniLM-L6-v2 (huddle's encoder, bf16 where the CPU has AVX512_BF16 and f32) against
//! the real sentence-transformers (golden vectors in tests/fixtures/minilm_golden.json,
//! written by tests/py/golden_embeddings.py), and the chunker with the model's tokenizer.

use std::sync::{Mutex, OnceLock};

use huddle_models::chunk::{ChunkConfig, chunk_text};
use huddle_models::embed::{EMBEDDING_DIM, Embedder, Precision};
use huddle_models::fetch::fetch_embedder;

use crate::common::models_dir;

fn embedder() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| Embedder::load(&installed_dir()).expect("load the embedding model"))
}

/// The same model with f32 linear layers.
fn embedder_f32() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| Embedder::load_with_precision(&installed_dir(), Precision::F32).expect("load the embedding model"))
}

fn installed_dir() -> std::path::PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    fetch_embedder(&models_dir(), &|_| {}).expect("fetch the embedding model").dir
}

fn golden() -> Vec<(String, Vec<f32>)> {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/minilm_golden.json")).expect("golden fixture");
    json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let v = i["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            (i["text"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn check_against_sentence_transformers(model: &Embedder) {
    let golden = golden();
    assert!(golden.len() >= 16);
    let texts: Vec<&str> = golden.iter().map(|g| g.0.as_str()).collect();
    let batch = model.embed(&texts).unwrap();
    let mut worst = 1.0f32;
    for ((text, want), got) in golden.iter().zip(&batch) {
        assert_eq!(got.len(), EMBEDDING_DIM);
        let norm = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{text:?}: norm {norm}");
        let c = cos(got, want);
        worst = worst.min(c);
        assert!(c >= 0.999, "{text:.40?}: cosine {c} with sentence-transformers");
        // one at a time gives the same vector as in a batch
        let single = model.embed(&[text.as_str()]).unwrap().remove(0);
        assert!(cos(&single, got) >= 0.9999, "{text:.40?}: batch vs single");
    }
    eprintln!("{:?}: worst cosine with sentence-transformers over {} texts: {worst}", model.precision(), golden.len());
}

#[test]
fn vectors_match_sentence_transformers() {
    check_against_sentence_transformers(embedder());
}

#[test]
fn f32_vectors_match_sentence_transformers() {
    let model = embedder_f32();
    assert_eq!(model.precision(), Precision::F32);
    check_against_sentence_transformers(model);
}

#[test]
fn related_texts_score_higher_than_unrelated_ones() {
    let v = embedder()
        .embed(&[
            "How long do refunds take?",
            "Refunds arrive within five business days.",
            "The office is closed on public holidays.",
        ])
        .unwrap();
    assert!(cos(&v[0], &v[1]) > cos(&v[0], &v[2]) + 0.2, "{} vs {}", cos(&v[0], &v[1]), cos(&v[0], &v[2]));
    assert!(embedder().embed(&[]).unwrap().is_empty());
}

#[test]
fn chunks_respect_the_token_budget_sentences_and_overlap() {
    let tokenizer = embedder().tokenizer();
    let sentences: Vec<String> =
        (0..120).map(|i| format!("Sentence number {i} talks about topic {} in some detail.", i % 7)).collect();
    let text = sentences.join(" ");
    let config = ChunkConfig { max_tokens: 64, overlap_tokens: 16 };
    let chunks = chunk_text(tokenizer, &text, &config);
    assert!(chunks.len() > 10, "{}", chunks.len());
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index, i);
        assert!(c.tokens <= 64, "chunk {i} has {} tokens", c.tokens);
        assert_eq!(&text[c.start..c.end], c.text);
        assert!(c.text.ends_with('.'), "chunk {i} ends mid-sentence: {:?}", c.text);
        if i > 0 {
            assert!(c.start < chunks[i - 1].end, "chunk {i} does not overlap the previous one");
            assert!(c.start > chunks[i - 1].start, "chunks move forward");
        }
    }
    assert_eq!(chunks.last().unwrap().end, text.len(), "the whole text is covered");
    // one giant sentence is cut at token boundaries
    let giant = "word ".repeat(1_000);
    let chunks = chunk_text(tokenizer, &giant, &config);
    assert!(chunks.len() >= 15 && chunks.iter().all(|c| c.tokens <= 64));
    assert!(chunk_text(tokenizer, "  \n ", &config).is_empty());
    assert_eq!(chunk_text(tokenizer, "Just one line.", &ChunkConfig::default()).len(), 1);
}
