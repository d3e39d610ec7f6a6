//! Hostile and careless HTTP clients against a real agent: too many connections from one
//! address (Consul's `limits.http_max_conns_per_client` and its 429), a slowloris client
//! sending a header line at a time, idle keep-alive connections. The agent bounds each and
//! keeps serving everyone else.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::flag_agent::{wait_for, FlagAgent};

/// One request on an open connection; returns the status line.
fn request(stream: &mut TcpStream, path: &str) -> String {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n").expect("write");
    let mut buffer = [0u8; 4096];
    let n = stream.read(&mut buffer).expect("read");
    let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

/// Reads until the peer closes; returns what came and how long it took (None: still open
/// after `limit`).
fn until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buffer) {
            Ok(0) => {
                return (
                    String::from_utf8_lossy(&seen).into_owned(),
                    Some(started.elapsed()),
                )
            }
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                return (
                    String::from_utf8_lossy(&seen).into_owned(),
                    Some(started.elapsed()),
                )
            }
        }
    }
    (String::from_utf8_lossy(&seen).into_owned(), None)
}

#[test]
fn connections_are_bounded_per_client_and_in_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("limits.json");
    std::fs::write(
        &config,
        r#"{"limits": {"http_max_conns_per_client": 3},
            "isthmus": {"config_version": 1, "http_header_read_timeout": "1s"}}"#,
    )
    .expect("write config");
    let config = format!("-config-file={}", config.display());
    let agent = FlagAgent::server(
        dir.path(),
        "n1",
        "127.168.0.1",
        &["-bootstrap-expect=1", &config],
    );
    agent.wait_for_leader(Duration::from_secs(30));
    let addr = agent.http();

    // Three keep-alive connections are served; a fourth from the same address is answered
    // 429 and closed, as Consul's.
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).expect("connect");
            assert_eq!(request(&mut stream, "/v1/status/leader"), "HTTP/1.1 200 OK");
            stream
        })
        .collect();
    let mut fourth = TcpStream::connect(&addr).expect("connect");
    let (answer, closed) = until_closed(&mut fourth, Duration::from_secs(5));
    assert!(
        answer.starts_with("HTTP/1.1 429 Too Many Requests"),
        "{answer}"
    );
    assert!(closed.is_some(), "the refused connection is closed");
    // One closes: a new one is served again, and the refusal was counted.
    drop(held.pop());
    let metrics = wait_for(Duration::from_secs(5), &[&agent], "a free slot", || {
        let response = agent
            .client()
            .get("/v1/agent/metrics?format=prometheus")
            .ok()?;
        (response.status == 200).then(|| response.text())
    });
    // At least the fourth connection (a retry above may have found the slot not yet free).
    let rejected: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("isthmus_http_connections_rejected_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(rejected >= 1.0, "{metrics}");

    // Idle keep-alive connections are closed once the header-read timeout passes.
    for stream in &mut held {
        let (_, closed) = until_closed(stream, Duration::from_secs(5));
        let closed = closed.expect("an idle connection is closed");
        assert!(closed < Duration::from_secs(3), "closed after {closed:?}");
    }

    // A slowloris client, a header line every 300 ms, is cut off after the timeout.
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /v1/status/leader HTTP/1.1\r\n")
        .expect("write");
    let started = Instant::now();
    let mut cut_off = None;
    for i in 0..30 {
        std::thread::sleep(Duration::from_millis(300));
        if slow
            .write_all(format!("X-Slow-{i}: still coming\r\n").as_bytes())
            .is_err()
        {
            cut_off = Some(started.elapsed());
            break;
        }
        slow.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        let closed = matches!(slow.read(&mut byte), Ok(0));
        slow.set_nonblocking(false).expect("blocking");
        if closed {
            cut_off = Some(started.elapsed());
            break;
        }
    }
    let cut_off = cut_off.expect("the slow client is cut off");
    assert!(cut_off < Duration::from_secs(4), "after {cut_off:?}");

    // Everyone else is still served.
    let leader = agent.client().get("/v1/status/leader").expect("leader");
    assert_eq!(leader.status, 200);
}

/// A metric's value from an agent's Prometheus page.
fn metric(agent: &FlagAgent, name: &str) -> f64 {
    agent
        .client()
        .get("/v1/agent/metrics?format=prometheus")
        .map(|r| r.text())
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn blocking_queries_through_a_client_agent_share_one_upstream_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FlagAgent::server(dir.path(), "s1", "127.168.1.1", &["-bootstrap-expect=1"]);
    server.wait_for_leader(Duration::from_secs(30));
    let data = dir.path().join("c1").display().to_string();
    let client = FlagAgent::start(
        dir.path(),
        "c1",
        "127.168.1.2",
        &[
            "-node=c1",
            "-bind=127.168.1.2",
            "-client=127.168.1.2",
            &format!("-data-dir={data}"),
            "-retry-join=127.168.1.1",
        ],
    );
    wait_for(
        Duration::from_secs(30),
        &[&server, &client],
        "the client agent",
        || {
            let r = client.client().put("/v1/kv/watched", b"0").ok()?;
            (r.status == 200).then_some(())
        },
    );
    let index = client
        .client()
        .get("/v1/kv/watched")
        .ok()
        .and_then(|r| r.header("x-consul-index").map(str::to_owned))
        .expect("an index");

    // Forty clients wait on the same key at the same index: one query goes to the server.
    let addr = client.http();
    let waiting: Vec<_> = (0..40)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).expect("connect");
            write!(
                stream,
                "GET /v1/kv/watched?index={index}&wait=60s HTTP/1.1\r\nHost: agent\r\n\r\n"
            )
            .expect("write");
            stream
        })
        .collect();
    wait_for(
        Duration::from_secs(10),
        &[&client],
        "the queries to join",
        || (metric(&client, "isthmus_blocking_queries_coalesced_total") >= 39.0).then_some(()),
    );
    assert_eq!(metric(&client, "isthmus_blocking_queries_upstream"), 1.0);
    // Ordinary requests go on meanwhile.
    assert_eq!(
        client.client().get("/v1/kv/watched").expect("read").status,
        200
    );
    // One write wakes every one of them with the new value's index.
    let response = client.client().put("/v1/kv/watched", b"1").expect("write");
    assert_eq!(response.status, 200);
    for mut stream in waiting {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buffer = [0u8; 4096];
        let n = stream.read(&mut buffer).expect("an answer");
        let text = String::from_utf8_lossy(&buffer[..n]);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        let new_index: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("x-consul-index: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("an index");
        assert!(
            new_index > index.parse::<u64>().expect("a number"),
            "{text}"
        );
    }
    assert_eq!(metric(&client, "isthmus_blocking_queries_upstream"), 0.0);
}

/// A process's virtual memory size and resident set, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmSize:"), field("VmRSS:"))
}

/// A client agent's certificate (the CA signed it) opens 500 RPC streams to a server, each
/// announcing a 64 MiB frame and sending nothing more. The server must not set aside what
/// they announce (it used to allocate each frame whole before reading it: 500 x 64 MiB), and
/// must keep answering everyone else.
#[test]
fn frames_that_announce_more_than_they_send_cost_the_server_nothing() {
    let mut cluster = support::Cluster::render_with_clients(170, 1, 1, "");
    cluster.agents[0].start();
    cluster.wait_for_leader_among(&[0]);
    let pid = cluster.agents[0].pid().expect("server pid");
    let tls_dir = cluster.dir.path().join("dc1/c1/tls");
    let read = |name: &str| std::fs::read(tls_dir.join(name)).expect("rendered TLS file");
    let tls = pki::NodeTls::from_pem(&read("ca.pem"), &read("cert.pem"), &read("key.pem"))
        .expect("client TLS");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let before = memory_kib(pid);
    let held = runtime.block_on(async {
        let config = link::client_config(
            tls.client_config(
                pki::PeerPolicy::servers_of("consul", "dc1"),
                &[dc_agent::rpc::ALPN_RPC],
            )
            .expect("rustls config"),
        )
        .expect("client config");
        let endpoint =
            quinn::Endpoint::client("127.170.0.9:0".parse().expect("addr")).expect("endpoint");
        let connection = endpoint
            .connect_with(
                config,
                "127.170.0.1:8300".parse().expect("addr"),
                "server.dc1.consul",
            )
            .expect("connect")
            .await
            .expect("handshake");
        let mut streams = Vec::new();
        for _ in 0..500 {
            let (mut send, recv) = connection.open_bi().await.expect("stream");
            send.write_all(&(64u32 * 1024 * 1024).to_be_bytes())
                .await
                .expect("header");
            streams.push((send, recv));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        (endpoint, connection, streams)
    });
    let during = memory_kib(pid);
    // Everyone else is served meanwhile.
    let leader = cluster.request(0, "GET", "/v1/status/leader", b"");
    assert_eq!(leader.status, 200);
    let grown_virtual = during.0.saturating_sub(before.0);
    let grown_resident = during.1.saturating_sub(before.1);
    assert!(
        grown_virtual < 4 * 1024 * 1024,
        "500 announced 64 MiB frames grew the server's virtual memory by {grown_virtual} KiB"
    );
    assert!(
        grown_resident < 256 * 1024,
        "500 announced 64 MiB frames grew the server's RSS by {grown_resident} KiB"
    );
    println!(
        "500 streams announcing 64 MiB each: server VmSize +{} MiB, RSS +{} MiB",
        grown_virtual / 1024,
        grown_resident / 1024
    );
    drop(held);
}

/// Raises this process's open-file limit (children inherit it) so that a test may hold
/// `want` connections.
fn raise_file_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A thousand blocking queries parked on a client agent each cost a few KiB of its memory
/// (no per-connection buffers while they wait: hyper alone kept 16 KiB per connection),
/// and a client that goes away takes its query with it: once all of them closed, the query
/// they shared upstream is gone too and so are their connections.
#[test]
fn parked_blocking_queries_cost_a_few_kib_and_go_with_their_clients() {
    const PARKED: usize = 1000;
    raise_file_limit(4 * PARKED as u64);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FlagAgent::server(dir.path(), "s1", "127.168.2.1", &["-bootstrap-expect=1"]);
    server.wait_for_leader(Duration::from_secs(30));
    let config = dir.path().join("limits.json");
    std::fs::write(&config, r#"{"limits": {"http_max_conns_per_client": 0}}"#)
        .expect("write config");
    let data = dir.path().join("c1").display().to_string();
    let client = FlagAgent::start(
        dir.path(),
        "c1",
        "127.168.2.2",
        &[
            "-node=c1",
            "-bind=127.168.2.2",
            "-client=127.168.2.2",
            &format!("-data-dir={data}"),
            &format!("-config-file={}", config.display()),
            "-retry-join=127.168.2.1",
        ],
    );
    wait_for(
        Duration::from_secs(30),
        &[&server, &client],
        "the client agent",
        || {
            let r = client.client().put("/v1/kv/parked", b"0").ok()?;
            (r.status == 200).then_some(())
        },
    );
    let index = client
        .client()
        .get("/v1/kv/parked")
        .ok()
        .and_then(|r| r.header("x-consul-index").map(str::to_owned))
        .expect("an index");
    let pid = client.child.as_ref().expect("running").id();
    // Warm up the agent's allocator and runtime with a few queries first.
    let addr = client.http();
    let park = |n: usize| -> Vec<TcpStream> {
        (0..n)
            .map(|_| {
                let mut stream = TcpStream::connect(&addr).expect("connect");
                write!(
                    stream,
                    "GET /v1/kv/parked?index={index}&wait=5m HTTP/1.1\r\nHost: agent\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n"
                )
                .expect("write");
                stream
            })
            .collect()
    };
    let warm = park(20);
    wait_for(
        Duration::from_secs(10),
        &[&client],
        "the first queries",
        || (metric(&client, "isthmus_blocking_queries_coalesced_total") >= 19.0).then_some(()),
    );
    let (_, before) = memory_kib(pid);
    let parked = park(PARKED);
    wait_for(
        Duration::from_secs(30),
        &[&client],
        "the queries to park",
        || {
            (metric(&client, "isthmus_blocking_queries_coalesced_total") >= (PARKED + 19) as f64)
                .then_some(())
        },
    );
    let (_, during) = memory_kib(pid);
    let per_query = during.saturating_sub(before) as f64 / PARKED as f64;
    eprintln!(
        "{PARKED} parked blocking queries: RSS {before} -> {during} KiB, {per_query:.1} KiB each"
    );
    assert!(
        per_query < 10.0,
        "a parked blocking query costs {per_query:.1} KiB of the client agent's memory"
    );
    assert_eq!(metric(&client, "isthmus_blocking_queries_upstream"), 1.0);
    // Their clients go away: so do the queries, and the one upstream.
    drop(parked);
    drop(warm);
    wait_for(
        Duration::from_secs(10),
        &[&client],
        "the queries to go",
        || {
            (metric(&client, "isthmus_blocking_queries_upstream") == 0.0
                && metric(&client, "isthmus_http_connections") <= 1.0)
                .then_some(())
        },
    );
    // And the agent still answers.
    assert_eq!(
        client.client().get("/v1/kv/parked").expect("read").status,
        200
    );
}
