//! `lock`: runs a command while holding a lock at a KV prefix, as `consul lock` (Consul's
//! `api.Lock` and `api.Semaphore` layouts, so that `consul lock` and `dc-agent lock` on the
//! same prefix exclude each other).
//!
//! With `-n 1`: a session (TTL 15 s, renewed every 7.5 s) acquires `PREFIX/.lock` (flags
//! [`LOCK_FLAG`]). With `-n N > 1`: each contender acquires `PREFIX/<session>` and takes a
//! slot in `PREFIX/.lock`, a JSON `{"Limit": N, "Holders": {...}}` written with
//! check-and-set (flags [`SEMAPHORE_FLAG`]); holders whose contender key lost its session
//! are pruned. The command runs (through `$SHELL -c`, or directly with `-shell=false`) with
//! `CONSUL_LOCK_HELD=true`, in its own process group; when the lock is lost, or this
//! process is told to stop, the group gets SIGTERM, then SIGKILL after 5 s.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{client_with_timeout, fail};
use crate::client::{encode_key, ApiClient, ApiResponse};

/// `api.LockFlagValue`: marks a key as a lock.
pub const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
/// `api.SemaphoreFlagValue`: marks a semaphore's keys.
pub const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;
/// The session's TTL (Consul's `DefaultLockSessionTTL`).
const SESSION_TTL: Duration = Duration::from_secs(15);
/// How long a blocking read waits (Consul's `DefaultLockWaitTime`).
const WAIT: &str = "15s";
/// Pause before trying again after a refused acquire (Consul's `DefaultLockRetryTime`).
const RETRY: Duration = Duration::from_secs(5);
/// The command's grace between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// What `lock` was asked to do.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// `-n`.
    pub limit: u32,
    /// `-name`.
    pub name: Option<String>,
    /// `-child-exit-code`.
    pub child_exit_code: bool,
    /// `-monitor-retry`.
    pub monitor_retry: u32,
    /// `-shell`.
    pub shell: bool,
    /// `-pass-stdin`.
    pub pass_stdin: bool,
    /// `-timeout` (or `-try`).
    pub timeout: Option<Duration>,
    /// `-verbose`.
    pub verbose: bool,
    /// `-datacenter`.
    pub datacenter: Option<String>,
}

/// Set by SIGINT/SIGTERM/SIGHUP: stop the command and let go.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn catch_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, handler);
        }
    }
}

/// The HTTP side of one lock: the agent, the session and the keys.
struct Locker {
    client: ApiClient,
    dc: Option<String>,
    prefix: String,
    limit: u32,
    session: String,
    verbose: bool,
}

impl Locker {
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

    fn lock_key(&self) -> String {
        format!("{}/.lock", self.prefix.trim_end_matches('/'))
    }

    fn contender_key(&self) -> String {
        format!("{}/{}", self.prefix.trim_end_matches('/'), self.session)
    }

    fn say(&self, what: &str) {
        if self.verbose {
            eprintln!("{what}");
        }
    }

    /// A KV read: the entries (none for a 404) and the index.
    fn read(&self, key: &str, query: &str) -> Result<(Vec<Value>, u64), String> {
        let response = self
            .client
            .get(&self.path(&format!("/v1/kv/{}", encode_key(key)), query))?;
        let index = response
            .header("x-consul-index")
            .and_then(|i| i.parse().ok())
            .unwrap_or(0);
        match response.status {
            200 => Ok((response.json::<Vec<Value>>()?, index)),
            404 => Ok((Vec::new(), index)),
            status => Err(format!(
                "Unexpected response code: {status} ({})",
                response.text()
            )),
        }
    }

    fn put(&self, key: &str, query: &str, body: &[u8]) -> Result<bool, String> {
        let response = self.client.put(
            &self.path(&format!("/v1/kv/{}", encode_key(key)), query),
            body,
        )?;
        ok_bool(&response)
    }

    /// Waits (until `deadline`) for the lock; false when the time ran out or a stop came.
    fn acquire(&self, deadline: Option<Instant>) -> Result<bool, String> {
        if self.limit > 1 {
            return self.acquire_slot(deadline);
        }
        let key = self.lock_key();
        let mut index = 0;
        loop {
            if STOP.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            let query = if index == 0 {
                String::new()
            } else {
                format!("index={index}&wait={WAIT}")
            };
            let (entries, next) = self.read(&key, &query)?;
            index = next;
            if let Some(entry) = entries.first() {
                if entry["Flags"].as_u64() != Some(LOCK_FLAG) {
                    return Err("Existing key does not match lock use".to_owned());
                }
                match entry["Session"].as_str() {
                    Some(holder) if holder == self.session => return Ok(true),
                    Some(_) => continue,
                    None => {}
                }
            }
            let query = format!("acquire={}&flags={LOCK_FLAG}", self.session);
            if self.put(&key, &query, b"")? {
                return Ok(true);
            }
            // Free but refused: the key is in its lock delay.
            self.say("Lock is in its lock delay; trying again");
            pause(RETRY, deadline);
            index = 0;
        }
    }

    /// The semaphore: a contender key, then a slot in `.lock`.
    fn acquire_slot(&self, deadline: Option<Instant>) -> Result<bool, String> {
        let query = format!("acquire={}&flags={SEMAPHORE_FLAG}", self.session);
        if !self.put(&self.contender_key(), &query, b"")? {
            return Err("failed to make contender entry".to_owned());
        }
        let prefix = format!("{}/", self.prefix.trim_end_matches('/'));
        let mut index = 0;
        loop {
            if STOP.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            let query = if index == 0 {
                "recurse".to_owned()
            } else {
                format!("recurse&index={index}&wait={WAIT}")
            };
            let (entries, next) = self.read(&prefix, &query)?;
            index = next;
            let (mut lock, lock_index) = self.semaphore_state(&entries)?;
            if lock.holders.contains_key(&self.session) {
                return Ok(true);
            }
            if lock.holders.len() >= self.limit as usize {
                continue;
            }
            lock.holders.insert(self.session.clone(), true);
            let query = format!("cas={lock_index}&flags={SEMAPHORE_FLAG}");
            if self.put(&self.lock_key(), &query, &lock.to_json())? {
                return Ok(true);
            }
            index = 0;
        }
    }

    /// The `.lock` entry of a semaphore (its holders pruned of dead contenders), and the
    /// index to check-and-set it with.
    fn semaphore_state(&self, entries: &[Value]) -> Result<(SemaphoreLock, u64), String> {
        let lock_key = self.lock_key();
        let live: Vec<&str> = entries
            .iter()
            .filter(|e| e["Key"] != lock_key.as_str() && !e["Session"].is_null())
            .filter_map(|e| e["Session"].as_str())
            .collect();
        let Some(entry) = entries.iter().find(|e| e["Key"] == lock_key.as_str()) else {
            return Ok((SemaphoreLock::new(self.limit), 0));
        };
        if entry["Flags"].as_u64() != Some(SEMAPHORE_FLAG) {
            return Err("Existing key does not match semaphore use".to_owned());
        }
        let mut lock = SemaphoreLock::decode(entry)?;
        if lock.limit != self.limit {
            return Err(format!(
                "semaphore limit conflict (lock: {}, local: {})",
                lock.limit, self.limit
            ));
        }
        lock.holders
            .retain(|holder, _| live.contains(&holder.as_str()));
        Ok((lock, entry["ModifyIndex"].as_u64().unwrap_or(0)))
    }

    /// Whether the lock is still ours (a blocking read from `index`); the new index.
    fn still_held(&self, index: u64) -> Result<(bool, u64), String> {
        let query = format!("index={index}&wait={WAIT}");
        let (entries, next) = self.read(&self.lock_key(), &query)?;
        let held = entries.first().is_some_and(|entry| {
            if self.limit > 1 {
                SemaphoreLock::decode(entry).is_ok_and(|l| l.holders.contains_key(&self.session))
            } else {
                entry["Session"].as_str() == Some(self.session.as_str())
            }
        });
        Ok((held, next))
    }

    /// Lets go: the lock released (the semaphore slot given back), then the session ended.
    fn release(&self) {
        if self.limit > 1 {
            for _ in 0..5 {
                let Ok((entries, _)) = self.read(
                    &format!("{}/", self.prefix.trim_end_matches('/')),
                    "recurse",
                ) else {
                    break;
                };
                let Ok((mut lock, lock_index)) = self.semaphore_state(&entries) else {
                    break;
                };
                if lock.holders.remove(&self.session).is_none() {
                    break;
                }
                let query = format!("cas={lock_index}&flags={SEMAPHORE_FLAG}");
                if self
                    .put(&self.lock_key(), &query, &lock.to_json())
                    .unwrap_or(false)
                {
                    break;
                }
            }
            let _ = self
                .client
                .delete(&self.path(&format!("/v1/kv/{}", encode_key(&self.contender_key())), ""));
        } else {
            let query = format!("release={}&flags={LOCK_FLAG}", self.session);
            let _ = self.put(&self.lock_key(), &query, b"");
            // Consul's `Destroy`: the key goes if nobody took it meanwhile.
            if let Ok((entries, _)) = self.read(&self.lock_key(), "") {
                if let Some(entry) = entries.first().filter(|e| e["Session"].is_null()) {
                    let cas = entry["ModifyIndex"].as_u64().unwrap_or(0);
                    let _ = self.client.delete(&self.path(
                        &format!("/v1/kv/{}", encode_key(&self.lock_key())),
                        &format!("cas={cas}"),
                    ));
                }
            }
        }
        let _ = self.client.put(
            &self.path(&format!("/v1/session/destroy/{}", self.session), ""),
            b"",
        );
    }
}

/// Sleeps `how_long`, or until `deadline` or a stop.
fn pause(how_long: Duration, deadline: Option<Instant>) {
    let until = Instant::now() + how_long;
    let until = deadline.map_or(until, |d| d.min(until));
    while Instant::now() < until && !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ok_bool(response: &ApiResponse) -> Result<bool, String> {
    match (response.status, response.text().trim()) {
        (200, "true") => Ok(true),
        (200, "false") => Ok(false),
        (status, text) => Err(format!("Unexpected response code: {status} ({text})")),
    }
}

/// A semaphore's `.lock` value, in `api.Semaphore`'s JSON.
#[derive(Debug, Clone, PartialEq)]
struct SemaphoreLock {
    limit: u32,
    holders: BTreeMap<String, bool>,
}

impl SemaphoreLock {
    fn new(limit: u32) -> SemaphoreLock {
        SemaphoreLock {
            limit,
            holders: BTreeMap::new(),
        }
    }

    fn decode(entry: &Value) -> Result<SemaphoreLock, String> {
        use base64::Engine;
        let raw = entry["Value"].as_str().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|e| format!("semaphore lock is not base64: {e}"))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("Failed to decode semaphore lock: {e}"))?;
        let limit = value["Limit"]
            .as_u64()
            .and_then(|l| u32::try_from(l).ok())
            .ok_or("Failed to decode semaphore lock: no Limit")?;
        let holders = value["Holders"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_bool().unwrap_or(true)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(SemaphoreLock { limit, holders })
    }

    /// api.Semaphore's JSON, fields in its order.
    fn to_json(&self) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Wire<'a> {
            #[serde(rename = "Limit")]
            limit: u32,
            #[serde(rename = "Holders")]
            holders: &'a BTreeMap<String, bool>,
        }
        serde_json::to_vec(&Wire {
            limit: self.limit,
            holders: &self.holders,
        })
        .unwrap_or_default()
    }
}

/// `lock [options] PREFIX COMMAND...`.
pub fn lock(addr: &str, prefix: &str, command: &[String], options: &LockOptions) -> ExitCode {
    if command.is_empty() {
        return fail("Error! Missing child command");
    }
    if options.limit == 0 {
        return fail("Lock holder limit must be positive");
    }
    catch_signals();
    // Blocking reads wait 15 s: the client waits longer.
    let client = client_with_timeout(addr, Some(Duration::from_secs(30)));
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| format!("Consul lock for '{}' at '{prefix}'", command.join(" ")));
    let body = serde_json::json!({ "Name": name, "TTL": format!("{}s", SESSION_TTL.as_secs()) });
    let mut path = "/v1/session/create".to_owned();
    if let Some(dc) = &options.datacenter {
        path.push_str(&format!("?dc={}", encode_key(dc)));
    }
    let session = match client
        .put(&path, body.to_string().as_bytes())
        .and_then(|r| match r.status {
            200 => r.json::<Value>(),
            status => Err(format!("Unexpected response code: {status} ({})", r.text())),
        }) {
        Ok(answer) => answer["ID"].as_str().unwrap_or_default().to_owned(),
        Err(e) => return fail(format!("Error creating session: {e}")),
    };
    let locker = Arc::new(Locker {
        client,
        dc: options.datacenter.clone(),
        prefix: prefix.trim_start_matches('/').to_owned(),
        limit: options.limit,
        session,
        verbose: options.verbose,
    });
    let lost = Arc::new(AtomicBool::new(false));
    let renewing = spawn_renewer(locker.clone(), lost.clone());
    locker.say("Attempting lock acquisition");
    let deadline = options.timeout.map(|t| Instant::now() + t);
    let code = match locker.acquire(deadline) {
        Ok(true) => {
            locker.say("Lock acquired");
            spawn_monitor(locker.clone(), lost.clone(), options.monitor_retry);
            run_child(command, options, &lost)
        }
        Ok(false) => {
            eprintln!("Shutdown triggered or timeout during lock acquisition");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("Lock acquisition failed: {e}");
            ExitCode::from(1)
        }
    };
    renewing.store(false, Ordering::SeqCst);
    locker.say("Cleaning up lock...");
    locker.release();
    code
}

/// Renews the session every TTL / 2 until told to stop; a session that is gone means the
/// lock is lost. Returns the flag that keeps it going.
fn spawn_renewer(locker: Arc<Locker>, lost: Arc<AtomicBool>) -> Arc<AtomicBool> {
    let running = Arc::new(AtomicBool::new(true));
    let keep = running.clone();
    std::thread::spawn(move || {
        let mut next = Instant::now() + SESSION_TTL / 2;
        while keep.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            if Instant::now() < next {
                continue;
            }
            next = Instant::now() + SESSION_TTL / 2;
            let path = locker.path(&format!("/v1/session/renew/{}", locker.session), "");
            if let Ok(response) = locker.client.put(&path, b"") {
                if response.status == 404 {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    });
    running
}

/// Watches the lock; marks it lost when it is no longer ours, or after `retries` errors
/// in a row (1 s apart).
fn spawn_monitor(locker: Arc<Locker>, lost: Arc<AtomicBool>, retries: u32) {
    std::thread::spawn(move || {
        let mut index = 0;
        let mut errors = 0;
        while !lost.load(Ordering::SeqCst) && !STOP.load(Ordering::SeqCst) {
            match locker.still_held(index) {
                Ok((true, next)) => {
                    errors = 0;
                    index = next;
                }
                Ok((false, _)) => break,
                Err(e) => {
                    errors += 1;
                    if errors > retries {
                        eprintln!("Error monitoring lock: {e}");
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        lost.store(true, Ordering::SeqCst);
    });
}

/// Runs the command until it exits, the lock is lost or a stop comes.
fn run_child(command: &[String], options: &LockOptions, lost: &AtomicBool) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let mut child = if options.shell {
        let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".to_owned());
        let mut c = std::process::Command::new(shell);
        c.arg("-c").arg(command.join(" "));
        c
    } else {
        let Some((program, args)) = command.split_first() else {
            return fail("Error! Missing child command");
        };
        let mut c = std::process::Command::new(program);
        c.args(args);
        c
    };
    child.env("CONSUL_LOCK_HELD", "true").process_group(0);
    if !options.pass_stdin {
        child.stdin(std::process::Stdio::null());
    }
    let mut child = match child.spawn() {
        Ok(child) => child,
        Err(e) => return fail(format!("Error starting handler: {e}")),
    };
    let pid = i32::try_from(child.id()).unwrap_or(0);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if options.verbose {
                    eprintln!("Child terminated, releasing lock");
                }
                return if status.success() || !options.child_exit_code {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                };
            }
            Ok(None) => {}
            Err(e) => return fail(format!("Error waiting for handler: {e}")),
        }
        let stop = STOP.load(Ordering::SeqCst);
        if lost.load(Ordering::SeqCst) || stop {
            eprintln!(
                "{}",
                if stop {
                    "Shutdown triggered, killing child"
                } else {
                    "Lock lost, killing child"
                }
            );
            terminate(pid, &mut child);
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM to the command's process group, SIGKILL after [`KILL_GRACE`].
fn terminate(pid: i32, child: &mut std::process::Child) {
    if pid > 0 {
        // SAFETY: signals a process group this process started.
        unsafe {
            libc::killpg(pid, libc::SIGTERM);
        }
    }
    let until = Instant::now() + KILL_GRACE;
    while Instant::now() < until {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if pid > 0 {
        // SAFETY: as above.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_semaphore_lock_reads_and_writes_apis_json() {
        use base64::Engine;
        let json = br#"{"Limit":2,"Holders":{"a":true,"b":true}}"#;
        let entry = serde_json::json!({
            "Value": base64::engine::general_purpose::STANDARD.encode(json),
        });
        let lock = SemaphoreLock::decode(&entry).expect("decodes");
        assert_eq!(lock.limit, 2);
        assert_eq!(lock.holders.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(lock.to_json(), json);
    }
}
