//! Keyset pagination shared by both backends.
//!
//! A page token names the last item of the previous page by its sort key,
//! `created_at_ms` and id, as `base64url("{created_at_ms}:{id}")`. Callers
//! treat it as opaque.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use huddle_core::time::Millis;

use crate::{Page, PageRequest, Result, StorageError};

/// The position after which a page starts: the sort key of the previous
/// page's last item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub created_at_ms: Millis,
    pub id: String,
}

impl Cursor {
    /// The cursor a request's token names; `None` for the first page.
    pub fn from_request(page: &PageRequest) -> Result<Option<Cursor>> {
        if page.token.is_empty() {
            return Ok(None);
        }
        decode(&page.token).map(Some).ok_or(StorageError::InvalidPageToken)
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.created_at_ms, self.id))
    }
}

fn decode(token: &str) -> Option<Cursor> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (ms, id) = text.split_once(':')?;
    if id.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    Some(Cursor { created_at_ms: ms.parse().ok()?, id: id.to_string() })
}

/// How many rows to fetch for a page of `size` items: one more than the page,
/// to learn whether another page follows.
pub(crate) fn fetch_limit(size: u32) -> i64 {
    i64::from(size) + 1
}

/// Turns up to `size + 1` fetched items into a page: the extra item, if any,
/// is dropped and means a next page exists.
pub(crate) fn assemble<T>(mut items: Vec<T>, size: u32, key: impl Fn(&T) -> Cursor) -> Page<T> {
    let size = size as usize;
    let next_token = if items.len() > size {
        items.truncate(size);
        items.last().map(|last| key(last).encode()).unwrap_or_default()
    } else {
        String::new()
    };
    Page { items, next_token }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: &str) -> PageRequest {
        PageRequest { size: 0, token: token.to_string() }
    }

    #[test]
    fn token_round_trip() {
        for cursor in [
            Cursor { created_at_ms: 1_700_000_000_123, id: "0190-abc".into() },
            Cursor { created_at_ms: -5, id: "with:colon".into() },
            Cursor { created_at_ms: 0, id: "é".into() },
        ] {
            let token = cursor.encode();
            assert_eq!(Cursor::from_request(&request(&token)).unwrap(), Some(cursor));
        }
    }

    #[test]
    fn empty_token_is_first_page() {
        assert_eq!(Cursor::from_request(&request("")).unwrap(), None);
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for token in [
            "!!!".to_string(),
            b64("no-colon"),
            b64("12:"),
            b64(":id"),
            b64("12x:id"),
            b64("+12:id"),
            b64("99999999999999999999:id"),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe, b':', b'a']),
        ] {
            assert!(
                matches!(Cursor::from_request(&request(&token)), Err(StorageError::InvalidPageToken)),
                "token {token:?} was accepted"
            );
        }
    }

    #[test]
    fn assemble_drops_the_probe_item() {
        let key = |n: &i64| Cursor { created_at_ms: *n, id: n.to_string() };
        let page = assemble(vec![1, 2, 3], 2, key);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_token, key(&2).encode());

        let page = assemble(vec![1, 2], 2, key);
        assert_eq!(page.items, vec![1, 2]);
        assert!(page.next_token.is_empty());
    }
}
