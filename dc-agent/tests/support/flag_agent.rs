//! Agents started the way Consul users start theirs: `dc-agent agent` with `consul agent`'s
//! flags, no topology file. Each test picks its own loopback subnet.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dc_agent::client::{ApiClient, ApiResponse};

/// An agent started with `consul agent`'s command line, no topology file, no TLS.
pub struct FlagAgent {
    pub address: String,
    log: PathBuf,
    pub child: Option<Child>,
}

impl FlagAgent {
    /// `dc-agent agent ARGS...`, its output in `dir/<name>.log`.
    pub fn start(dir: &Path, name: &str, address: &str, args: &[&str]) -> FlagAgent {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create log");
        let child = Command::new(env!("CARGO_BIN_EXE_dc-agent"))
            .arg("agent")
            .args(args)
            .stdout(Stdio::from(file.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn dc-agent");
        FlagAgent {
            address: address.to_owned(),
            log,
            child: Some(child),
        }
    }

    /// A server on `address` with data under `dir/<name>`, plus `more` flags.
    pub fn server(dir: &Path, name: &str, address: &str, more: &[&str]) -> FlagAgent {
        let data = dir.join(name).display().to_string();
        let mut args = vec![
            "-server".to_owned(),
            format!("-node={name}"),
            format!("-bind={address}"),
            format!("-client={address}"),
            format!("-data-dir={data}"),
        ];
        args.extend(more.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        FlagAgent::start(dir, name, address, &args)
    }

    pub fn http(&self) -> String {
        format!("{}:8500", self.address)
    }

    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.http(), Duration::from_secs(30))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn request(&self, method: &str, path: &str, body: &str) -> ApiResponse {
        let client = self.client();
        let result = match method {
            "GET" => client.get(path),
            "PUT" => client.put(path, body.as_bytes()),
            "DELETE" => client.delete(path),
            other => panic!("unsupported method {other}"),
        };
        result.unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// Waits until the agent answers with a leader.
    pub fn wait_for_leader(&self, limit: Duration) {
        wait_for(limit, &[self], "a leader", || {
            let response = self.client().get("/v1/status/leader").ok()?;
            let leader = response.json::<String>().ok()?;
            (!leader.is_empty()).then_some(())
        });
    }

    /// Whether the process has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends SIGTERM, as an operator's `kill` or systemd's stop does.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on a pid this test spawned and has not reaped.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
    }

    /// Waits up to `limit` for the process to exit; panics with its log otherwise.
    pub fn wait_exit(&mut self, limit: Duration, why: &str) {
        let deadline = Instant::now() + limit;
        while self.exited().is_none() {
            assert!(Instant::now() < deadline, "{why}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for FlagAgent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits up to `limit` for `condition`; panics with the agents' logs when it never holds.
pub fn wait_for<T>(
    limit: Duration,
    agents: &[&FlagAgent],
    what: &str,
    mut condition: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = agents
                .iter()
                .map(|a| format!("===== {} =====\n{}", a.address, a.log()))
                .collect();
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn json(response: &ApiResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&response.body)))
}

/// Runs the `dc-agent` CLI; its exit code and its stdout and stderr together.
pub fn dc_agent(args: &[&str]) -> (i32, String) {
    output_of(Command::new(env!("CARGO_BIN_EXE_dc-agent")).args(args))
}

/// Runs the `dc-agent` CLI with `env` set and none of the caller's `CONSUL_*` variables.
pub fn dc_agent_env(env: &[(&str, String)], args: &[&str]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dc-agent"));
    for (name, _) in std::env::vars() {
        if name.starts_with("CONSUL_") {
            command.env_remove(name);
        }
    }
    output_of(
        command
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(args),
    )
}

fn output_of(command: &mut Command) -> (i32, String) {
    let output = command.output().expect("run dc-agent");
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}
