//! Field checks shared by every operation of [`Api`](super::Api): names, ids,
//! instructions, contacts and times. One rule per kind of field, so JoinRoom and
//! Send agree on what a phone number or an email address is. Each check fails
//! with [`ApiError::InvalidArgument`] naming the field.

use huddle_core::limits::{MAX_INSTRUCTIONS_CHARS, MAX_NAME_CHARS, MAX_PARTICIPANTS_CEILING};
use huddle_core::time::Millis;

use crate::error::ApiError;

type Result<T> = std::result::Result<T, ApiError>;

/// Longest email address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 320;

/// How far ahead a room or a notification may be scheduled.
pub const MAX_SCHEDULE_AHEAD_MS: Millis = 5 * 366 * 24 * 3_600_000;

pub(crate) fn name(field: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(field, format!("must be at most {MAX_NAME_CHARS} characters")));
    }
    Ok(())
}

pub(crate) fn instructions(field: &'static str, value: &str) -> Result<()> {
    let n = value.chars().count();
    if n > MAX_INSTRUCTIONS_CHARS {
        return Err(ApiError::invalid(field, format!("must be at most {MAX_INSTRUCTIONS_CHARS} characters (got {n})")));
    }
    Ok(())
}

pub(crate) fn id(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    if value.len() > 64 || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(ApiError::invalid(field, "is not a valid id"));
    }
    Ok(())
}

pub(crate) fn max_participants(field: &'static str, n: u32, allow_zero: bool) -> Result<()> {
    if (n == 0 && !allow_zero) || n > MAX_PARTICIPANTS_CEILING {
        let low = if allow_zero { 0 } else { 1 };
        return Err(ApiError::invalid(field, format!("must be between {low} and {MAX_PARTICIPANTS_CEILING}")));
    }
    Ok(())
}

/// Whether `addr` is an email address huddle sends to: a non-empty local part,
/// a domain with a dot inside it, no spaces, controls or header punctuation.
pub fn is_email(addr: &str) -> bool {
    addr.len() <= MAX_EMAIL_BYTES
        && !addr.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
        && matches!(addr.split_once('@'), Some((local, domain))
            if !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains(".."))
}

/// Whether `number` is an E.164 phone number: `+`, then 8 to 15 digits, the
/// first not 0.
pub fn is_e164(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0')
}

/// An email address in `field`.
pub(crate) fn email(field: &'static str, addr: &str) -> Result<()> {
    if is_email(addr) {
        Ok(())
    } else {
        let shown: String = addr.chars().take(80).collect();
        Err(ApiError::invalid(field, format!("`{shown}` is not an email address (name@domain.tld)")))
    }
}

/// An E.164 phone number in `field`.
pub(crate) fn phone(field: &'static str, number: &str) -> Result<()> {
    if is_e164(number) {
        Ok(())
    } else {
        let shown: String = number.chars().take(40).collect();
        Err(ApiError::invalid(field, format!("`{shown}` is not an E.164 phone number (+ and 8-15 digits)")))
    }
}

/// An optional email address (`None` passes).
pub(crate) fn optional_email(field: &'static str, value: &Option<String>) -> Result<()> {
    value.as_deref().map_or(Ok(()), |v| email(field, v))
}

/// An optional phone number (`None` passes).
pub(crate) fn optional_phone(field: &'static str, value: &Option<String>) -> Result<()> {
    value.as_deref().map_or(Ok(()), |v| phone(field, v))
}

/// A schedule time: not before the epoch and at most
/// [`MAX_SCHEDULE_AHEAD_MS`] after `now`, so that every later sum (retries,
/// leases, calendar ends) stays far from overflow.
pub(crate) fn scheduled_for(field: &'static str, at: Option<Millis>, now: Millis) -> Result<()> {
    match at {
        Some(t) if t < 0 => Err(ApiError::invalid(field, "must not be before 1970")),
        Some(t) if t > now.saturating_add(MAX_SCHEDULE_AHEAD_MS) => {
            Err(ApiError::invalid(field, "must be at most 5 years ahead"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<()>) -> &'static str {
        match r {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        for ok in ["ada@example.com", "a.b+c@mail.example.co.uk", "x@y.io"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@localhost",
            "ada@.example.com",
            "ada@example.com.",
            "ada@exa..mple.com",
            "ada@b@example.com",
            "ada lovelace@example.com",
            "ada@example.com\r\nBcc: x@y.z",
            "<ada@example.com>",
            "a,b@example.com",
        ] {
            assert!(!is_email(bad), "{bad:?}");
        }
        assert!(!is_email(&format!("{}@example.com", "a".repeat(320))));
        assert_eq!(field_of(email("email", "nope")), "email");
        assert_eq!(field_of(optional_email("invitees.email", &Some("nope".into()))), "invitees.email");
        assert!(optional_email("email", &None).is_ok());
    }

    #[test]
    fn phones_are_e164() {
        for ok in ["+14155550100", "+442071838750", "+4915112345678", "+12345678"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "",
            "14155550100",
            "+1 415 555 0100",
            "+1 (415) 555-0100",
            "+01234567890",
            "+1234567",
            "+1234567890123456",
            "+1415555010a",
            "++14155550100",
        ] {
            assert!(!is_e164(bad), "{bad:?}");
        }
        assert_eq!(field_of(phone("phone", "555-0100")), "phone");
        assert_eq!(field_of(optional_phone("phone", &Some("555".into()))), "phone");
    }

    #[test]
    fn schedules_are_bounded() {
        let now = 1_800_000_000_000;
        assert!(scheduled_for("scheduled_for", None, now).is_ok());
        assert!(scheduled_for("scheduled_for", Some(now + 86_400_000), now).is_ok());
        assert!(scheduled_for("scheduled_for", Some(now - 86_400_000), now).is_ok());
        assert_eq!(field_of(scheduled_for("scheduled_for", Some(-1), now)), "scheduled_for");
        assert_eq!(field_of(scheduled_for("scheduled_for", Some(i64::MAX), now)), "scheduled_for");
        assert_eq!(
            field_of(scheduled_for("scheduled_for", Some(now + MAX_SCHEDULE_AHEAD_MS + 1), now)),
            "scheduled_for"
        );
    }

    #[test]
    fn names_ids_and_caps() {
        assert_eq!(field_of(name("title", "  ")), "title");
        assert_eq!(field_of(name("title", &"x".repeat(MAX_NAME_CHARS + 1))), "title");
        assert!(name("title", "Weekly sync").is_ok());
        assert_eq!(field_of(id("room_id", "")), "room_id");
        assert_eq!(field_of(id("room_id", "a b")), "room_id");
        assert!(id("room_id", "0193-abc_DEF").is_ok());
        assert_eq!(field_of(max_participants("max_participants", 0, false)), "max_participants");
        assert!(max_participants("max_participants", 0, true).is_ok());
        assert_eq!(field_of(instructions("instructions", &"x".repeat(MAX_INSTRUCTIONS_CHARS + 1))), "instructions");
    }
}
