//! Helpers shared by huddle's fuzz targets (`fuzz_targets/`).

/// An HTTP-like request decoded from fuzz input: `name: value` header lines, a blank
/// line, then the body. Seeds in this form stay readable and easy to sign by hand.
pub struct Request<'a> {
    /// Names lowercased, as `http::HeaderMap` looks them up; values as written, less one
    /// space after the colon.
    pub headers: Vec<(String, &'a str)>,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// `None` when the header part is not UTF-8 (an HTTP server would refuse it too).
    pub fn parse(data: &'a [u8]) -> Option<Request<'a>> {
        let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
            Some(at) => (&data[..at], &data[at + 2..]),
            None => (data, &data[data.len()..]),
        };
        let head = std::str::from_utf8(head).ok()?;
        let headers = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.strip_prefix(' ').unwrap_or(value)))
            .collect();
        Some(Request { headers, body })
    }

    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }
}
