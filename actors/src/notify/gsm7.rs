//! SMS segment counting.
//!
//! Decides whether a text fits the GSM 03.38 7-bit default alphabet (with
//! its extension table) or needs UCS-2, and counts how many SMS segments it
//! takes. A single message holds 160 septets or 70 UTF-16 code units;
//! concatenated messages lose room to the user data header and hold 153
//! septets or 67 code units each. Extension-table characters take two
//! septets (escape + code) and are never split across segments, nor are
//! UTF-16 surrogate pairs.
//!
//! The empty text counts as one GSM-7 segment with zero units, since sending
//! it still costs one message.

/// Character encoding an SMS is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsEncoding {
    /// GSM 03.38 7-bit default alphabet.
    Gsm7,
    /// UCS-2 (UTF-16 code units on the wire).
    Ucs2,
}

/// Result of [`count_segments`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsSegments {
    /// Encoding needed for the whole text.
    pub encoding: SmsEncoding,
    /// Septets for GSM-7 (extension characters count 2), UTF-16 code units
    /// for UCS-2.
    pub units: usize,
    /// Number of SMS segments the text is sent as (at least 1).
    pub segments: usize,
    /// Capacity of one segment in `units`: 160/70 for a single message,
    /// 153/67 when concatenated.
    pub per_segment: usize,
}

const GSM7_SINGLE: usize = 160;
const GSM7_CONCAT: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_CONCAT: usize = 67;

/// Characters of the GSM 03.38 default alphabet (one septet each), in code
/// order, with the escape position (0x1B) left out.
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// Characters of the default extension table (two septets each).
const EXTENSION: &str = "\u{000C}^{}\\[~]|€";

/// Septets needed for `c` in GSM-7, or `None` if it is not representable.
fn gsm7_septets(c: char) -> Option<usize> {
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Packs items of the given widths into segments of `cap` units without
/// splitting any item; returns the number of segments.
fn pack(widths: impl Iterator<Item = usize>, cap: usize) -> usize {
    let mut segments = 1;
    let mut used = 0;
    for w in widths {
        if used + w > cap {
            segments += 1;
            used = 0;
        }
        used += w;
    }
    segments
}

/// Counts the encoding, units and segments needed to send `text`.
pub fn count_segments(text: &str) -> SmsSegments {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm7_septets).collect();
    let (encoding, widths, single, concat) = match gsm {
        Some(w) => (SmsEncoding::Gsm7, w, GSM7_SINGLE, GSM7_CONCAT),
        None => (SmsEncoding::Ucs2, text.chars().map(char::len_utf16).collect(), UCS2_SINGLE, UCS2_CONCAT),
    };
    let units: usize = widths.iter().sum();
    if units <= single {
        SmsSegments { encoding, units, segments: 1, per_segment: single }
    } else {
        SmsSegments { encoding, units, segments: pack(widths.into_iter(), concat), per_segment: concat }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_table_has_127_distinct_characters() {
        let chars: Vec<char> = BASIC.chars().collect();
        assert_eq!(chars.len(), 127);
        let mut sorted = chars.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 127);
        assert!(!chars.iter().any(|c| EXTENSION.contains(*c)));
    }

    #[test]
    fn empty_text_is_one_segment() {
        let s = count_segments("");
        assert_eq!(s, SmsSegments { encoding: SmsEncoding::Gsm7, units: 0, segments: 1, per_segment: 160 });
    }

    #[test]
    fn gsm7_single_and_concatenated_limits() {
        let s = count_segments(&"a".repeat(160));
        assert_eq!((s.encoding, s.units, s.segments, s.per_segment), (SmsEncoding::Gsm7, 160, 1, 160));
        let s = count_segments(&"a".repeat(161));
        assert_eq!((s.units, s.segments, s.per_segment), (161, 2, 153));
        assert_eq!(count_segments(&"a".repeat(306)).segments, 2);
        assert_eq!(count_segments(&"a".repeat(307)).segments, 3);
        assert_eq!(count_segments(&"a".repeat(459)).segments, 3);
        assert_eq!(count_segments(&"a".repeat(460)).segments, 4);
    }

    #[test]
    fn euro_and_extension_characters_take_two_septets() {
        let s = count_segments("€");
        assert_eq!((s.encoding, s.units), (SmsEncoding::Gsm7, 2));
        let s = count_segments("^{}\\[~]|\u{000C}");
        assert_eq!((s.encoding, s.units), (SmsEncoding::Gsm7, 18));
        // 80 euro signs fill exactly 160 septets; one more char overflows.
        assert_eq!(count_segments(&"€".repeat(80)).segments, 1);
        let s = count_segments(&format!("{}a", "€".repeat(80)));
        assert_eq!((s.units, s.segments), (161, 2));
    }

    #[test]
    fn extension_character_is_not_split_across_segments() {
        // 152 + 2 + 152 = 306 septets would fit two full segments, but the
        // euro sign cannot straddle the 153 boundary, so a third is needed.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        let s = count_segments(&text);
        assert_eq!((s.encoding, s.units, s.segments), (SmsEncoding::Gsm7, 306, 3));
        // Shifted by one it fits exactly in two.
        let text = format!("{}€{}", "a".repeat(151), "a".repeat(153));
        assert_eq!(count_segments(&text).segments, 2);
    }

    #[test]
    fn accented_characters_in_gsm_set_stay_gsm7() {
        let text = "éüÑäÖàÇèùìòßÆøÅ¿¡§£¥¤ΔΩ";
        let s = count_segments(text);
        assert_eq!(s.encoding, SmsEncoding::Gsm7);
        assert_eq!(s.units, text.chars().count());
        // Close relatives that are not in the table force UCS-2.
        for c in ["á", "ç", "ê", "í", "ó", "ú", "õ", "ã"] {
            assert_eq!(count_segments(c).encoding, SmsEncoding::Ucs2, "{c}");
        }
    }

    #[test]
    fn characters_outside_gsm_force_ucs2() {
        let s = count_segments("hola á");
        assert_eq!((s.encoding, s.units, s.segments, s.per_segment), (SmsEncoding::Ucs2, 6, 1, 70));
        let s = count_segments(&"á".repeat(70));
        assert_eq!(s.segments, 1);
        let s = count_segments(&"á".repeat(71));
        assert_eq!((s.units, s.segments, s.per_segment), (71, 2, 67));
        assert_eq!(count_segments(&"á".repeat(134)).segments, 2);
        assert_eq!(count_segments(&"á".repeat(135)).segments, 3);
    }

    #[test]
    fn emoji_counts_two_code_units() {
        let s = count_segments("hi 👋");
        assert_eq!((s.encoding, s.units), (SmsEncoding::Ucs2, 5));
        assert_eq!(count_segments(&"😀".repeat(35)).segments, 1);
        let s = count_segments(&"😀".repeat(36));
        assert_eq!((s.units, s.segments), (72, 2));
    }

    #[test]
    fn surrogate_pair_is_not_split_across_segments() {
        // 66 + 2 + 66 = 134 units would fit two segments of 67, but the
        // emoji cannot straddle the boundary.
        let text = format!("{}😀{}", "á".repeat(66), "á".repeat(66));
        let s = count_segments(&text);
        assert_eq!((s.encoding, s.units, s.segments), (SmsEncoding::Ucs2, 134, 3));
        let text = format!("{}😀{}", "á".repeat(65), "á".repeat(67));
        assert_eq!(count_segments(&text).segments, 2);
    }

    #[test]
    fn escape_control_character_is_not_gsm7() {
        assert_eq!(count_segments("\u{1b}").encoding, SmsEncoding::Ucs2);
        assert_eq!(count_segments("\t").encoding, SmsEncoding::Ucs2);
        assert_eq!(count_segments("a\r\nb").encoding, SmsEncoding::Gsm7);
    }
}
