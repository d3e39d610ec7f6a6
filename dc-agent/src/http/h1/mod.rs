//! HTTP/1.1 connections, served by a small loop of our own so that a request parked on a
//! blocking query holds a few KB: its task, its request and the handler's state, nothing
//! else. Hyper keeps two 8 KiB buffers per connection for as long as it is open (and allows
//! no smaller), which made 10,000 waiting queries cost over 300 MiB.
//!
//! The loop reads a request head into a buffer sized to it ([`parse_head`], a pure function
//! over the bytes read so far), reads a `Content-Length` body whole, then drops the buffer
//! while the router answers. It takes the requests that Consul's clients send: HTTP/1.1,
//! `GET`, `PUT`, `POST` or `DELETE`, without `Transfer-Encoding`, `Expect` or `Upgrade`, a
//! body of at most [`head::OWN_BODY_MAX`]. Anything else (and everything after it on that
//! connection) is handed to hyper, with the bytes already read, so the whole protocol still
//! works; those connections cost what they did.
//!
//! As hyper does, a request whose client closes its connection is dropped (a blocking query
//! stops waiting, a stream such as `/v1/agent/monitor` ends), pipelined requests are read
//! while one is served (up to [`MAX_PIPELINED`]) and answered even after the client closed
//! its side, a response without a known length is sent chunked, and a shutdown lets the
//! request in progress finish with `connection: close`.
//!
//! `head.rs`: the pure part (request heads parsed, response heads encoded); `tests.rs`: the
//! loop driven over in-memory pipes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use bytes::Bytes;
use futures_util::FutureExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

mod head;

use head::{encode_head, has_token, Framing};
pub use head::{parse_head, Head, Parsed, MAX_HEAD};

/// Pipelined bytes read while a request is served: beyond them, the connection is not read
/// until it is answered (so a parked query whose client sends more stays small).
const MAX_PIPELINED: usize = 4 * 1024;

/// A body is read into a buffer that starts at most this large and grows as bytes come: a
/// `Content-Length` alone reserves nothing more.
const BODY_START: usize = 64 * 1024;

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
mod tests;
