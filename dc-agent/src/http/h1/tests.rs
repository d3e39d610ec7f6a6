use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::{get, put};
use tokio::io::DuplexStream;

use super::head::{encode_head, Framing, MAX_HEADERS, MAX_URL};
use super::*;
use axum::http::Method;

fn ours(text: &str) -> Head {
    match parse_head(text.as_bytes()) {
        Parsed::Ours(head) => head,
        other => panic!("{text:?}: {other:?}"),
    }
}

#[test]
fn heads_are_parsed_or_passed_on() {
    let head =
        ours("GET /v1/kv/a?index=7&wait=5m HTTP/1.1\r\nHost: x\r\nX-Consul-Token: t\r\n\r\nGET /");
    assert_eq!(head.method, Method::GET);
    assert_eq!(head.uri.path(), "/v1/kv/a");
    assert_eq!(head.uri.query(), Some("index=7&wait=5m"));
    assert_eq!(head.headers["x-consul-token"], "t");
    assert_eq!((head.body_len, head.close), (0, false));
    assert_eq!(
        head.len,
        text_len("GET /v1/kv/a?index=7&wait=5m HTTP/1.1\r\nHost: x\r\nX-Consul-Token: t\r\n\r\n")
    );

    let head =
        ours("PUT /v1/kv/a HTTP/1.1\r\ncontent-length: 5\r\nConnection: keep-alive, Close\r\n\r\n");
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

async fn send(client: &mut DuplexStream, bytes: &[u8]) {
    client.write_all(bytes).await.expect("write");
}

/// Waits for the connection's task to end, without a panic.
async fn ends(task: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the connection ends")
        .expect("no panic");
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
    send(
        &mut client,
        b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nPUT /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel",
    )
    .await;
    send(&mut client, b"lo").await;
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
    send(&mut client, b"GET /stream HTTP/1.1\r\n\r\n").await;
    let text = read_until(&mut client, |t| t.ends_with("0\r\n\r\n")).await;
    assert!(
        text.contains("transfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
        "{text}"
    );
    // Connection: close is honoured.
    send(
        &mut client,
        b"GET /nothing HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = read_until(&mut client, |_| false).await;
    assert!(
        text.starts_with("HTTP/1.1 404 Not Found\r\n") && text.contains("connection: close\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_stream_sends_its_head_before_its_first_frame() {
    let (mut client, _, _task) = start(Duration::from_secs(30));
    send(&mut client, b"GET /quiet HTTP/1.1\r\n\r\n").await;
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
        send(&mut client, piece).await;
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
    send(&mut client, b"GET /quiet HTTP/1.1\r\n\r\n").await;
    read_until(&mut client, |t| t.ends_with("\r\n\r\n")).await;
    drop(client);
    ends(task).await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_after_a_half_close() {
    let (mut client, _, task) = start(Duration::from_secs(30));
    send(
        &mut client,
        b"GET /slow HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n",
    )
    .await;
    client.shutdown().await.expect("half-close");
    let text = read_until(&mut client, |_| false).await;
    assert!(
        text.contains("\r\n\r\nslow") && text.ends_with("\r\n\r\nhi"),
        "{text}"
    );
    ends(task).await;
}

#[tokio::test]
async fn a_shutdown_finishes_the_request_and_says_it_closes() {
    let cancel = CancellationToken::new();
    let (mut client, _, task) = start_with(Duration::from_secs(30), cancel.clone());
    send(&mut client, b"GET /slow HTTP/1.1\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel();
    let text = read_until(&mut client, |_| false).await;
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n")
            && text.contains("connection: close\r\n")
            && text.ends_with("slow"),
        "{text}"
    );
    ends(task).await;
}

#[tokio::test]
async fn what_this_loop_does_not_take_goes_to_hyper() {
    let (mut client, _, _task) = start(Duration::from_secs(30));
    // A chunked body, which only hyper reads; the connection stays with hyper after.
    send(&mut client, b"PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /hello HTTP/1.1\r\n\r\n").await;
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
    send(&mut client, b"GET /wait HTTP/1.1\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!dropped.load(Ordering::SeqCst), "still waiting");
    drop(client);
    ends(task).await;
    assert!(dropped.load(Ordering::SeqCst), "the handler was dropped");
}

#[tokio::test]
async fn garbage_and_slow_heads_are_refused() {
    let (mut client, _, task) = start(Duration::from_millis(300));
    send(&mut client, b"\x16\x03\x01\x02\x00\x01\r\n\r\n").await;
    let text = read_until(&mut client, |_| false).await;
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    task.await.expect("no panic");

    // A head that never ends is dropped at the header-read timeout.
    let (mut client, _, task) = start(Duration::from_millis(300));
    send(&mut client, b"GET /hello HTTP/1.1\r\nX-a: b\r\n").await;
    ends(task).await;
    assert_eq!(read_until(&mut client, |_| false).await, "");
}
