//! Timestamps are milliseconds since the Unix epoch (UTC), stored as `i64`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01, in the
/// proleptic Gregorian calendar (400-year eras starting on March 1st, so the
/// leap day falls at the end of each year).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The UTC calendar fields of `ms`: (year, month, day, hour, minute, second,
/// millisecond), truncated toward the past.
pub fn utc_fields(ms: Millis) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u32;
    (y, mo, d, sod / 3_600, sod % 3_600 / 60, sod % 60, ms.rem_euclid(1000) as u32)
}

/// RFC 3339 in UTC: `2023-11-14T22:13:20Z`, or with `.mmm` when `millis`.
pub fn rfc3339(ms: Millis, millis: bool) -> String {
    let (y, mo, d, h, mi, s, milli) = utc_fields(ms);
    if millis {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0, false), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123, true), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_827_696_789, true), "2000-02-29T12:34:56.789Z");
        assert_eq!(rfc3339(-1, true), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(253_402_300_799_000, false), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn civil_dates_are_consecutive_across_centuries() {
        let mut prev = civil_from_days(-800_000);
        for days in -799_999..800_000 {
            let cur = civil_from_days(days);
            let next_day = (prev.0, prev.1, prev.2 + 1);
            let next_month = (prev.0, prev.1 + 1, 1);
            let next_year = (prev.0 + 1, 1, 1);
            assert!(cur == next_day || cur == next_month || cur == next_year, "{prev:?} -> {cur:?}");
            if cur == next_month || cur == next_year {
                let y = prev.0;
                let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
                let len = match prev.1 {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(prev.2, len, "{prev:?}");
            }
            prev = cur;
        }
    }
}
