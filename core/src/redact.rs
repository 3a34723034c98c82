//! Keeping secrets out of logs, errors and `Debug` output.
//!
//! [`url`] drops what a URL may carry besides where it points (userinfo, query
//! string, fragment); [`secret`] stands in for a set secret in `Debug` impls.

/// What a redacted value shows.
pub const REDACTED: &str = "<redacted>";

/// `Some("<redacted>")` for a set secret, `None` for an unset one: for `Debug`
/// impls, which should still say whether a secret is configured.
pub fn secret<T>(value: &Option<T>) -> Option<&'static str> {
    value.as_ref().map(|_| REDACTED)
}

/// A URL fit for a log line or an error: userinfo (`user:password@`), the
/// query string and the fragment are replaced by `<redacted>`; scheme, host,
/// port and path stay. Text that is no URL keeps only what comes before a `?`
/// or `#`.
///
/// ```
/// use huddle_core::redact;
/// assert_eq!(
///     redact::url("postgres://app:hunter2@db:5432/huddle?sslpassword=x"),
///     "postgres://<redacted>@db:5432/huddle?<redacted>"
/// );
/// assert_eq!(redact::url("https://example.com/hook"), "https://example.com/hook");
/// ```
pub fn url(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(raw.len());
    out.push_str(scheme);
    match authority.rfind('@') {
        Some(at) if !scheme.is_empty() => {
            out.push_str(REDACTED);
            out.push_str(&authority[at..]);
        }
        _ => out.push_str(authority),
    }
    match tail.find(['?', '#']) {
        Some(i) => {
            out.push_str(&tail[..i]);
            out.push_str(&tail[i..i + 1]);
            out.push_str(REDACTED);
        }
        None => out.push_str(tail),
    }
    out
}

/// [`url`] of an optional URL.
pub fn optional_url(raw: &Option<String>) -> Option<String> {
    raw.as_deref().map(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_query_and_fragment() {
        assert_eq!(
            url("https://user:pw@example.com:8443/a/b?token=1#frag"),
            "https://<redacted>@example.com:8443/a/b?<redacted>"
        );
        assert_eq!(url("https://example.com?key=abc"), "https://example.com?<redacted>");
        assert_eq!(url("https://example.com/x#sig=abc"), "https://example.com/x#<redacted>");
        assert_eq!(url("postgres://postgres@127.0.0.1:5432/test"), "postgres://<redacted>@127.0.0.1:5432/test");
        assert_eq!(url("sqlite://huddle.db"), "sqlite://huddle.db");
        assert_eq!(url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(url("wss://lk.example.com/rtc?access_token=eyJ"), "wss://lk.example.com/rtc?<redacted>");
        assert_eq!(url("https://example.com/a@b"), "https://example.com/a@b");
        assert_eq!(url("not a url?secret"), "not a url?<redacted>");
        assert_eq!(url(""), "");
    }

    #[test]
    fn secrets_show_only_whether_they_are_set() {
        assert_eq!(secret(&Some("hunter2")), Some(REDACTED));
        assert_eq!(secret::<String>(&None), None);
    }
}
