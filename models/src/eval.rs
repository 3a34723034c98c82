//! Word error rate, for tests and benchmarks of speech recognition.
//!
//! The normaliser lowercases, turns punctuation into spaces (keeping apostrophes inside
//! words) and writes the numbers zero to twenty and the tens as digits, so that "Three"
//! and "3," count as the same word.

const NUMBERS: [(&str, &str); 28] = [
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("thirteen", "13"),
    ("fourteen", "14"),
    ("fifteen", "15"),
    ("sixteen", "16"),
    ("seventeen", "17"),
    ("eighteen", "18"),
    ("nineteen", "19"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("fifty", "50"),
    ("sixty", "60"),
    ("seventy", "70"),
    ("eighty", "80"),
    ("ninety", "90"),
];

/// The words of `text`, normalised for comparison.
pub fn normalise_words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '\'' { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(|w| NUMBERS.iter().find(|(word, _)| *word == w).map_or(w, |(_, digits)| digits).to_owned())
        .collect()
}

/// Word error rate: the word-level edit distance between the normalised texts over the
/// reference's length (0 is perfect; it can exceed 1).
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (normalise_words(reference), normalise_words(hypothesis));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rw != hw)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_edits_after_normalising() {
        assert_eq!(word_error_rate("the cat sat", "The cat, sat."), 0.0);
        assert!((word_error_rate("the cat sat", "the bat sat") - 1.0 / 3.0).abs() < 1e-9);
        assert!((word_error_rate("a b c d", "a c d e") - 0.5).abs() < 1e-9);
        assert_eq!(word_error_rate("a b", ""), 1.0);
        assert_eq!(word_error_rate("at three o'clock, twenty people", "At 3 o'clock 20 people."), 0.0);
        assert_eq!(normalise_words("'Quoted' don't"), ["quoted", "don't"]);
    }
}
