//! `exec`: runs a command on the agents of a datacenter, as `consul exec` (see
//! `crate::exec` for the agents' side; they run it only with `disable_remote_exec = false`).

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{client_with_timeout, fail};
use crate::client::{encode_key, ApiClient};
use crate::exec::{ExecEvent, ExecSpec, EVENT};

/// What `exec` was asked to do.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// `-node`, `-service`, `-tag` (regular expressions).
    pub node: Option<String>,
    /// `-service`.
    pub service: Option<String>,
    /// `-tag`.
    pub tag: Option<String>,
    /// `-wait`: how long without news before it is done.
    pub wait: Duration,
    /// `-wait-repl`: a pause for the job to replicate before the event.
    pub wait_repl: Duration,
    /// `-prefix`.
    pub prefix: String,
    /// `-shell`.
    pub shell: bool,
    /// `-datacenter`.
    pub datacenter: Option<String>,
    /// `-verbose`.
    pub verbose: bool,
}

struct Job {
    client: ApiClient,
    dc: Option<String>,
    prefix: String,
    session: String,
}

impl Job {
    fn path(&self, path: &str, query: &str) -> String {
        let mut q: Vec<String> = Vec::new();
        if !query.is_empty() {
            q.push(query.to_owned());
        }
        if let Some(dc) = &self.dc {
            q.push(format!("dc={}", encode_key(dc)));
        }
        if q.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", q.join("&"))
        }
    }

    fn dir(&self) -> String {
        format!("{}/{}/", self.prefix, self.session)
    }

    fn cleanup(&self) {
        let _ = self.client.put(
            &self.path(&format!("/v1/session/destroy/{}", self.session), ""),
            b"",
        );
        let _ = self
            .client
            .delete(&self.path(&format!("/v1/kv/{}", encode_key(&self.dir())), "recurse"));
    }
}

/// `exec [options] COMMAND...`.
pub fn exec(addr: &str, command: &[String], options: &ExecOptions) -> ExitCode {
    if command.is_empty() {
        return fail("Must specify a command to execute");
    }
    let client = client_with_timeout(addr, Some(Duration::from_secs(30)));
    let local = client
        .get("/v1/agent/self")
        .ok()
        .and_then(|r| r.json::<Value>().ok())
        .and_then(|v| v["Config"]["NodeName"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    let dc = options.datacenter.clone();
    let session_body = serde_json::json!({
        "Name": format!("Remote Exec via {local}"),
        "Behavior": "delete",
        "TTL": "15s",
    });
    let mut create = "/v1/session/create".to_owned();
    if let Some(dc) = &dc {
        create.push_str(&format!("?dc={}", encode_key(dc)));
    }
    let session = match client.put(&create, session_body.to_string().as_bytes()) {
        Ok(r) if r.status == 200 => r
            .json::<Value>()
            .ok()
            .and_then(|v| v["ID"].as_str().map(str::to_owned))
            .unwrap_or_default(),
        Ok(r) => return fail(format!("Failed to create session: {}", r.text().trim())),
        Err(e) => return fail(format!("Failed to create session: {e}")),
    };
    let job = Arc::new(Job {
        client,
        dc,
        prefix: options.prefix.trim_matches('/').to_owned(),
        session,
    });
    let done = Arc::new(AtomicBool::new(false));
    renew(job.clone(), done.clone());
    let code = run(&job, command, options);
    done.store(true, Ordering::SeqCst);
    job.cleanup();
    code
}

/// Renews the job's session every 5 s until `done`.
fn renew(job: Arc<Job>, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut next = Instant::now() + Duration::from_secs(5);
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            if Instant::now() >= next {
                next = Instant::now() + Duration::from_secs(5);
                let path = job.path(&format!("/v1/session/renew/{}", job.session), "");
                let _ = job.client.put(&path, b"");
            }
        }
    });
}

fn run(job: &Job, command: &[String], options: &ExecOptions) -> ExitCode {
    let spec = ExecSpec {
        command: if options.shell {
            command.join(" ")
        } else {
            String::new()
        },
        args: (!options.shell).then(|| command.to_vec()),
        script: Vec::new(),
        wait: u64::try_from(options.wait.as_nanos()).unwrap_or(u64::MAX),
    };
    let Ok(body) = serde_json::to_vec(&spec) else {
        return fail("Failed to encode job");
    };
    let key = format!("{}job", job.dir());
    let path = job.path(
        &format!("/v1/kv/{}", encode_key(&key)),
        &format!("acquire={}", job.session),
    );
    match job.client.put(&path, &body) {
        Ok(r) if r.text().trim() == "true" => {}
        Ok(r) => return fail(format!("Failed to upload job: {}", r.text().trim())),
        Err(e) => return fail(format!("Failed to upload job: {e}")),
    }
    std::thread::sleep(options.wait_repl);
    let event = ExecEvent {
        prefix: job.prefix.clone(),
        session: job.session.clone(),
    };
    let mut query = Vec::new();
    for (name, value) in [
        ("node", &options.node),
        ("service", &options.service),
        ("tag", &options.tag),
    ] {
        if let Some(value) = value {
            query.push(format!("{name}={}", encode_key(value)));
        }
    }
    let fire = job.path(&format!("/v1/event/fire/{EVENT}"), &query.join("&"));
    match job
        .client
        .put(&fire, &serde_json::to_vec(&event).unwrap_or_default())
    {
        Ok(r) if r.status == 200 => {}
        Ok(r) => return fail(format!("Failed to fire event: {}", r.text().trim())),
        Err(e) => return fail(format!("Failed to fire event: {e}")),
    }
    let started = Instant::now();
    let (acks, exits, bad) = stream(job, options);
    println!("{exits} / {acks} node(s) completed / acknowledged");
    if options.verbose {
        println!(
            "Completed in {:.2} seconds",
            started.elapsed().as_secs_f64()
        );
    }
    if bad > 0 || exits < acks {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints what the agents write as it comes, until nothing new came for `-wait`: how many
/// acknowledged, how many finished, how many failed.
fn stream(job: &Job, options: &ExecOptions) -> (usize, usize, usize) {
    let dir = job.dir();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let (mut acks, mut exits, mut bad) = (0, 0, 0);
    let mut index = 0u64;
    let mut last_news = Instant::now();
    while last_news.elapsed() < options.wait {
        let remaining = options.wait.saturating_sub(last_news.elapsed());
        let wait_ms = remaining.as_millis().max(100);
        let query = format!("recurse&index={index}&wait={wait_ms}ms");
        let Ok(response) = job
            .client
            .get(&job.path(&format!("/v1/kv/{}", encode_key(&dir)), &query))
        else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        index = response
            .header("x-consul-index")
            .and_then(|i| i.parse().ok())
            .unwrap_or(index);
        let entries: Vec<wire::api::KvPair> = response.json().unwrap_or_default();
        for entry in entries {
            if !seen.insert(entry.key.clone()) {
                continue;
            }
            let rest = entry.key.strip_prefix(&dir).unwrap_or(&entry.key);
            let Some((node, what)) = rest.split_once('/') else {
                continue;
            };
            last_news = Instant::now();
            if what == "ack" {
                acks += 1;
                if options.verbose {
                    println!("    Node {node}: acknowledged");
                }
            } else if what == "exit" {
                exits += 1;
                let code: i64 = String::from_utf8_lossy(&entry.value)
                    .trim()
                    .parse()
                    .unwrap_or(1);
                if code != 0 {
                    bad += 1;
                }
                println!("==> {node}: finished with exit code {code}");
            } else if what.starts_with("out/") {
                if entry.value.is_empty() {
                    if options.verbose {
                        println!("    Node {node}: heartbeat");
                    }
                    continue;
                }
                for line in String::from_utf8_lossy(&entry.value).lines() {
                    println!("    {node}: {line}");
                }
            }
        }
    }
    (acks, exits, bad)
}
