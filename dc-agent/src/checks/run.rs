//! Running one check: HTTP (2xx passing, 429 warning, else critical), TCP (connects or not),
//! script (exit 0 passing, 1 warning, else critical). Every run is bounded by its timeout;
//! a script still running at the timeout (or when its check goes away) is killed with its
//! whole process group. Of a script's output (stdout and stderr as one stream) only the last
//! 4 KiB are kept in memory, as Consul does ("Captured N of M bytes").

use std::collections::BTreeMap;
use std::time::Duration;

use wire::records::HealthStatus;

use super::status::{bound_output, http_status, RunResult, MAX_OUTPUT};

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// An HTTP request.
    Http {
        /// URL.
        url: String,
        /// Method (GET when empty).
        method: String,
        /// Headers.
        headers: BTreeMap<String, Vec<String>>,
        /// Accept any certificate for `https`.
        tls_skip_verify: bool,
    },
    /// A TCP connection.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// A command and its arguments.
    Script {
        /// Program then arguments.
        args: Vec<String>,
    },
}

/// Runs `probe` once, within `timeout`.
pub async fn run(probe: &Probe, timeout: Duration) -> RunResult {
    match probe {
        Probe::Http {
            url,
            method,
            headers,
            tls_skip_verify,
        } => {
            let (url, method, headers, skip) = (
                url.clone(),
                method.clone(),
                headers.clone(),
                *tls_skip_verify,
            );
            match tokio::task::spawn_blocking(move || http(&url, &method, &headers, skip, timeout))
                .await
            {
                Ok(result) => result,
                Err(e) => critical(format!("check task failed: {e}")),
            }
        }
        Probe::Tcp { address } => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address.as_str()))
                .await
            {
                Ok(Ok(_)) => RunResult {
                    status: HealthStatus::Passing,
                    output: format!("TCP connect {address}: Success"),
                },
                Ok(Err(e)) => critical(format!("dial tcp {address}: {e}")),
                Err(_) => critical(format!("dial tcp {address}: i/o timeout after {timeout:?}")),
            }
        }
        Probe::Script { args } => script(args, timeout).await,
    }
}

fn critical(output: String) -> RunResult {
    RunResult {
        status: HealthStatus::Critical,
        output,
    }
}

fn http(
    url: &str,
    method: &str,
    headers: &BTreeMap<String, Vec<String>>,
    skip_verify: bool,
    timeout: Duration,
) -> RunResult {
    let method = if method.is_empty() { "GET" } else { method };
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(skip_verify)
        .build();
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(tls)
        .user_agent("Consul Health Check")
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (name, values) in headers {
        for value in values {
            request = request.header(name.as_str(), value.as_str());
        }
    }
    let request = match request.body(()) {
        Ok(request) => request,
        Err(e) => return critical(format!("invalid HTTP check {method} {url}: {e}")),
    };
    match agent.run(request) {
        Ok(mut response) => {
            let code = response.status();
            // Keep the first bytes of a large body rather than none.
            let mut body = Vec::new();
            let _ = std::io::Read::read_to_end(
                &mut std::io::Read::take(response.body_mut().as_reader(), MAX_OUTPUT as u64),
                &mut body,
            );
            let output = format!(
                "HTTP {method} {url}: {} {} Output: {}",
                code.as_u16(),
                code.canonical_reason().unwrap_or(""),
                String::from_utf8_lossy(&body)
            );
            RunResult {
                status: http_status(code.as_u16()),
                output: bound_output(&output),
            }
        }
        Err(e) => critical(format!("HTTP {method} {url}: {e}")),
    }
}

async fn script(args: &[String], timeout: Duration) -> RunResult {
    let Some((program, rest)) = args.split_first() else {
        return critical("a script check without a command".to_owned());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .kill_on_drop(true)
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return critical(format!("running {program}: {e}")),
    };
    // Kills the group on a timeout, and also when this run is dropped (the check was
    // deregistered or the agent stops) while the script still runs.
    let mut group = GroupKill(child.id().and_then(|pid| i32::try_from(pid).ok()));
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return critical(format!("running {program}: no output pipes"));
    };
    let finished = async {
        let (output, status) = tokio::join!(read_tail(stdout, stderr), child.wait());
        (output, status)
    };
    match tokio::time::timeout(timeout, finished).await {
        Err(_) => {
            drop(group);
            critical(format!("Timed out ({timeout:?}) running check"))
        }
        Ok((_, Err(e))) => critical(format!("running {program}: {e}")),
        Ok(((tail, total), Ok(exit))) => {
            group.disarm();
            let text = String::from_utf8_lossy(&tail);
            let status = match exit.code() {
                Some(0) => HealthStatus::Passing,
                Some(1) => HealthStatus::Warning,
                _ => HealthStatus::Critical,
            };
            let output = if total > tail.len() {
                format!("Captured {} of {total} bytes\n...\n{text}", tail.len())
            } else {
                text.into_owned()
            };
            RunResult { status, output }
        }
    }
}

/// Sends SIGKILL to a process group when dropped, unless disarmed.
struct GroupKill(Option<i32>);

impl GroupKill {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            // SAFETY: signals the process group this check started; no memory involved.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
    }
}

/// Reads stdout and stderr to their ends as one stream (as Consul does), keeping the last
/// [`MAX_OUTPUT`] bytes; returns them and the total length.
async fn read_tail(
    mut stdout: impl tokio::io::AsyncRead + Unpin,
    mut stderr: impl tokio::io::AsyncRead + Unpin,
) -> (Vec<u8>, usize) {
    use tokio::io::AsyncReadExt;
    let mut tail: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let mut keep = |bytes: &[u8]| {
        total = total.saturating_add(bytes.len());
        tail.extend_from_slice(bytes);
        if tail.len() > MAX_OUTPUT {
            tail.drain(..tail.len() - MAX_OUTPUT);
        }
    };
    let (mut out_open, mut err_open) = (true, true);
    let mut out_buffer = [0u8; 8192];
    let mut err_buffer = [0u8; 8192];
    while out_open || err_open {
        tokio::select! {
            read = stdout.read(&mut out_buffer), if out_open => match read {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => keep(&out_buffer[..n]),
            },
            read = stderr.read(&mut err_buffer), if err_open => match read {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => keep(&err_buffer[..n]),
            },
        }
    }
    (tail, total)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A one-shot HTTP server answering `status` to every request; returns its URL.
    fn serve(status: &'static str, body: &'static str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for stream in listener.incoming().take(4).flatten() {
                let mut stream = stream;
                let mut buffer = [0u8; 2048];
                let _ = stream.read(&mut buffer);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{addr}/health")
    }

    fn http_probe(url: String) -> Probe {
        Probe::Http {
            url,
            method: String::new(),
            headers: BTreeMap::new(),
            tls_skip_verify: false,
        }
    }

    #[tokio::test]
    async fn http_checks_read_the_status_code() {
        let second = Duration::from_secs(2);
        let ok = run(&http_probe(serve("200 OK", "fine")), second).await;
        assert_eq!(ok.status, HealthStatus::Passing);
        assert!(
            ok.output.starts_with("HTTP GET http://127.0.0.1:")
                && ok.output.ends_with(": 200 OK Output: fine"),
            "{}",
            ok.output
        );
        assert_eq!(
            run(&http_probe(serve("429 Too Many Requests", "slow")), second)
                .await
                .status,
            HealthStatus::Warning
        );
        assert_eq!(
            run(&http_probe(serve("503 Service Unavailable", "")), second)
                .await
                .status,
            HealthStatus::Critical
        );
        let refused = run(&http_probe("http://127.0.0.1:1/".to_owned()), second).await;
        assert_eq!(refused.status, HealthStatus::Critical);
    }

    #[tokio::test]
    async fn tcp_checks_connect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let open = run(
            &Probe::Tcp {
                address: address.clone(),
            },
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(
            open,
            RunResult {
                status: HealthStatus::Passing,
                output: format!("TCP connect {address}: Success")
            }
        );
        drop(listener);
        assert_eq!(
            run(&Probe::Tcp { address }, Duration::from_secs(2))
                .await
                .status,
            HealthStatus::Critical
        );
    }

    #[tokio::test]
    async fn script_checks_use_the_exit_code_and_time_out() {
        let script = |body: &str| Probe::Script {
            args: vec!["sh".into(), "-c".into(), body.into()],
        };
        let second = Duration::from_secs(2);
        assert_eq!(
            run(&script("echo up"), second).await,
            RunResult {
                status: HealthStatus::Passing,
                output: "up\n".into()
            }
        );
        assert_eq!(
            run(&script("echo degraded >&2; exit 1"), second)
                .await
                .status,
            HealthStatus::Warning
        );
        assert_eq!(
            run(&script("exit 2"), second).await.status,
            HealthStatus::Critical
        );
        let slow = run(&script("sleep 5"), Duration::from_millis(200)).await;
        assert_eq!(slow.status, HealthStatus::Critical);
        assert!(slow.output.starts_with("Timed out"), "{}", slow.output);
    }

    #[tokio::test]
    async fn a_chatty_script_keeps_only_the_start_of_its_output() {
        let probe = Probe::Script {
            args: vec![
                "sh".into(),
                "-c".into(),
                "head -c 10000000 /dev/zero | tr '\\0' x".into(),
            ],
        };
        let result = run(&probe, Duration::from_secs(10)).await;
        assert_eq!(result.status, HealthStatus::Passing);
        assert!(
            result
                .output
                .starts_with("Captured 4096 of 10000000 bytes\n...\nxxxx"),
            "{}",
            &result.output[..80.min(result.output.len())]
        );
        assert!(result.output.len() < MAX_OUTPUT + 100);
    }

    #[tokio::test]
    async fn a_timed_out_script_takes_what_it_started_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let body = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let probe = Probe::Script {
            args: vec!["sh".into(), "-c".into(), body],
        };
        let result = run(&probe, Duration::from_millis(300)).await;
        assert!(result.output.starts_with("Timed out"), "{}", result.output);
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("the script wrote its child's pid")
            .trim()
            .parse()
            .expect("a pid");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // A killed process may linger as a zombie until it is reaped: that is dead too.
        let alive = || {
            // SAFETY: signal 0 only asks whether the process exists.
            let exists = unsafe { libc::kill(pid, 0) } == 0;
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, after) = stat.rsplit_once(')')?;
                    after.trim_start().chars().next()
                })
                == Some('Z');
            exists && !zombie
        };
        while alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "the background sleep {pid} outlived its check"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
