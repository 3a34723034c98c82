//! Retry schedules for notification delivery.
//!
//! A [`RetrySchedule`] is a list of delays written as comma-separated
//! durations such as `0s,5s,5m,30m,2h,5h,10h,10h`: entry `i` is the delay
//! before attempt `i + 1`, so the schedule allows as many attempts as it has
//! entries. [`parse_retry_after`] reads an HTTP `Retry-After` header.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// Schedule used when none is configured.
pub const DEFAULT_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h,10h";

/// Longest delay [`parse_retry_after`] returns.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Largest relative change applied by jitter (±20 %).
const JITTER_SPAN: f64 = 0.2;

/// Errors raised while parsing durations and schedules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The duration text is empty.
    #[error("duration is empty; write an integer and a unit such as 5s")]
    EmptyDuration,
    /// The duration does not start with an integer.
    #[error("duration {0:?} has no integer amount; write an integer and a unit such as 5s")]
    InvalidAmount(String),
    /// The unit is missing or unknown.
    #[error("duration {0:?} has an unknown unit; use ms, s, m, h or d")]
    InvalidUnit(String),
    /// The duration does not fit in a `Duration`.
    #[error("duration {0:?} is too large; use a smaller amount")]
    Overflow(String),
    /// The schedule has no entries.
    #[error("retry schedule is empty; list at least one delay such as 0s")]
    EmptySchedule,
    /// One entry of the schedule is invalid.
    #[error("retry schedule entry {index} is invalid: {source}")]
    Entry {
        /// Zero-based position of the entry.
        index: usize,
        /// Why it is invalid.
        source: Box<ScheduleError>,
    },
    /// A delay is not a whole number of milliseconds.
    #[error("retry delay {0:?} is not a whole number of milliseconds; round it to milliseconds")]
    SubMillisecond(Duration),
}

/// Parses a duration of the form `<integer><unit>` with unit `ms`, `s`, `m`,
/// `h` or `d`, e.g. `0s`, `500ms`, `5m`. Surrounding whitespace is ignored;
/// no space is allowed between the amount and the unit.
pub fn parse_duration(s: &str) -> Result<Duration, ScheduleError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ScheduleError::EmptyDuration);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(ScheduleError::InvalidAmount(s.to_string()));
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(ScheduleError::InvalidUnit(s.to_string())),
    };
    let amount: u64 = digits.parse().map_err(|_| ScheduleError::Overflow(s.to_string()))?;
    let millis = amount.checked_mul(millis_per_unit).ok_or_else(|| ScheduleError::Overflow(s.to_string()))?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration in the largest unit that represents it exactly.
fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Delays before each delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    /// Builds a schedule; it must be non-empty and every delay a whole
    /// number of milliseconds (so it prints back exactly).
    pub fn new(delays: Vec<Duration>) -> Result<Self, ScheduleError> {
        if delays.is_empty() {
            return Err(ScheduleError::EmptySchedule);
        }
        if let Some(d) = delays.iter().find(|d| d.subsec_nanos() % 1_000_000 != 0) {
            return Err(ScheduleError::SubMillisecond(*d));
        }
        Ok(Self(delays))
    }

    /// The delays, in attempt order.
    pub fn delays(&self) -> &[Duration] {
        &self.0
    }

    /// Total number of attempts the schedule allows.
    pub fn attempts(&self) -> usize {
        self.0.len()
    }

    /// Delay before the next attempt once `attempts_made` attempts have been
    /// made, or `None` when no attempts are left.
    ///
    /// `jitter` is a uniform random draw in `0.0..=1.0` (out-of-range values
    /// are clamped, NaN counts as 0.5); it scales the delay linearly from
    /// 80 % (draw 0.0) to 120 % (draw 1.0), so 0.5 leaves it unchanged.
    pub fn delay_after(&self, attempts_made: usize, jitter: f64) -> Option<Duration> {
        let base = *self.0.get(attempts_made)?;
        let draw = if jitter.is_nan() { 0.5 } else { jitter.clamp(0.0, 1.0) };
        let factor = 1.0 + JITTER_SPAN * (2.0 * draw - 1.0);
        if factor == 1.0 || base.is_zero() {
            return Some(base);
        }
        Some(Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(Duration::MAX))
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        DEFAULT_SCHEDULE.parse().expect("default schedule is valid")
    }
}

impl FromStr for RetrySchedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(ScheduleError::EmptySchedule);
        }
        let delays = s
            .split(',')
            .enumerate()
            .map(|(index, part)| parse_duration(part).map_err(|e| ScheduleError::Entry { index, source: Box::new(e) }))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(delays)
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&format_duration(*d))?;
        }
        Ok(())
    }
}

/// Parses a `Retry-After` header value: either delay seconds or an
/// HTTP-date. Dates in the past give zero; results are capped at 24 hours.
/// Returns `None` for anything else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, which exceeds the cap anyway.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).map(|d| d.min(MAX_RETRY_AFTER)).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("  10h\t"), Ok(Duration::from_secs(36_000)));
    }

    #[test]
    fn rejects_malformed_durations() {
        assert_eq!(parse_duration(""), Err(ScheduleError::EmptyDuration));
        assert_eq!(parse_duration("   "), Err(ScheduleError::EmptyDuration));
        assert!(matches!(parse_duration("5"), Err(ScheduleError::InvalidUnit(_))));
        assert!(matches!(parse_duration("5 s"), Err(ScheduleError::InvalidUnit(_))));
        assert!(matches!(parse_duration("5sec"), Err(ScheduleError::InvalidUnit(_))));
        assert!(matches!(parse_duration("5S"), Err(ScheduleError::InvalidUnit(_))));
        assert!(matches!(parse_duration("1.5s"), Err(ScheduleError::InvalidUnit(_))));
        assert!(matches!(parse_duration("s"), Err(ScheduleError::InvalidAmount(_))));
        assert!(matches!(parse_duration("-5s"), Err(ScheduleError::InvalidAmount(_))));
        assert!(matches!(parse_duration("+5s"), Err(ScheduleError::InvalidAmount(_))));
        assert!(matches!(parse_duration("99999999999999999999d"), Err(ScheduleError::Overflow(_))));
        assert!(matches!(parse_duration("999999999999999999d"), Err(ScheduleError::Overflow(_))));
    }

    #[test]
    fn default_schedule_round_trips() {
        let s = RetrySchedule::default();
        assert_eq!(s.attempts(), 8);
        assert_eq!(s.to_string(), DEFAULT_SCHEDULE);
        assert_eq!(s.delays()[3], Duration::from_secs(1800));
        let reparsed: RetrySchedule = s.to_string().parse().unwrap();
        assert_eq!(reparsed, s);
    }

    #[test]
    fn display_uses_exact_largest_unit() {
        let s: RetrySchedule = "1500ms, 60s,90m,24h,48h,3600s".parse().unwrap();
        assert_eq!(s.to_string(), "1500ms,1m,90m,1d,2d,1h");
    }

    #[test]
    fn schedule_parse_errors() {
        assert_eq!("".parse::<RetrySchedule>(), Err(ScheduleError::EmptySchedule));
        assert_eq!(" ".parse::<RetrySchedule>(), Err(ScheduleError::EmptySchedule));
        let err = "0s,,5m".parse::<RetrySchedule>().unwrap_err();
        assert_eq!(err, ScheduleError::Entry { index: 1, source: Box::new(ScheduleError::EmptyDuration) });
        let err = "0s,5m,5x".parse::<RetrySchedule>().unwrap_err();
        assert!(matches!(err, ScheduleError::Entry { index: 2, .. }));
        assert!(err.to_string().contains("entry 2"));
        assert!(err.to_string().contains("ms, s, m, h or d"));
        assert_eq!(RetrySchedule::new(vec![]), Err(ScheduleError::EmptySchedule));
        assert!(matches!(RetrySchedule::new(vec![Duration::from_micros(1500)]), Err(ScheduleError::SubMillisecond(_))));
    }

    #[test]
    fn delay_after_walks_the_schedule() {
        let s: RetrySchedule = "0s,5s,5m".parse().unwrap();
        assert_eq!(s.attempts(), 3);
        assert_eq!(s.delay_after(0, 0.5), Some(Duration::ZERO));
        assert_eq!(s.delay_after(1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(s.delay_after(2, 0.5), Some(Duration::from_secs(300)));
        assert_eq!(s.delay_after(3, 0.5), None);
        assert_eq!(s.delay_after(usize::MAX, 0.5), None);
    }

    #[test]
    fn jitter_is_bounded_to_twenty_percent() {
        let s: RetrySchedule = "0s,100s".parse().unwrap();
        let near = |d: Option<Duration>, secs: f64| (d.unwrap().as_secs_f64() - secs).abs() < 1e-6;
        assert!(near(s.delay_after(1, 0.0), 80.0));
        assert!(near(s.delay_after(1, 1.0), 120.0));
        assert!(near(s.delay_after(1, 0.75), 110.0));
        assert!(near(s.delay_after(1, -3.0), 80.0));
        assert!(near(s.delay_after(1, 7.0), 120.0));
        assert_eq!(s.delay_after(1, f64::NAN), Some(Duration::from_secs(100)));
        assert_eq!(s.delay_after(0, 0.0), Some(Duration::ZERO));
        assert_eq!(s.delay_after(0, 1.0), Some(Duration::ZERO));
        for i in 0..=100 {
            let d = s.delay_after(1, f64::from(i) / 100.0).unwrap();
            assert!(d >= Duration::from_secs(80) && d <= Duration::from_secs(120), "{d:?}");
        }
    }

    #[test]
    fn jitter_on_huge_delay_does_not_panic() {
        let s = RetrySchedule::new(vec![Duration::from_millis(u64::MAX)]).unwrap();
        assert!(s.delay_after(0, 1.0).is_some());
        assert!(s.delay_after(0, 0.0).unwrap() < Duration::from_millis(u64::MAX));
    }

    #[test]
    fn retry_after_seconds() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86401", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("999999999999999999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_http_date() {
        // 1700000000 = Tue, 14 Nov 2023 22:13:20 GMT
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("Tue, 14 Nov 2023 22:15:00 GMT", now), Some(Duration::from_secs(100)));
        assert_eq!(parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sat, 18 Nov 2023 22:13:20 GMT", now), Some(MAX_RETRY_AFTER));
    }
}
