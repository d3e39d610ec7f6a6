//! Watches on a real agent: `dc-agent watch` as `consul watch` (printing once, or running a
//! handler on every change), and the agent's `watches` block (script and HTTP handlers,
//! replaced on `reload`).

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{cli, wait_until, Cluster};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One HTTP request received by a listener: its head and its body.
fn accept_one(listener: &TcpListener) -> (String, String) {
    let (stream, _) = listener.accept().expect("a request");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
        if line.trim().is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).expect("body");
    use std::io::Write;
    let mut stream = stream;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn watches_run_their_handlers_when_the_data_changes() {
    let mut cluster = Cluster::render_with_clients(154, 1, 1, "");
    let work = tempfile::tempdir().expect("tempdir");
    let event_log = work.path().join("event-watch.log");
    // The agent's own `watches`: an event watch with a script handler (Consul's `args`),
    // and a key watch with an HTTP handler.
    let listener = TcpListener::bind("127.154.0.100:0").expect("a port for the HTTP handler");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let script = format!(
        "cat >> {}; echo >> {}",
        event_log.display(),
        event_log.display()
    );
    cluster.agents[1].edit_config(|config| {
        config["watches"] = serde_json::json!([
            {"type": "event", "name": "deploy", "handler_type": "script", "args": ["/bin/sh", "-c", script]},
            {"type": "key", "key": "app/flag", "handler_type": "http",
             "http_handler_config": {"path": hook, "method": "PUT", "header": {"x-test": ["yes"]}, "timeout": "5s"}}
        ]);
    });
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0]);
    // The client's node and its serfHealth first: the service watch below must only see the
    // service's own changes.
    cluster.wait_for("c1's serfHealth", Duration::from_secs(30), |cl| {
        let text = cl.agents[0].client().get("/v1/health/node/c1").ok()?.text();
        text.contains("serfHealth").then_some(())
    });
    let client = cluster.agents[1].http();
    let server = cluster.agents[0].http();

    // `consul watch` without a handler: the answer once, pretty, then exit.
    let (code, out, err) = cli(&client, &["watch", "-type=key", "-key=app/config"]);
    assert_eq!((code, out.trim()), (0, "null"), "{err}");
    assert_eq!(
        cluster.request(0, "PUT", "/v1/kv/app/config", b"v1").status,
        200
    );
    let (code, out, err) = cli(&client, &["watch", "-type=key", "-key=app/config"]);
    assert_eq!(code, 0, "{err}");
    let entry: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        (entry["Key"].as_str(), entry["Value"].as_str()),
        (Some("app/config"), Some("djE="))
    );
    let (code, _, err) = cli(&client, &["watch", "-type=nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("Unsupported watch type"), "{err}");

    // A service watch with a handler: it runs first, then once per health change, not for
    // writes that do not change the service's health.
    let registered = cluster.request(
        1,
        "PUT",
        "/v1/agent/service/register",
        br#"{"Name": "web", "Port": 80, "Check": {"CheckID": "web-ttl", "TTL": "60s"}}"#,
    );
    assert_eq!(registered.status, 200, "{}", registered.text());
    let runs = work.path().join("service-watch.log");
    let handler = format!(
        "echo \"$CONSUL_INDEX $(cat | tr -d '\\n' | wc -c)\" >> {}",
        runs.display()
    );
    let watcher = Killed(
        Command::new(env!("CARGO_BIN_EXE_dc-agent"))
            .args([
                "watch",
                &format!("-http-addr={client}"),
                "-type=service",
                "-service=web",
                &handler,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watch starts"),
    );
    wait_until("the first run", Duration::from_secs(15), || {
        lines(&runs).len() == 1
    });
    let mut latencies = Vec::new();
    for (n, verb) in ["pass", "fail", "pass"].into_iter().enumerate() {
        let changed = Instant::now();
        let response = cluster.request(1, "PUT", &format!("/v1/agent/check/{verb}/web-ttl"), b"");
        assert_eq!(response.status, 200, "{}", response.text());
        wait_until("a run per health change", Duration::from_secs(15), || {
            lines(&runs).len() == n + 2
        });
        latencies.push(changed.elapsed());
        // Unrelated writes wake nothing.
        cluster.request(0, "PUT", "/v1/kv/unrelated", b"x");
    }
    std::thread::sleep(Duration::from_secs(2));
    let runs = lines(&runs);
    assert_eq!(runs.len(), 4, "{runs:?}");
    let indexes: Vec<u64> = runs
        .iter()
        .map(|l| {
            l.split_whitespace()
                .next()
                .and_then(|i| i.parse().ok())
                .expect("CONSUL_INDEX")
        })
        .collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    println!("service watch handler ran {latencies:?} after each health change");
    drop(watcher);

    // The agent's watches: the event handler gets the event list, the HTTP hook the entry.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..2 {
            let _ = tx.send(accept_one(&listener));
        }
    });
    let (head, body) = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the first HTTP call");
    assert!(head.starts_with("PUT /hook"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-test: yes"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-consul-index:"),
        "{head}"
    );
    assert_eq!(body.trim(), "null");
    assert_eq!(
        cluster.request(0, "PUT", "/v1/kv/app/flag", b"on").status,
        200
    );
    let (_, body) = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the second HTTP call");
    let entry: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(entry["Value"], "b24=");
    let (code, _, err) = cli(&server, &["event", "-name=deploy", "now"]);
    assert_eq!(code, 0, "{err}");
    wait_until("the event handler", Duration::from_secs(15), || {
        lines(&event_log)
            .iter()
            .any(|l| l.contains("\"Name\":\"deploy\""))
    });

    // `reload` replaces the watches: a new key watch writes its own file.
    let reloaded_log = work.path().join("reloaded.log");
    let script = format!("cat >> {}", reloaded_log.display());
    cluster.agents[1].edit_config(|config| {
        config["watches"] = serde_json::json!([
            {"type": "keyprefix", "prefix": "app/", "args": ["/bin/sh", "-c", script]}
        ]);
    });
    let (code, _, err) = cli(&client, &["reload"]);
    assert_eq!(code, 0, "{err}");
    wait_until("the new watch", Duration::from_secs(15), || {
        std::fs::read_to_string(&reloaded_log).is_ok_and(|t| t.contains("app/flag"))
    });
}
