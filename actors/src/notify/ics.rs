//! Minimal RFC 5545 (iCalendar) writer for meeting invitations.
//!
//! [`render`] produces a `VCALENDAR` with one `VEVENT` carrying an iTIP
//! (RFC 5546) `METHOD` of `REQUEST` or `CANCEL`. Output uses CRLF line
//! endings, escapes TEXT values, quotes parameter values when needed, and
//! folds lines longer than 75 octets without splitting UTF-8 characters.
//! Times are written in UTC basic format (`YYYYMMDDTHHMMSSZ`), computed from
//! unix milliseconds with `huddle_core::time`.
//!
//! For a cancellation, reuse the event `uid` and raise `sequence` above the
//! one last sent, as calendar clients ignore stale updates.

/// iTIP method of the invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcsMethod {
    /// New or updated invitation (`STATUS:CONFIRMED`).
    Request,
    /// Cancellation (`STATUS:CANCELLED`).
    Cancel,
}

impl IcsMethod {
    fn method(self) -> &'static str {
        match self {
            IcsMethod::Request => "REQUEST",
            IcsMethod::Cancel => "CANCEL",
        }
    }

    fn status(self) -> &'static str {
        match self {
            IcsMethod::Request => "CONFIRMED",
            IcsMethod::Cancel => "CANCELLED",
        }
    }
}

/// A meeting invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcsEvent {
    /// Globally unique, stable identifier of the meeting.
    pub uid: String,
    /// Revision number; increase it on every update or cancellation.
    pub sequence: u32,
    /// Request or cancel.
    pub method: IcsMethod,
    /// Title.
    pub summary: String,
    /// Optional free-text description.
    pub description: Option<String>,
    /// Optional location.
    pub location: Option<String>,
    /// Start, unix milliseconds (UTC).
    pub start_ms: i64,
    /// End, unix milliseconds (UTC).
    pub end_ms: i64,
    /// Organizer address; also used as its display name.
    pub organizer_email: String,
    /// Attendees as (display name, email); an empty name omits `CN`.
    pub attendees: Vec<(String, String)>,
    /// Optional link, e.g. to join the meeting.
    pub url: Option<String>,
}

/// Longest line in octets, excluding the CRLF.
const MAX_LINE_OCTETS: usize = 75;

/// Renders `ev` as an iCalendar document; `now_ms` becomes `DTSTAMP`.
pub fn render(ev: &IcsEvent, now_ms: i64) -> String {
    let mut out = String::new();
    let mut line = |s: &str| push_folded(&mut out, s);
    line("BEGIN:VCALENDAR");
    line("PRODID:-//huddle//huddle//EN");
    line("VERSION:2.0");
    line("CALSCALE:GREGORIAN");
    line(&format!("METHOD:{}", ev.method.method()));
    line("BEGIN:VEVENT");
    line(&format!("UID:{}", escape_text(&ev.uid)));
    line(&format!("SEQUENCE:{}", ev.sequence));
    line(&format!("DTSTAMP:{}", format_utc(now_ms)));
    line(&format!("DTSTART:{}", format_utc(ev.start_ms)));
    line(&format!("DTEND:{}", format_utc(ev.end_ms)));
    line(&format!("SUMMARY:{}", escape_text(&ev.summary)));
    if let Some(d) = &ev.description {
        line(&format!("DESCRIPTION:{}", escape_text(d)));
    }
    if let Some(l) = &ev.location {
        line(&format!("LOCATION:{}", escape_text(l)));
    }
    if let Some(u) = &ev.url {
        line(&format!("URL:{}", clean_uri(u)));
    }
    line(&format!("ORGANIZER;CN={}:mailto:{}", param_value(&ev.organizer_email), clean_uri(&ev.organizer_email)));
    for (name, email) in &ev.attendees {
        let cn = if name.trim().is_empty() { String::new() } else { format!(";CN={}", param_value(name)) };
        line(&format!("ATTENDEE{cn};ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:{}", clean_uri(email)));
    }
    line(&format!("STATUS:{}", ev.method.status()));
    line("END:VEVENT");
    line("END:VCALENDAR");
    out
}

/// Appends one content line, folded at 75 octets, followed by CRLF.
/// Continuation lines start with a space, which counts toward their limit.
fn push_folded(out: &mut String, line: &str) {
    let mut rest = line;
    let mut limit = MAX_LINE_OCTETS;
    while rest.len() > limit {
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        limit = MAX_LINE_OCTETS - 1;
    }
    out.push_str(rest);
    out.push_str("\r\n");
}

/// Escapes a TEXT value: backslash, semicolon, comma and line breaks
/// (`\r\n`, `\n` or `\r` become `\n`); other control characters except tab
/// are dropped, as TEXT does not allow them.
fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\n");
            }
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Makes a parameter value: control characters dropped, double quotes
/// (not representable) turned into single quotes, and the result quoted
/// when it contains `:`, `;` or `,`.
fn param_value(s: &str) -> String {
    let cleaned: String = s.chars().filter(|c| !c.is_control()).map(|c| if c == '"' { '\'' } else { c }).collect();
    if cleaned.contains([':', ';', ',']) { format!("\"{cleaned}\"") } else { cleaned }
}

/// Strips whitespace and control characters from a URI value so it cannot
/// break the line structure.
fn clean_uri(s: &str) -> String {
    s.chars().filter(|c| !c.is_control() && !c.is_whitespace()).collect()
}

/// Formats unix milliseconds as `YYYYMMDDTHHMMSSZ`, truncating to seconds
/// (toward the past for negative values).
fn format_utc(ms: i64) -> String {
    let (y, m, d, h, mi, sec, _) = huddle_core::time::utc_fields(ms);
    format!("{y:04}{m:02}{d:02}T{h:02}{mi:02}{sec:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> IcsEvent {
        IcsEvent {
            uid: "mtg-42@huddle".into(),
            sequence: 3,
            method: IcsMethod::Request,
            summary: "Weekly sync".into(),
            description: None,
            location: None,
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_001_800_000,
            organizer_email: "bot@huddle.example".into(),
            attendees: vec![("Ada Lovelace".into(), "ada@example.com".into())],
            url: None,
        }
    }

    fn unfold(s: &str) -> String {
        s.replace("\r\n ", "")
    }

    #[test]
    fn formats_known_timestamps() {
        assert_eq!(format_utc(1_700_000_000_000), "20231114T221320Z");
        assert_eq!(format_utc(1_700_000_000_999), "20231114T221320Z");
        assert_eq!(format_utc(0), "19700101T000000Z");
        assert_eq!(format_utc(-1), "19691231T235959Z");
        assert_eq!(format_utc(1_709_164_800_000), "20240229T000000Z");
        assert_eq!(format_utc(1_709_251_199_000), "20240229T235959Z");
        assert_eq!(format_utc(951_782_400_000), "20000229T000000Z");
        assert_eq!(format_utc(4_107_542_400_000), "21000301T000000Z");
        assert_eq!(format_utc(253_402_300_799_000), "99991231T235959Z");
    }

    #[test]
    fn renders_request_structure() {
        let out = render(&event(), 1_699_990_000_000);
        assert!(out.ends_with("END:VCALENDAR\r\n"));
        assert!(!out.replace("\r\n", "").contains('\n'));
        let unfolded = unfold(&out);
        let lines: Vec<&str> = unfolded.split("\r\n").collect();
        assert_eq!(lines[0], "BEGIN:VCALENDAR");
        for expected in [
            "PRODID:-//huddle//huddle//EN",
            "VERSION:2.0",
            "METHOD:REQUEST",
            "BEGIN:VEVENT",
            "UID:mtg-42@huddle",
            "SEQUENCE:3",
            "DTSTAMP:20231114T192640Z",
            "DTSTART:20231114T221320Z",
            "DTEND:20231114T224320Z",
            "SUMMARY:Weekly sync",
            "ORGANIZER;CN=bot@huddle.example:mailto:bot@huddle.example",
            "ATTENDEE;CN=Ada Lovelace;ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:ada@example.com",
            "STATUS:CONFIRMED",
            "END:VEVENT",
        ] {
            assert!(lines.contains(&expected), "missing {expected}\n{out}");
        }
        assert!(!out.contains("DESCRIPTION"));
        assert!(!out.contains("LOCATION"));
        assert!(!out.contains("\r\nURL"));
        let pos = |s: &str| out.find(s).unwrap();
        assert!(pos("BEGIN:VEVENT") < pos("UID:") && pos("STATUS:") < pos("END:VEVENT"));
    }

    #[test]
    fn cancel_method_and_status() {
        let mut ev = event();
        ev.method = IcsMethod::Cancel;
        ev.sequence = 4;
        let out = render(&ev, 0);
        assert!(out.contains("\r\nMETHOD:CANCEL\r\n"));
        assert!(out.contains("\r\nSTATUS:CANCELLED\r\n"));
        assert!(out.contains("\r\nSEQUENCE:4\r\n"));
        assert!(!out.contains("REQUEST"));
        assert!(!out.contains("CONFIRMED"));
    }

    #[test]
    fn escapes_text_values() {
        assert_eq!(escape_text(r"a\b;c,d"), r"a\\b\;c\,d");
        assert_eq!(escape_text("l1\nl2\r\nl3\rl4"), r"l1\nl2\nl3\nl4");
        assert_eq!(escape_text("tab\tbell\u{7}"), "tab\tbell");
        let mut ev = event();
        ev.summary = "Q1; budget, review".into();
        ev.description = Some("Agenda:\n1. numbers\\totals".into());
        ev.location = Some("Room 4, floor 2".into());
        ev.url = Some("https://meet.example/j/1?a=1,b=2".into());
        let out = unfold(&render(&ev, 0));
        assert!(out.contains("\r\nSUMMARY:Q1\\; budget\\, review\r\n"));
        assert!(out.contains("\r\nDESCRIPTION:Agenda:\\n1. numbers\\\\totals\r\n"));
        assert!(out.contains("\r\nLOCATION:Room 4\\, floor 2\r\n"));
        assert!(out.contains("\r\nURL:https://meet.example/j/1?a=1,b=2\r\n"));
    }

    #[test]
    fn parameter_values_are_quoted_when_needed() {
        assert_eq!(param_value("Ada"), "Ada");
        assert_eq!(param_value("Lovelace, Ada"), "\"Lovelace, Ada\"");
        assert_eq!(param_value("Ada \"the Countess\": x"), "\"Ada 'the Countess': x\"");
        assert_eq!(param_value("Ada\r\nX-EVIL:1"), "\"AdaX-EVIL:1\"");
        let mut ev = event();
        ev.attendees = vec![
            ("Lovelace, Ada".into(), "ada@example.com".into()),
            (String::new(), "anon@example.com\r\nX-EVIL:1".into()),
        ];
        let out = unfold(&render(&ev, 0));
        assert!(
            out.contains("\r\nATTENDEE;CN=\"Lovelace, Ada\";ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:ada@example.com\r\n")
        );
        assert!(out.contains("\r\nATTENDEE;ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:anon@example.comX-EVIL:1\r\n"));
        assert!(!out.contains("\r\nX-EVIL"));
    }

    #[test]
    fn folds_long_lines_at_75_octets() {
        let mut ev = event();
        ev.summary = "x".repeat(200);
        let out = render(&ev, 0);
        for l in out.split("\r\n") {
            assert!(l.len() <= 75, "{} octets: {l}", l.len());
        }
        let summary_lines: Vec<&str> = out
            .split("\r\n")
            .skip_while(|l| !l.starts_with("SUMMARY:"))
            .take_while(|l| l.starts_with("SUMMARY:") || l.starts_with(' '))
            .collect();
        // 8 + 200 = 208 octets: 75 + 74 + 59.
        assert_eq!(summary_lines.len(), 3);
        assert_eq!(summary_lines[0].len(), 75);
        assert_eq!(summary_lines[1].len(), 75);
        assert_eq!(summary_lines[2].len(), 1 + 59);
        assert!(unfold(&out).contains(&format!("\r\nSUMMARY:{}\r\n", "x".repeat(200))));
    }

    #[test]
    fn folding_never_splits_utf8_characters() {
        for prefix in 0..4 {
            let mut out = String::new();
            let line = format!("SUMMARY:{}{}", "a".repeat(prefix), "€😀é".repeat(40));
            push_folded(&mut out, &line);
            let parts: Vec<&str> = out.trim_end_matches("\r\n").split("\r\n").collect();
            assert!(parts.len() > 1);
            for (i, p) in parts.iter().enumerate() {
                assert!(p.len() <= 75);
                // Each piece is a whole string slice, so it is valid UTF-8;
                // check that pieces use the room they have (a 4-byte char
                // can leave at most 3 octets unused).
                if i + 1 < parts.len() {
                    assert!(p.len() >= 72, "{} octets", p.len());
                }
                if i > 0 {
                    assert!(p.starts_with(' '));
                }
            }
            assert_eq!(out.replace("\r\n ", "").trim_end_matches("\r\n"), line);
        }
    }

    #[test]
    fn exactly_75_octets_is_not_folded() {
        let mut out = String::new();
        let line = "a".repeat(75);
        push_folded(&mut out, &line);
        assert_eq!(out, format!("{line}\r\n"));
        let mut out = String::new();
        push_folded(&mut out, &"a".repeat(76));
        assert_eq!(out, format!("{}\r\n a\r\n", "a".repeat(75)));
    }
}
