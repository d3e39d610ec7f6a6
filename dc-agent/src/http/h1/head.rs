//! Request heads in, response heads out: pure functions over bytes (no I/O), so that every
//! case is a unit test and the parser a fuzz target.

use std::time::SystemTime;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

/// The longest request head (request line and headers) taken. A URL is at most
/// [`MAX_URL`] long within it (the `http` crate's limit; 414 beyond).
pub const MAX_HEAD: usize = 128 * 1024;

/// The longest request target.
pub(super) const MAX_URL: usize = 65_534;

/// The largest body read whole by this loop: the API's own limit (2 MiB). Larger ones (a
/// snapshot restore) go to hyper, which streams them.
pub const OWN_BODY_MAX: usize = 2 * 1024 * 1024;

/// Headers a request may carry (hyper's default too).
pub(super) const MAX_HEADERS: usize = 100;

/// What the first bytes of the buffer hold.
// Returned once per request and taken apart at once: boxing the head would cost an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A request this loop serves.
    Ours(Head),
    /// A request for hyper (another method or version, a chunked or large body, an
    /// `Expect` or an upgrade).
    Hyper,
    /// Not HTTP, or too large: answered with this status, then the connection closes.
    Bad(StatusCode),
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The headers.
    pub headers: HeaderMap,
    /// The body's length (`Content-Length`, 0 without).
    pub body_len: usize,
    /// The client asked to close after the answer.
    pub close: bool,
    /// Bytes of the head, with its blank line.
    pub len: usize,
}

/// Parses the request head at the start of `buf` (pure: no I/O).
pub fn parse_head(buf: &[u8]) -> Parsed {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
        Err(_) => return Parsed::Bad(StatusCode::BAD_REQUEST),
    };
    if len > MAX_HEAD {
        return Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    if request.version != Some(1) {
        return Parsed::Hyper;
    }
    let method = match request.method {
        Some("GET") => Method::GET,
        Some("PUT") => Method::PUT,
        Some("POST") => Method::POST,
        Some("DELETE") => Method::DELETE,
        _ => return Parsed::Hyper,
    };
    if request.path.is_some_and(|p| p.len() > MAX_URL) {
        return Parsed::Bad(StatusCode::URI_TOO_LONG);
    }
    let Some(Ok(uri)) = request.path.map(Uri::try_from) else {
        return Parsed::Bad(StatusCode::BAD_REQUEST);
    };
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    let mut body_len = None;
    let mut close = false;
    for h in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Parsed::Bad(StatusCode::BAD_REQUEST);
        };
        if name == header::TRANSFER_ENCODING || name == header::EXPECT || name == header::UPGRADE {
            return Parsed::Hyper;
        }
        if name == header::CONTENT_LENGTH {
            let length = digits(h.value);
            match (length, body_len) {
                (Some(n), None) if n <= OWN_BODY_MAX => body_len = Some(n),
                // Invalid, repeated or large: hyper answers or streams it.
                _ => return Parsed::Hyper,
            }
        }
        if name == header::CONNECTION && has_token(h.value, "close") {
            close = true;
        }
        headers.append(name, value);
    }
    Parsed::Ours(Head {
        method,
        uri,
        headers,
        body_len: body_len.unwrap_or(0),
        close,
        len,
    })
}

/// A `Content-Length` value: ASCII digits only (`+5` is not a length, as hyper holds).
fn digits(value: &[u8]) -> Option<usize> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
pub(super) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// How a response's body is framed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Encodes a response head (pure); returns it and how the body follows.
pub(super) fn encode_head(
    status: StatusCode,
    headers: &HeaderMap,
    exact: Option<u64>,
    close: bool,
) -> (Vec<u8>, Framing) {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let given = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let framing = match (bodiless, given, exact) {
        (true, _, _) => Framing::None,
        (false, Some(n), _) | (false, None, Some(n)) => Framing::Length(n),
        (false, None, None) => Framing::Chunked,
    };
    for (name, value) in headers {
        if name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || (name == header::CONTENT_LENGTH && framing == Framing::None)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) if given.is_none() => {
            out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (out, framing)
}
