//! HTTP/1.1 connections, served by a small loop of our own so that a request parked on a
//! blocking query holds a few KB: its task, its request and the handler's state, nothing
//! else. Hyper keeps two 8 KiB buffers per connection for as long as it is open (and allows
//! no smaller), which made 10,000 waiting queries cost over 300 MiB.
//!
//! The loop reads a request head into a buffer sized to it ([`parse_head`], a pure function
//! over the bytes read so far), reads a `Content-Length` body whole, then drops the buffer
//! while the router answers. It takes the requests that Consul's clients send: HTTP/1.1,
//! `GET`, `PUT`, `POST` or `DELETE`, without `Transfer-Encoding`, `Expect` or `Upgrade`, a
//! body of at most [`OWN_BODY_MAX`]. Anything else (and everything after it on that
//! connection) is handed to hyper, with the bytes already read, so the whole protocol still
//! works; those connections cost what they did.
//!
//! As hyper does, a request whose client closes its connection is dropped (a blocking query
//! stops waiting), pipelined requests are read while one is served (up to
//! [`MAX_HEAD`]), and a response without a known length is sent chunked.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::{Body, HttpBody};
use axum::http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use bytes::Bytes;
use futures_util::FutureExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The longest request head (request line and headers) taken. A URL is at most
/// [`MAX_URL`] long within it (the `http` crate's limit; 414 beyond).
pub const MAX_HEAD: usize = 128 * 1024;

/// The longest request target.
const MAX_URL: usize = 65_534;

/// Pipelined bytes read while a request is served: beyond them, the connection is not read
/// until it is answered (so a parked query whose client sends more stays small).
const MAX_PIPELINED: usize = 4 * 1024;

/// A body is read into a buffer that starts at most this large and grows as bytes come: a
/// `Content-Length` alone reserves nothing more.
const BODY_START: usize = 64 * 1024;

/// The largest body read whole by this loop: the API's own limit (2 MiB). Larger ones (a
/// snapshot restore) go to hyper, which streams them.
pub const OWN_BODY_MAX: usize = 2 * 1024 * 1024;

/// Headers a request may carry (hyper's default too).
const MAX_HEADERS: usize = 100;

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
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// What ends waiting for a head.
#[allow(clippy::large_enum_variant)] // As [`Parsed`].
enum Next {
    Head(Head),
    Close,
    Hyper,
    Bad(StatusCode),
}

/// Serves one connection until it closes, `cancel` (after the request in progress), or it
/// goes to hyper.
pub async fn connection<Io>(
    mut io: Io,
    peer: SocketAddr,
    router: axum::Router,
    header_read_timeout: Duration,
    cancel: CancellationToken,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = Vec::new();
    // The client closed its side after pipelining requests: those are still answered.
    let mut eof = false;
    loop {
        let head = match read_head(&mut io, &mut buf, eof, header_read_timeout, &cancel).await {
            Next::Head(head) => head,
            Next::Close => return,
            // Boxed: hyper's connection state is large, and only these connections need it.
            Next::Hyper => {
                return Box::pin(hyper_connection(
                    io,
                    buf,
                    peer,
                    router,
                    header_read_timeout,
                    cancel,
                ))
                .await
            }
            Next::Bad(status) => {
                let _ = write_refusal(&mut io, status).await;
                return;
            }
        };
        buf.drain(..head.len);
        let Ok(body) = read_body(&mut io, &mut buf, head.body_len, header_read_timeout).await
        else {
            return;
        };
        if buf.is_empty() {
            // Nothing pipelined: hold no buffer while the request is served.
            buf = Vec::new();
        }
        let close = head.close;
        let request = into_request(head, body);
        let response = tokio::select! {
            response = router.clone().oneshot(request) => match response {
                Ok(response) => response,
                Err(never) => match never {},
            },
            () = watch_closed(&mut io, &mut buf, &mut eof) => {
                tracing::debug!(%peer, "client closed its connection; dropping its request");
                return;
            }
        };
        // A shutdown closes after this answer, and the answer says so (as hyper's).
        let close = close || cancel.is_cancelled();
        let mut reader = Reader {
            buf: &mut buf,
            eof: &mut eof,
        };
        match write_response(&mut io, response, close, &mut reader).await {
            Ok(true) if !cancel.is_cancelled() => {}
            Ok(_) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
                return;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
                return;
            }
        }
    }
}

/// Reads until `buf` starts with a whole head, within `timeout` of starting to wait.
async fn read_head<Io>(
    io: &mut Io,
    buf: &mut Vec<u8>,
    eof: bool,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Next
where
    Io: AsyncRead + Unpin,
{
    let deadline = Instant::now() + timeout;
    loop {
        if !buf.is_empty() {
            match parse_head(buf) {
                Parsed::Partial => {}
                Parsed::Ours(head) => return Next::Head(head),
                Parsed::Hyper => return Next::Hyper,
                Parsed::Bad(status) => return Next::Bad(status),
            }
        }
        if eof {
            return Next::Close;
        }
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(buf.len().clamp(1024, MAX_HEAD));
        }
        let idle = buf.is_empty();
        let read = tokio::select! {
            // Between requests, a shutdown closes at once; within one, the head is read.
            () = cancel.cancelled(), if idle => return Next::Close,
            () = tokio::time::sleep_until(deadline) => return Next::Close,
            read = io.read_buf(buf) => read,
        };
        match read {
            Ok(0) | Err(_) => return Next::Close,
            Ok(_) => {}
        }
    }
}

/// Reads a body of `len` bytes: first what `buf` already holds, then the connection, never
/// past the body (what follows is the next request's); the connection must make progress
/// every `timeout`.
async fn read_body<Io>(
    io: &mut Io,
    buf: &mut Vec<u8>,
    len: usize,
    timeout: Duration,
) -> io::Result<Bytes>
where
    Io: AsyncRead + Unpin,
{
    if len == 0 {
        return Ok(Bytes::new());
    }
    let have = len.min(buf.len());
    let mut body = Vec::with_capacity(len.min(BODY_START).max(have));
    body.extend(buf.drain(..have));
    while body.len() < len {
        let want = len - body.len();
        if body.capacity() == body.len() {
            body.reserve_exact(want.min(body.len().max(BODY_START)));
        }
        let room = (body.capacity() - body.len()).min(want) as u64;
        match tokio::time::timeout(timeout, (&mut *io).take(room).read_buf(&mut body)).await {
            Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
    Ok(Bytes::from(body))
}

/// The request the router sees.
fn into_request(head: Head, body: Bytes) -> Request<Body> {
    let mut request = Request::new(Body::from(body));
    *request.method_mut() = head.method;
    *request.uri_mut() = head.uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = head.headers;
    request
}

/// Returns when the client goes away while a request is served: its connection failed, or
/// it closed its side with nothing pipelined. Pipelined bytes it sends meanwhile are kept in
/// `buf` (up to [`MAX_PIPELINED`]); after a close that follows them (`eof`), they are still
/// answered, and this waits for good.
async fn watch_closed<Io>(io: &mut Io, buf: &mut Vec<u8>, eof: &mut bool)
where
    Io: AsyncRead + Unpin,
{
    let mut chunk = [0u8; 256];
    loop {
        if *eof || buf.len() >= MAX_PIPELINED {
            // Enough waiting: read no more until this request is answered.
            return std::future::pending().await;
        }
        match io.read(&mut chunk).await {
            Err(_) => return,
            Ok(0) if buf.is_empty() => return,
            Ok(0) => *eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// What [`write_response`] needs of the connection's read side, to notice a client that
/// leaves a stream.
struct Reader<'a> {
    buf: &'a mut Vec<u8>,
    eof: &'a mut bool,
}

/// How a response's body is framed.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Encodes a response head (pure); returns it and how the body follows.
fn encode_head(
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

/// Bodies up to this size go out in one write with their head.
const COALESCE: usize = 64 * 1024;

/// Writes `response`; returns whether the connection may carry another request.
async fn write_response<Io>(
    io: &mut Io,
    response: Response<Body>,
    close: bool,
    reader: &mut Reader<'_>,
) -> io::Result<bool>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    let (parts, mut body) = response.into_parts();
    let close = close
        || parts
            .headers
            .get(header::CONNECTION)
            .is_some_and(|v| has_token(v.as_bytes(), "close"));
    let (mut out, framing) = encode_head(
        parts.status,
        &parts.headers,
        body.size_hint().exact(),
        close,
    );
    let mut sent: u64 = 0;
    if framing != Framing::None {
        while let Some(frame) = next_frame(io, &mut body, &mut out, reader).await? {
            let Ok(data) = frame
                .map_err(|e| io::Error::other(e.to_string()))?
                .into_data()
            else {
                continue; // trailers: not sent
            };
            if data.is_empty() {
                continue;
            }
            let data = match framing {
                Framing::Length(n) => {
                    // Never more than announced.
                    let room = usize::try_from(n - sent).unwrap_or(usize::MAX);
                    data.slice(..data.len().min(room))
                }
                _ => data,
            };
            sent += data.len() as u64;
            if framing == Framing::Chunked {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            }
            if out.len() + data.len() <= COALESCE {
                out.extend_from_slice(&data);
            } else {
                io.write_all(&out).await?;
                out.clear();
                io.write_all(&data).await?;
            }
            if framing == Framing::Chunked {
                out.extend_from_slice(b"\r\n");
                if body.is_end_stream() {
                    break;
                }
                // A stream: what is written reaches the client now.
                io.write_all(&out).await?;
                out.clear();
                io.flush().await?;
            }
        }
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    io.write_all(&out).await?;
    io.flush().await?;
    // A body shorter than its length leaves the client waiting: close.
    let whole = match framing {
        Framing::Length(n) => sent == n,
        _ => true,
    };
    Ok(!close && whole)
}

/// The body's next frame. One not ready yet (a stream such as `/v1/agent/monitor`) first
/// sends what is written so far, the head included, as hyper does, and is given up if the
/// client leaves meanwhile.
async fn next_frame<Io>(
    io: &mut Io,
    body: &mut Body,
    out: &mut Vec<u8>,
    reader: &mut Reader<'_>,
) -> io::Result<Option<Result<http_body::Frame<Bytes>, axum::Error>>>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(frame) =
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).now_or_never()
    {
        return Ok(frame);
    }
    io.write_all(out).await?;
    out.clear();
    io.flush().await?;
    tokio::select! {
        frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)) => Ok(frame),
        () = watch_closed(io, reader.buf, reader.eof) => {
            Err(io::ErrorKind::ConnectionAborted.into())
        }
    }
}

/// Answers `status` and closes.
async fn write_refusal<Io>(io: &mut Io, status: StatusCode) -> io::Result<()>
where
    Io: AsyncWrite + Unpin,
{
    let text = format!("{}\n", status.canonical_reason().unwrap_or("Bad Request"));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let (mut out, _) = encode_head(status, &headers, Some(text.len() as u64), true);
    out.extend_from_slice(text.as_bytes());
    tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(&out).await?;
        io.shutdown().await
    })
    .await
    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// Hands the connection to hyper, with the bytes already read.
async fn hyper_connection<Io>(
    io: Io,
    read: Vec<u8>,
    peer: SocketAddr,
    router: axum::Router,
    header_read_timeout: Duration,
    cancel: CancellationToken,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD);
    let io = Rewind {
        read: Bytes::from(read),
        io,
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

/// A connection whose first bytes were already read.
struct Rewind<Io> {
    read: Bytes,
    io: Io,
}

impl<Io: AsyncRead + Unpin> AsyncRead for Rewind<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(out.remaining());
            let taken = self.read.split_to(n);
            out.put_slice(&taken);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Rewind<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use axum::routing::{get, put};
    use tokio::io::DuplexStream;

    use super::*;

    fn ours(text: &str) -> Head {
        match parse_head(text.as_bytes()) {
            Parsed::Ours(head) => head,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn heads_are_parsed_or_passed_on() {
        let head = ours(
            "GET /v1/kv/a?index=7&wait=5m HTTP/1.1\r\nHost: x\r\nX-Consul-Token: t\r\n\r\nGET /",
        );
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri.path(), "/v1/kv/a");
        assert_eq!(head.uri.query(), Some("index=7&wait=5m"));
        assert_eq!(head.headers["x-consul-token"], "t");
        assert_eq!((head.body_len, head.close), (0, false));
        assert_eq!(
            head.len,
            text_len(
                "GET /v1/kv/a?index=7&wait=5m HTTP/1.1\r\nHost: x\r\nX-Consul-Token: t\r\n\r\n"
            )
        );

        let head = ours(
            "PUT /v1/kv/a HTTP/1.1\r\ncontent-length: 5\r\nConnection: keep-alive, Close\r\n\r\n",
        );
        assert_eq!((head.body_len, head.close), (5, true));

        assert!(matches!(
            parse_head(b"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
        assert!(matches!(parse_head(b"GE"), Parsed::Partial));
        for hyper in [
            "GET / HTTP/1.0\r\n\r\n",
            "HEAD / HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            "PUT / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(hyper.as_bytes()), Parsed::Hyper),
                "{hyper:?}"
            );
        }
        for (bad, status) in [
            ("\x16\x03\x01\x02\x00\x01", StatusCode::BAD_REQUEST),
            ("GET /\x01 HTTP/1.1\r\n\r\n", StatusCode::BAD_REQUEST),
            (
                "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
        ] {
            match parse_head(bad.as_bytes()) {
                Parsed::Bad(s) => assert_eq!(s, status, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            parse_head(many.as_bytes()),
            Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        ));
        let url = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URL));
        assert!(matches!(
            parse_head(url.as_bytes()),
            Parsed::Bad(StatusCode::URI_TOO_LONG)
        ));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(
            parse_head(long.as_bytes()),
            Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        ));
    }

    fn text_len(text: &str) -> usize {
        text.len()
    }

    #[test]
    fn response_heads_frame_their_bodies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert("x-consul-index", HeaderValue::from_static("42"));
        let (head, framing) = encode_head(StatusCode::OK, &headers, Some(2), false);
        let head = String::from_utf8(head).expect("ASCII");
        assert!(
            head.starts_with(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-consul-index: 42\r\ndate: "
            ),
            "{head}"
        );
        assert!(
            head.ends_with(" GMT\r\ncontent-length: 2\r\n\r\n"),
            "{head}"
        );
        assert_eq!(framing, Framing::Length(2));

        let (head, framing) = encode_head(StatusCode::OK, &HeaderMap::new(), None, true);
        let head = String::from_utf8(head).expect("ASCII");
        assert!(
            head.ends_with("transfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
            "{head}"
        );
        assert_eq!(framing, Framing::Chunked);

        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let (head, framing) = encode_head(StatusCode::NO_CONTENT, &headers, Some(0), false);
        let head = String::from_utf8(head).expect("ASCII");
        assert!(
            head.starts_with("HTTP/1.1 204 No Content\r\n") && !head.contains("content-length"),
            "{head}"
        );
        assert_eq!(framing, Framing::None);
    }

    /// A router with what the tests ask of it; `dropped` is set when `/wait`'s handler is
    /// dropped.
    fn router(dropped: Arc<AtomicBool>) -> axum::Router {
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        axum::Router::new()
            .route("/hello", get(|| async { "hi" }))
            .route("/echo", put(|body: Bytes| async move { body }))
            .route(
                "/wait",
                get(move || async move {
                    let _flag = Flag(dropped);
                    std::future::pending::<()>().await;
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    "slow"
                }),
            )
            .route(
                "/quiet",
                get(|| async {
                    Body::from_stream(futures_util::stream::pending::<Result<Bytes, io::Error>>())
                }),
            )
            .route(
                "/stream",
                get(|| async {
                    let parts: Vec<Result<Bytes, io::Error>> = vec![
                        Ok(Bytes::from_static(b"ab")),
                        Ok(Bytes::from_static(b"cde")),
                    ];
                    Body::from_stream(futures_util::stream::iter(parts))
                }),
            )
    }

    fn start(timeout: Duration) -> (DuplexStream, Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
        start_with(timeout, CancellationToken::new())
    }

    fn start_with(
        timeout: Duration,
        cancel: CancellationToken,
    ) -> (DuplexStream, Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let dropped = Arc::new(AtomicBool::new(false));
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let task = tokio::spawn(connection(
            server,
            peer,
            router(dropped.clone()),
            timeout,
            cancel,
        ));
        (client, dropped, task)
    }

    /// Reads until `done` holds of what was read, or the connection closes.
    async fn read_until(client: &mut DuplexStream, done: impl Fn(&str) -> bool) -> String {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if done(&text) {
                return text;
            }
            match tokio::time::timeout(Duration::from_secs(5), client.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return text,
                Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("no answer; read so far: {text:?}"),
            }
        }
    }

    #[tokio::test]
    async fn keep_alive_pipelining_bodies_and_streams() {
        let (mut client, _, _task) = start(Duration::from_secs(30));
        // Two requests in one write, the second with a body, then a streamed answer.
        client
            .write_all(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nPUT /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel")
            .await
            .expect("write");
        client.write_all(b"lo").await.expect("write");
        let text = read_until(&mut client, |t| {
            t.matches("HTTP/1.1 200 OK").count() == 2 && t.ends_with("hello")
        })
        .await;
        let (first, second) = text.split_at(text.rfind("HTTP/1.1 200 OK").expect("two"));
        assert!(
            first.contains("content-length: 2\r\n") && first.ends_with("\r\n\r\nhi"),
            "{text}"
        );
        assert!(
            second.contains("content-length: 5\r\n") && second.ends_with("\r\n\r\nhello"),
            "{text}"
        );
        client
            .write_all(b"GET /stream HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let text = read_until(&mut client, |t| t.ends_with("0\r\n\r\n")).await;
        assert!(
            text.contains("transfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
            "{text}"
        );
        // Connection: close is honoured.
        client
            .write_all(b"GET /nothing HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let text = read_until(&mut client, |_| false).await;
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\n")
                && text.contains("connection: close\r\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_stream_sends_its_head_before_its_first_frame() {
        let (mut client, _, _task) = start(Duration::from_secs(30));
        client
            .write_all(b"GET /quiet HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let text = read_until(&mut client, |t| t.ends_with("\r\n\r\n")).await;
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("transfer-encoding: chunked"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_large_body_is_read_to_its_end_and_no_further() {
        let (mut client, _, _task) = start(Duration::from_secs(30));
        let body: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut request = format!(
            "PUT /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request.extend_from_slice(b"GET /hello HTTP/1.1\r\n\r\n");
        for piece in request.chunks(70_001) {
            client.write_all(piece).await.expect("write");
            tokio::task::yield_now().await;
        }
        let text = read_until(&mut client, |t| t.ends_with("\r\n\r\nhi")).await;
        let expected = String::from_utf8(body).expect("ASCII");
        assert!(
            text.contains("content-length: 300000\r\n"),
            "{}",
            &text[..200]
        );
        assert!(
            text.contains(&format!("\r\n\r\n{expected}HTTP/1.1 200 OK\r\n")),
            "the echo, then the next answer"
        );
    }

    #[tokio::test]
    async fn a_client_leaving_a_stream_ends_it() {
        let (mut client, _, task) = start(Duration::from_secs(30));
        client
            .write_all(b"GET /quiet HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        read_until(&mut client, |t| t.ends_with("\r\n\r\n")).await;
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the connection ends")
            .expect("no panic");
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_after_a_half_close() {
        let (mut client, _, task) = start(Duration::from_secs(30));
        client
            .write_all(b"GET /slow HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        client.shutdown().await.expect("half-close");
        let text = read_until(&mut client, |_| false).await;
        assert!(
            text.contains("\r\n\r\nslow") && text.ends_with("\r\n\r\nhi"),
            "{text}"
        );
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the connection ends")
            .expect("no panic");
    }

    #[tokio::test]
    async fn a_shutdown_finishes_the_request_and_says_it_closes() {
        let cancel = CancellationToken::new();
        let (mut client, _, task) = start_with(Duration::from_secs(30), cancel.clone());
        client
            .write_all(b"GET /slow HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
        let text = read_until(&mut client, |_| false).await;
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n")
                && text.contains("connection: close\r\n")
                && text.ends_with("slow"),
            "{text}"
        );
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the connection ends")
            .expect("no panic");
    }

    #[tokio::test]
    async fn what_this_loop_does_not_take_goes_to_hyper() {
        let (mut client, _, _task) = start(Duration::from_secs(30));
        // A chunked body, which only hyper reads; the connection stays with hyper after.
        client
            .write_all(b"PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /hello HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let text = read_until(&mut client, |t| t.ends_with("hi")).await;
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("\r\n\r\nabc"),
            "{text}"
        );
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    }

    #[tokio::test]
    async fn a_closed_client_drops_its_waiting_request() {
        let (mut client, dropped, task) = start(Duration::from_secs(30));
        client
            .write_all(b"GET /wait HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!dropped.load(Ordering::SeqCst), "still waiting");
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the connection ends")
            .expect("no panic");
        assert!(dropped.load(Ordering::SeqCst), "the handler was dropped");
    }

    #[tokio::test]
    async fn garbage_and_slow_heads_are_refused() {
        let (mut client, _, task) = start(Duration::from_millis(300));
        client
            .write_all(b"\x16\x03\x01\x02\x00\x01\r\n\r\n")
            .await
            .expect("write");
        let text = read_until(&mut client, |_| false).await;
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        task.await.expect("no panic");

        // A head that never ends is dropped at the header-read timeout.
        let (mut client, _, task) = start(Duration::from_millis(300));
        client
            .write_all(b"GET /hello HTTP/1.1\r\nX-a: b\r\n")
            .await
            .expect("write");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("closed")
            .expect("no panic");
        assert_eq!(read_until(&mut client, |_| false).await, "");
    }
}
