//! Remote execution, as Consul's `exec` (off unless `disable_remote_exec = false`): the
//! `exec` CLI writes a job under `_rexec/<session>/job` and fires the `_rexec` user event;
//! each agent the event is for (and that allows it) reads the job, acknowledges it, runs
//! the command and writes its output in chunks and its exit code, each key acquired with
//! the job's session (`delete` behavior: ending the session removes them all). Consul's key
//! layout and JSON, so either side could be Consul's.

use std::io::Read;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::{encode_key, ApiClient};

/// The user event that announces a job.
pub const EVENT: &str = "_rexec";
/// Output is written in chunks of this size...
const CHUNK: usize = 4 * 1024;
/// ...or after this long without more.
const CHUNK_IDLE: Duration = Duration::from_millis(500);

/// The event's payload (Consul's `remoteExecEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecEvent {
    /// The KV prefix (`_rexec`).
    pub prefix: String,
    /// The job's session.
    pub session: String,
}

/// The job (Consul's `remoteExecSpec`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecSpec {
    /// A command line for the shell.
    pub command: String,
    /// Or a program and its arguments.
    pub args: Option<Vec<String>>,
    /// Or a script (base64 in JSON, as Go's `[]byte`).
    #[serde(with = "wire::api::base64_bytes")]
    pub script: Vec<u8>,
    /// Write an empty output chunk after this long without output (nanoseconds).
    pub wait: u64,
}

/// Runs a job announced by an `_rexec` event, against this agent's HTTP API; every failure
/// is logged (as Consul's handler does).
pub fn handle(client: &ApiClient, node: &str, payload: &[u8]) {
    let Ok(event) = serde_json::from_slice::<ExecEvent>(payload) else {
        tracing::warn!("failed to decode a remote exec event");
        return;
    };
    let job_key = format!("{}/{}/job", event.prefix, event.session);
    let spec = ["?stale", ""].iter().find_map(|query| {
        let response = client
            .get(&format!("/v1/kv/{}{query}", encode_key(&job_key)))
            .ok()?;
        let entries: Vec<wire::api::KvPair> = response.json().ok()?;
        serde_json::from_slice::<ExecSpec>(&entries.first()?.value).ok()
    });
    let Some(spec) = spec else {
        tracing::warn!(job = %job_key, "remote exec aborted: the job is missing");
        return;
    };
    let write = |suffix: &str, value: &[u8]| -> bool {
        let key = format!("{}/{}/{node}/{suffix}", event.prefix, event.session);
        let path = format!("/v1/kv/{}?acquire={}", encode_key(&key), event.session);
        match client.put(&path, value) {
            Ok(r) if r.text().trim() == "true" => true,
            Ok(r) => {
                tracing::warn!(key = %key, answer = %r.text(), "remote exec could not write");
                false
            }
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "remote exec could not write");
                false
            }
        }
    };
    if !write("ack", b"") {
        return;
    }
    tracing::info!(command = %spec.command, "remote exec");
    let code = run(&spec, &mut |n, chunk| write(&format!("out/{n:05x}"), chunk));
    write("exit", code.to_string().as_bytes());
}

/// Runs the job, handing its output (stdout and stderr, as they come) to `out` in chunks;
/// returns the exit code (255 when it could not run, or output could not be written).
fn run(spec: &ExecSpec, out: &mut dyn FnMut(usize, &[u8]) -> bool) -> i32 {
    use std::process::{Command, Stdio};
    let script = tempfile::NamedTempFile::new().ok();
    let mut command = match (&spec.args, spec.script.is_empty(), &script) {
        (Some(args), _, _) if !args.is_empty() => {
            let mut c = Command::new(&args[0]);
            c.args(&args[1..]);
            c
        }
        (_, false, Some(file)) => {
            if std::fs::write(file.path(), &spec.script).is_err() {
                return 255;
            }
            let mut c = Command::new("/bin/sh");
            c.arg(file.path());
            c
        }
        _ => {
            let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".to_owned());
            let mut c = Command::new(shell);
            c.arg("-c").arg(&spec.command);
            c
        }
    };
    let mut child = match command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(error = %e, "remote exec could not start");
            return 255;
        }
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let readers: Vec<_> = take_outputs(&mut child)
        .into_iter()
        .map(|mut stream| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let heartbeat = Duration::from_nanos(spec.wait.max(1_000_000_000));
    let mut pending: Vec<u8> = Vec::new();
    let mut chunks = 0;
    let mut last_write = Instant::now();
    let mut failed = false;
    loop {
        match rx.recv_timeout(CHUNK_IDLE) {
            Ok(bytes) => pending.extend_from_slice(&bytes),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let idle = last_write.elapsed();
        let due = pending.len() >= CHUNK
            || (!pending.is_empty() && idle >= CHUNK_IDLE)
            || idle >= heartbeat;
        if due && !failed {
            let take = pending.len().min(CHUNK);
            let chunk: Vec<u8> = pending.drain(..take).collect();
            failed = !out(chunks, &chunk);
            chunks += 1;
            last_write = Instant::now();
        }
    }
    while !pending.is_empty() && !failed {
        let take = pending.len().min(CHUNK);
        let chunk: Vec<u8> = pending.drain(..take).collect();
        failed = !out(chunks, &chunk);
        chunks += 1;
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait();
    if failed {
        return 255;
    }
    match status {
        Ok(status) => status.code().unwrap_or(1),
        Err(_) => 1,
    }
}

/// A child's piped stdout and stderr, to read on threads of their own.
pub(crate) fn take_outputs(child: &mut std::process::Child) -> Vec<Box<dyn Read + Send>> {
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    stdout.into_iter().chain(stderr).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_and_event_read_as_consul_writes_them() {
        let spec: ExecSpec = serde_json::from_str(
            r#"{"Command":"uptime","Args":null,"Script":null,"Wait":2000000000}"#,
        )
        .expect("Consul's job");
        assert_eq!(
            (spec.command.as_str(), spec.wait),
            ("uptime", 2_000_000_000)
        );
        let event: ExecEvent =
            serde_json::from_str(r#"{"Prefix":"_rexec","Session":"s"}"#).expect("event");
        assert_eq!(event.prefix, "_rexec");
    }

    #[test]
    fn output_comes_in_order_with_the_exit_code() {
        let spec = ExecSpec {
            command: "echo one; echo two >&2; exit 3".into(),
            wait: 2_000_000_000,
            ..ExecSpec::default()
        };
        let mut chunks = Vec::new();
        let code = run(&spec, &mut |n, chunk| {
            chunks.push((n, String::from_utf8_lossy(chunk).into_owned()));
            true
        });
        assert_eq!(code, 3);
        let all: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
        assert!(all.contains("one\n") && all.contains("two\n"), "{all}");
        assert!(chunks.iter().enumerate().all(|(i, (n, _))| i == *n));
    }
}
