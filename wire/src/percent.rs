//! Percent-encoding of the `/v1` API's URLs, in one place: KV keys in paths (keeping `/`),
//! single path segments and query values, and decoding query strings as Go's
//! `url.ParseQuery` does (`+` is a space).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What stays as it is in a path segment or a query value: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A KV key's path: a segment's characters and `/`.
const KEY: &AsciiSet = &SEGMENT.remove(b'/');

/// Encodes a KV key for a URL path (`a b/c` is `a%20b/c`).
pub fn key_path(key: &str) -> String {
    utf8_percent_encode(key, KEY).to_string()
}

/// Encodes one path segment or query value (`/` encoded too).
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// Decodes a path (`%XX` escapes; `+` stays a `+`); `None` when not UTF-8.
pub fn decode_path(text: &str) -> Option<String> {
    percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Decodes a query-string key or value: `%XX` escapes and `+` for a space. `None` for a
/// `%` without two hex digits (Go's `invalid URL escape`) or a result that is not UTF-8.
pub fn decode_query(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_go_spellings() {
        assert_eq!(key_path("app/config db"), "app/config%20db");
        assert_eq!(key_path("a~b-c_d.e"), "a~b-c_d.e");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(decode_query("a+b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(decode_query("%C3%A9").as_deref(), Some("é"));
        assert_eq!(decode_query("%FF"), None);
        assert_eq!(decode_query("100%"), None);
        assert_eq!(decode_query("%zz"), None);
        for text in ["web/1 2", "ü/x", "a%b"] {
            assert_eq!(decode_query(&key_path(text)).as_deref(), Some(text));
        }
    }
}
