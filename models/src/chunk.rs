//! Cutting a document's text into overlapping chunks of at most N tokens, on sentence
//! boundaries where possible.
//!
//! The text is split into sentences (., !, ? followed by a space, and line breaks, so
//! Markdown headings and paragraphs end a sentence); sentences are packed into a chunk
//! while they fit; the next chunk starts with the last sentences of the previous one
//! that add up to about `overlap_tokens`. A sentence longer than a chunk is cut at token
//! boundaries.

use tokenizers::Tokenizer;

/// Chunk size and overlap, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkConfig {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    /// 256 tokens with 64 of overlap: all-MiniLM-L6-v2 reads 256 tokens, so a bigger
    /// chunk would be partly invisible to search.
    fn default() -> Self {
        ChunkConfig { max_tokens: 256, overlap_tokens: 64 }
    }
}

/// One chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// 0-based position in the document.
    pub index: usize,
    pub text: String,
    /// Byte range of the chunk in the document's text.
    pub start: usize,
    pub end: usize,
    pub tokens: usize,
}

/// A sentence: its byte range and token count.
struct Sentence {
    start: usize,
    end: usize,
    tokens: usize,
}

fn tokens(tokenizer: &Tokenizer, text: &str) -> usize {
    tokenizer.encode(text, false).map(|e| e.get_ids().len()).unwrap_or(text.split_whitespace().count())
}

/// Byte ranges of the sentences of `text` (trimmed, non-empty).
fn sentence_ranges(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let push = |s: usize, e: usize, out: &mut Vec<(usize, usize)>| {
        let piece = &text[s..e];
        let lead = piece.len() - piece.trim_start().len();
        let trail = piece.len() - piece.trim_end().len();
        if s + lead < e - trail {
            out.push((s + lead, e - trail));
        }
    };
    for (i, c) in text.char_indices() {
        let end_here = match c {
            '\n' => true,
            '.' | '!' | '?' => bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()),
            _ => false,
        };
        if end_here {
            push(start, i + c.len_utf8(), &mut out);
            start = i + c.len_utf8();
        }
    }
    push(start, text.len(), &mut out);
    out
}

/// Cuts `text` into chunks. Empty or blank text gives none.
pub fn chunk_text(tokenizer: &Tokenizer, text: &str, config: &ChunkConfig) -> Vec<Chunk> {
    // count every token: the model's tokenizer truncates at 256
    let mut untruncated = tokenizer.clone();
    let _ = untruncated.with_truncation(None);
    let tokenizer = &untruncated;
    let max = config.max_tokens.max(8);
    let overlap = config.overlap_tokens.min(max / 2);
    // sentences, with over-long ones cut at token boundaries
    let mut sentences = Vec::new();
    for (s, e) in sentence_ranges(text) {
        let n = tokens(tokenizer, &text[s..e]);
        if n <= max {
            sentences.push(Sentence { start: s, end: e, tokens: n });
            continue;
        }
        match tokenizer.encode(&text[s..e], false) {
            Ok(enc) => {
                let offsets = enc.get_offsets();
                for piece in offsets.chunks(max) {
                    let (ps, pe) = (piece[0].0, piece[piece.len() - 1].1);
                    sentences.push(Sentence { start: s + ps, end: s + pe, tokens: piece.len() });
                }
            }
            Err(_) => sentences.push(Sentence { start: s, end: e, tokens: max }),
        }
    }
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut i = 0;
    while i < sentences.len() {
        let first = i;
        let mut used = 0;
        let mut j = i;
        while j < sentences.len() && (j == i || used + sentences[j].tokens <= max) {
            used += sentences[j].tokens;
            j += 1;
        }
        let (start, end) = (sentences[first].start, sentences[j - 1].end);
        chunks.push(Chunk { index: chunks.len(), text: text[start..end].to_string(), start, end, tokens: used });
        if j >= sentences.len() {
            break;
        }
        // step back over about `overlap` tokens of whole sentences, always moving forward
        let mut back = j;
        let mut kept = 0;
        while back > first + 1 && kept + sentences[back - 1].tokens <= overlap {
            back -= 1;
            kept += sentences[back].tokens;
        }
        i = back.max(first + 1);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_on_terminators_and_lines() {
        let t = "Hello world. This is v1.2 of it!\n# Heading\nLast one? yes";
        let got: Vec<&str> = sentence_ranges(t).into_iter().map(|(s, e)| &t[s..e]).collect();
        assert_eq!(got, ["Hello world.", "This is v1.2 of it!", "# Heading", "Last one?", "yes"]);
        assert!(sentence_ranges("   \n\n ").is_empty());
    }
}
