//! `dc-agent template`, as consul-template: renders files from the catalog and KV and keeps
//! them current. The language and functions are the `template` crate's; this is the runner:
//!
//! - every query a template uses gets a watcher thread doing blocking reads against the
//!   agent (`?stale` unless `max_stale` is 0), with backoff from 250 ms to 1 min on errors;
//! - a change is rendered once changes stop for `wait.min` (or at `wait.max`), as
//!   consul-template's quiescence; a template with a query still unanswered (or a `key`
//!   that does not exist) is not written, so no empty or partial file is ever written;
//! - a file is written only when its text changed, atomically (a temporary file, fsync,
//!   rename; the mode kept, `perms`, a `.bak` with `backup`), and then its command runs
//!   (`sh -c`, `command_timeout`), its output logged and its status reported;
//! - `-once` renders each template once all its answers are in and exits; `-dry` prints
//!   `> DEST` and the text instead of writing; SIGHUP re-reads the templates; SIGINT and
//!   SIGTERM stop it.
//!
//! Exit codes are consul-template's: 0, 11 (error), 12 (interrupted), 13 (command line),
//! 14 (runner: a template that does not parse or render), 15 (configuration file).

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use template::config::{Config, TemplateConfig, Wait};
use template::{Answers, Dep, Template, Value};

use crate::client::ApiClient;

/// consul-template's exit codes.
pub const EXIT_ERROR: u8 = 11;
/// Stopped by SIGINT or SIGTERM.
pub const EXIT_INTERRUPT: u8 = 12;
/// A bad command line.
pub const EXIT_FLAGS: u8 = 13;
/// A template that does not parse or render.
pub const EXIT_RUNNER: u8 = 14;
/// A bad configuration file.
pub const EXIT_CONFIG: u8 = 15;

/// consul-template's default `max_stale`.
const MAX_STALE: Duration = Duration::from_secs(2);
/// How long a blocking read waits on the server.
const BLOCKING_WAIT: &str = "60s";
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// The shortest time between two reads of a query whose index did not move.
const MIN_POLL: Duration = Duration::from_secs(1);

/// What the command line asked.
#[derive(Debug, Default)]
pub struct Options {
    /// `-template` values.
    pub templates: Vec<String>,
    /// `-config` files.
    pub configs: Vec<PathBuf>,
    /// `-once`.
    pub once: bool,
    /// `-dry`.
    pub dry: bool,
    /// `-wait`.
    pub wait: Option<String>,
    /// `-consul-addr` (default: the CLI's `-http-addr`).
    pub consul_addr: Option<String>,
    /// `-max-stale`.
    pub max_stale: Option<String>,
    /// `-log-level` (default: info; `RUST_LOG` wins).
    pub log_level: Option<String>,
}

impl From<super::args::TemplateArgs> for Options {
    fn from(args: super::args::TemplateArgs) -> Options {
        Options {
            templates: args.template,
            configs: args.config,
            once: args.once,
            dry: args.dry,
            wait: args.wait,
            consul_addr: args.consul_addr,
            max_stale: args.max_stale,
            log_level: args.log_level,
        }
    }
}

/// Set by the signal handler: [`RELOAD`] or [`STOP`] (the higher wins).
static SIGNAL: AtomicU8 = AtomicU8::new(0);
const RELOAD: u8 = 1;
const STOP: u8 = 2;

extern "C" fn on_signal(signal: libc::c_int) {
    let what = if signal == libc::SIGHUP { RELOAD } else { STOP };
    // A stop is never downgraded to a reload.
    let _ = SIGNAL.fetch_max(what, Ordering::SeqCst);
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

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("[ERR] {message}");
    ExitCode::from(code)
}

/// One template being kept current.
struct Job {
    config: TemplateConfig,
    template: Template,
    /// The text last written (or printed), to write only on a change.
    last: Option<String>,
    /// Whether it was rendered whole at least once.
    done: bool,
}

/// What the watchers tell the main loop.
enum Event {
    /// A query's new answer, from the watcher of that generation.
    Answer(Dep, Value, u64),
}

/// A query's watcher thread.
struct Watcher {
    stop: Arc<AtomicBool>,
    /// Which watcher of its query this is: a stopped one's last answer is ignored.
    generation: u64,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The settings that outlive a reload.
struct Settings {
    addr: String,
    token: Option<String>,
    stale: bool,
    /// With `stale`: an answer from a server further behind its leader than this is asked
    /// again of the leader (consul-template's `max_stale`).
    max_stale: Duration,
    wait: Option<Wait>,
    once: bool,
    dry: bool,
}

/// Logs on stderr, as consul-template's.
fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = match level.unwrap_or("info") {
            l if l.eq_ignore_ascii_case("err") => "error",
            l => l,
        };
        tracing_subscriber::EnvFilter::new(level)
    });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(filter)
        .try_init();
}

/// `dc-agent template ...`.
pub fn run(http_addr: &str, options: Options) -> ExitCode {
    init_logging(options.log_level.as_deref());
    let mut config = Config::default();
    for path in &options.configs {
        match read_config(path) {
            Ok(more) => merge(&mut config, more),
            Err(e) => return fail(EXIT_CONFIG, e),
        }
    }
    for flag in &options.templates {
        match TemplateConfig::from_flag(flag) {
            Ok(t) => config.templates.push(t),
            Err(e) => return fail(EXIT_FLAGS, e),
        }
    }
    if config.templates.is_empty() {
        return fail(
            EXIT_FLAGS,
            "no templates given (-template or a config file's template block)",
        );
    }
    let wait = match options.wait.as_deref().map(Wait::parse).transpose() {
        // One runner loop: a template's own `wait` applies to all (the longest one).
        Ok(wait) => wait.or(config.wait).or_else(|| {
            config
                .templates
                .iter()
                .filter_map(|t| t.wait)
                .max_by_key(|w| (w.min, w.max))
        }),
        Err(e) => return fail(EXIT_FLAGS, e),
    };
    let max_stale = match options.max_stale.as_deref() {
        Some(text) => match text.parse::<wire::duration::GoDuration>() {
            Ok(d) => d.0,
            Err(e) => return fail(EXIT_FLAGS, format!("max-stale: {e}")),
        },
        None => config.max_stale.unwrap_or(MAX_STALE),
    };
    let settings = Settings {
        addr: options
            .consul_addr
            .clone()
            .or_else(|| config.address.clone())
            .unwrap_or_else(|| http_addr.to_owned()),
        token: config.token.clone(),
        stale: !max_stale.is_zero(),
        max_stale,
        wait,
        once: options.once,
        dry: options.dry,
    };
    catch_signals();
    let client = client(&settings);
    let Some(local_node) = local_node(&client) else {
        return fail(EXIT_INTERRUPT, "interrupted before the agent answered");
    };
    let mut jobs = match load(&config.templates, &local_node) {
        Ok(jobs) => jobs,
        Err(e) => return fail(EXIT_RUNNER, e),
    };
    let (tx, rx) = mpsc::channel();
    let mut watchers: HashMap<Dep, Watcher> = HashMap::new();
    let mut generation: u64 = 0;
    let mut answers: Answers = HashMap::new();
    loop {
        let answers_now = Arc::new(answers.clone());
        let mut used = BTreeSet::new();
        for job in &mut jobs {
            match render(job, &answers_now, &settings) {
                Ok(deps) => used.extend(deps),
                Err(e) => return fail(EXIT_RUNNER, e),
            }
        }
        // Watch what is used now; stop watching what no template uses any more.
        watchers.retain(|dep, _| used.contains(dep));
        answers.retain(|dep, _| used.contains(dep));
        for dep in used {
            watchers.entry(dep.clone()).or_insert_with(|| {
                generation += 1;
                spawn_watcher(&settings, dep, tx.clone(), generation)
            });
        }
        if settings.once && jobs.iter().all(|j| j.done) {
            return ExitCode::SUCCESS;
        }
        match next_changes(&rx, settings.wait, &watchers, &mut answers) {
            Wake::Changed => {}
            Wake::Stop => return ExitCode::from(EXIT_INTERRUPT),
            Wake::Reload => {
                tracing::info!("reloading the templates");
                match load(&config.templates, &local_node) {
                    Ok(new) => jobs = new,
                    Err(e) => return fail(EXIT_RUNNER, e),
                }
            }
        }
    }
}

fn read_config(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Config::parse(&path.display().to_string(), &text)
}

/// Later files add templates and override settings, as consul-template merges them.
fn merge(config: &mut Config, more: Config) {
    config.templates.extend(more.templates);
    config.address = more.address.or(config.address.take());
    config.token = more.token.or(config.token.take());
    config.wait = more.wait.or(config.wait);
    config.max_stale = more.max_stale.or(config.max_stale);
    config.kill_signal = more.kill_signal.or(config.kill_signal.take());
    config.reload_signal = more.reload_signal.or(config.reload_signal.take());
}

fn client(settings: &Settings) -> ApiClient {
    let client = super::client_with_timeout(&settings.addr, Some(Duration::from_secs(90)));
    match &settings.token {
        Some(token) => client.with_token(Some(token.clone())),
        None => client,
    }
}

/// The agent's node name (what `node` with no argument means), asked until the agent
/// answers; `None` when told to stop first.
fn local_node(client: &ApiClient) -> Option<String> {
    let mut backoff = RETRY_FIRST;
    loop {
        match client.get("/v1/agent/self") {
            Ok(r) if r.status == 200 => {
                let name = r
                    .json::<serde_json::Value>()
                    .ok()
                    .and_then(|v| v["Config"]["NodeName"].as_str().map(str::to_owned));
                if let Some(name) = name {
                    return Some(name);
                }
            }
            Ok(r) => tracing::warn!(status = r.status, "the agent refused /v1/agent/self"),
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "the agent did not answer"),
        }
        if SIGNAL.load(Ordering::SeqCst) == STOP {
            return None;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// Reads and parses every template.
fn load(configs: &[TemplateConfig], local_node: &str) -> Result<Vec<Job>, String> {
    configs
        .iter()
        .map(|config| {
            let source = std::fs::read_to_string(&config.source)
                .map_err(|e| format!("{}: {e}", config.source.display()))?;
            let name = config.source.display().to_string();
            let delims = config
                .delims
                .as_ref()
                .map(|(l, r)| (l.as_str(), r.as_str()));
            let template =
                Template::parse(&name, &source, delims, local_node).map_err(|e| e.to_string())?;
            Ok(Job {
                config: config.clone(),
                template,
                last: None,
                done: false,
            })
        })
        .collect()
}

/// Renders one job; writes it (and runs its command) when whole and changed. Returns the
/// queries it used.
fn render(
    job: &mut Job,
    answers: &Arc<Answers>,
    settings: &Settings,
) -> Result<BTreeSet<Dep>, String> {
    let rendered = job.template.render(answers).map_err(|e| e.to_string())?;
    if !rendered.complete() {
        tracing::debug!(template = %job.config.source.display(), missing = rendered.missing.len(), "waiting for answers");
        return Ok(rendered.used);
    }
    job.done = true;
    if job.last.as_deref() == Some(rendered.text.as_str()) {
        return Ok(rendered.used);
    }
    let destination = job.config.destination.clone();
    match (&destination, settings.dry) {
        (Some(dest), false) => {
            let unchanged = std::fs::read_to_string(dest).is_ok_and(|old| old == rendered.text);
            if !unchanged {
                write_atomically(dest, &rendered.text, job.config.perms, job.config.backup)
                    .map_err(|e| format!("writing {}: {e}", dest.display()))?;
                tracing::info!(template = %job.config.source.display(), destination = %dest.display(), "rendered");
                if let Some(command) = &job.config.command {
                    run_command(command, job.config.command_timeout);
                }
            }
        }
        (dest, _) => {
            let mut out = std::io::stdout().lock();
            let name = dest
                .as_ref()
                .map_or_else(|| "stdout".to_owned(), |d| d.display().to_string());
            let _ = write!(out, "> {name}\n{}", rendered.text);
            let _ = out.flush();
        }
    }
    job.last = Some(rendered.text);
    Ok(rendered.used)
}

/// Writes `text` to `dest` through a temporary file in the same directory, an fsync and a
/// rename: readers see the old file or the new one, never a part. The mode is `perms`,
/// else the old file's, else 0644; `backup` keeps the old file as `DEST.bak`.
fn write_atomically(
    dest: &Path,
    text: &str,
    perms: Option<u32>,
    backup: bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let old_mode = std::fs::metadata(dest)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777);
    let mode = perms.or(old_mode).unwrap_or(0o644);
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        if backup && old_mode.is_some() {
            std::fs::copy(dest, dir.join(format!("{file_name}.bak")))?;
        }
        std::fs::rename(&temp, dest)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Runs `command` through `sh -c`, at most `timeout`; logs its output and its status.
fn run_command(command: &str, timeout: Duration) {
    use std::os::unix::process::CommandExt;
    // Its own process group: on a timeout the command and whatever it started are killed.
    let child = std::process::Command::new("sh")
        .args(["-c", command])
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(command, error = %e, "the command could not start");
            return;
        }
    };
    // The output arrives on a channel: a background process the command left holding its
    // pipes must not hold the runner up.
    let (out_tx, out_rx) = mpsc::channel::<String>();
    let streams = crate::exec::take_outputs(&mut child);
    let expected = streams.len();
    for mut stream in streams {
        let out_tx = out_tx.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            let _ = out_tx.send(text);
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                // SAFETY: signals the process group this function started.
                unsafe {
                    libc::killpg(child.id() as i32, libc::SIGKILL);
                }
                let _ = child.wait();
                break None;
            }
        }
    };
    let until = Instant::now() + Duration::from_secs(1);
    for _ in 0..expected {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(text) = out_rx.recv_timeout(left) else {
            break;
        };
        for line in text.lines() {
            tracing::info!(command, "{line}");
        }
    }
    match status {
        Some(status) if status.success() => tracing::info!(command, "the command succeeded"),
        Some(status) => tracing::error!(command, %status, "the command failed"),
        None => tracing::error!(command, ?timeout, "the command timed out and was killed"),
    }
}

/// A thread keeping `dep`'s answer current with blocking reads; each new answer goes to
/// `tx`. It ends when its [`Watcher`] is dropped or the main loop is gone.
fn spawn_watcher(settings: &Settings, dep: Dep, tx: Sender<Event>, generation: u64) -> Watcher {
    let stop = Arc::new(AtomicBool::new(false));
    let (client, stale, flag) = (client(settings), settings.stale, stop.clone());
    let max_stale = settings.max_stale;
    std::thread::spawn(move || {
        let mut path = dep.path(stale);
        let mut index: u64 = 0;
        let mut last: Option<Value> = None;
        let mut backoff = RETRY_FIRST;
        while !flag.load(Ordering::SeqCst) {
            let separator = if path.contains('?') { '&' } else { '?' };
            let url = if index == 0 {
                path.clone()
            } else {
                format!("{path}{separator}index={index}&wait={BLOCKING_WAIT}")
            };
            let asked = Instant::now();
            let answer = client.get(&url).and_then(|r| {
                let value = dep.decode(r.status, &r.body)?;
                let contact = r
                    .header("x-consul-lastcontact")
                    .and_then(|c| c.parse::<u64>().ok())
                    .map(Duration::from_millis);
                Ok((
                    r.header("x-consul-index")
                        .and_then(|i| i.parse::<u64>().ok()),
                    value,
                    contact,
                ))
            });
            // A server too far behind its leader: this answer is not taken, the next read
            // goes to the leader (and later ones to any server again).
            let answer = match answer {
                Ok((_, _, Some(contact)))
                    if stale && contact > max_stale && path != dep.path(false) =>
                {
                    tracing::debug!(query = %path, ?contact, "answer older than max_stale; asking the leader");
                    path = dep.path(false);
                    continue;
                }
                Ok((new_index, value, _)) => {
                    path = dep.path(stale);
                    Ok((new_index, value))
                }
                Err(e) => Err(e),
            };
            let (new_index, value) = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::warn!(query = %path, error = %e, retry_in = ?backoff, "query failed");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                    continue;
                }
            };
            backoff = RETRY_FIRST;
            let new_index = new_index.unwrap_or(0);
            // An answer that did not block (an endpoint with no index, as the datacenter
            // list, or one that ignores it) is asked again at most once a second.
            if new_index <= index || new_index == 0 {
                std::thread::sleep(MIN_POLL.saturating_sub(asked.elapsed()));
            }
            // An index that went back (a restore, a rebuilt datacenter): start over.
            index = if new_index < index { 0 } else { new_index };
            if last.as_ref() == Some(&value) {
                continue;
            }
            last = Some(value.clone());
            let event = Event::Answer(dep.clone(), value, generation);
            if flag.load(Ordering::SeqCst) || tx.send(event).is_err() {
                return;
            }
        }
    });
    Watcher { stop, generation }
}

/// Why the main loop woke.
enum Wake {
    Changed,
    Stop,
    Reload,
}

/// Waits for the next answers and takes them into `answers`; with `wait`, keeps taking
/// them until none came for `wait.min` or `wait.max` passed since the first.
fn next_changes(
    rx: &Receiver<Event>,
    wait: Option<Wait>,
    watchers: &HashMap<Dep, Watcher>,
    answers: &mut Answers,
) -> Wake {
    let tick = Duration::from_millis(100);
    // An answer counts only from the current watcher of its query.
    let mut take = |Event::Answer(dep, value, generation): Event| {
        let current = watchers
            .get(&dep)
            .is_some_and(|w| w.generation == generation);
        if current {
            answers.insert(dep, value);
        }
        current
    };
    let signal = || match SIGNAL.swap(0, Ordering::SeqCst) {
        STOP => Some(Wake::Stop),
        RELOAD => Some(Wake::Reload),
        _ => None,
    };
    loop {
        if let Some(wake) = signal() {
            return wake;
        }
        match rx.recv_timeout(tick) {
            Ok(event) => {
                if take(event) {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Wake::Stop,
        }
    }
    let Some(wait) = wait else {
        // Take what else already arrived, then render.
        while let Ok(event) = rx.try_recv() {
            take(event);
        }
        return Wake::Changed;
    };
    let first = Instant::now();
    let mut quiet_until = first + wait.min;
    loop {
        let now = Instant::now();
        let until = quiet_until.min(first + wait.max);
        if now >= until {
            return Wake::Changed;
        }
        if let Some(wake) = signal() {
            return wake;
        }
        match rx.recv_timeout((until - now).min(tick)) {
            Ok(event) => {
                if take(event) {
                    quiet_until = Instant::now() + wait.min;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Wake::Stop,
        }
    }
}
