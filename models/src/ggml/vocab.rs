//! The token table whisper.cpp reads from the model file.
//!
//! CTranslate2's `vocabulary.txt` has one token per line in GPT-2's byte-level form: every
//! byte is shown as a printable character (`Ġ` for a space, `Ċ` for a newline, ...).
//! whisper.cpp wants the raw bytes of the ordinary tokens, up to but not including
//! `<|endoftext|>`; it names the special tokens after that itself.

use std::collections::HashMap;

/// The first special token; the table stops before it.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// Errors from reading a vocabulary.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VocabError {
    #[error("vocabulary has no {END_OF_TEXT} token: is this a whisper vocabulary.txt?")]
    NoEndOfText,
    #[error("vocabulary token {index} ({token:?}) has character {ch:?}, which is not in GPT-2's byte alphabet")]
    NotByteLevel { index: usize, token: String, ch: char },
}

/// GPT-2's `bytes_to_unicode` table, inverted: printable character -> byte.
fn byte_decoder() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut next = 0u32;
    for b in 0..=255u8 {
        let ch = if printable(b) {
            char::from(b)
        } else {
            let ch = char::from_u32(256 + next).expect("256..512 are valid scalar values");
            next += 1;
            ch
        };
        map.insert(ch, b);
    }
    map
}

/// Decodes the ordinary tokens of `vocabulary.txt` (one token a line) to raw bytes.
pub fn decode_vocabulary(text: &str) -> Result<Vec<Vec<u8>>, VocabError> {
    let decoder = byte_decoder();
    let mut tokens = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let token = line.strip_suffix('\r').unwrap_or(line);
        if token == END_OF_TEXT {
            return Ok(tokens);
        }
        let bytes = token
            .chars()
            .map(|ch| {
                decoder.get(&ch).copied().ok_or_else(|| VocabError::NotByteLevel { index, token: token.to_owned(), ch })
            })
            .collect::<Result<Vec<u8>, _>>()?;
        tokens.push(bytes);
    }
    Err(VocabError::NoEndOfText)
}

/// Number of lines (tokens) in `vocabulary.txt`, special tokens included.
pub fn count_tokens(text: &str) -> usize {
    text.strip_suffix('\n').unwrap_or(text).split('\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_a_bijection() {
        let d = byte_decoder();
        assert_eq!(d.len(), 256);
        let mut seen = [false; 256];
        for &b in d.values() {
            seen[usize::from(b)] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(d[&'Ġ'], b' ');
        assert_eq!(d[&'Ċ'], b'\n');
        assert_eq!(d[&'!'], b'!');
        assert_eq!(d[&'Ā'], 0);
    }

    #[test]
    fn decodes_up_to_end_of_text() {
        let text = "!\nĠthe\nĠcafÃ©\n\nĊ\n<|endoftext|>\n<|startoftranscript|>\n";
        let tokens = decode_vocabulary(text).unwrap();
        assert_eq!(
            tokens,
            vec![b"!".to_vec(), b" the".to_vec(), " café".as_bytes().to_vec(), Vec::new(), b"\n".to_vec(),]
        );
        assert_eq!(count_tokens(text), 7);
    }

    #[test]
    fn rejects_foreign_characters_and_missing_end() {
        assert_eq!(decode_vocabulary("a\nb\n"), Err(VocabError::NoEndOfText));
        let err = decode_vocabulary("a\n€\n<|endoftext|>").unwrap_err();
        assert!(matches!(err, VocabError::NotByteLevel { index: 1, ch: '€', .. }));
    }
}
