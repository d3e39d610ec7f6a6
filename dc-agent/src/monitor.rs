//! The agent's log lines for `/v1/agent/monitor` (`consul monitor`): a `tracing` layer that
//! formats each event as Consul's log lines (`2026-12-03T10:00:00.000Z [INFO]  agent: msg:
//! key=value`) and hands it to whoever is streaming, at the level each asked for. Nothing is
//! formatted while nobody listens; a slow reader misses lines rather than slowing the agent.

use std::fmt::Write as _;
use std::sync::Arc;

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// One formatted line and its level.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The event's level.
    pub level: Level,
    /// The line, without a newline.
    pub text: String,
}

/// Where log lines go to the monitors (cheap to clone).
#[derive(Debug, Clone)]
pub struct LogStream {
    sender: broadcast::Sender<Arc<LogLine>>,
}

impl Default for LogStream {
    fn default() -> Self {
        LogStream::new()
    }
}

impl LogStream {
    /// A stream keeping up to 512 lines for slow readers.
    pub fn new() -> LogStream {
        let (sender, _) = broadcast::channel(512);
        LogStream { sender }
    }

    /// A new reader of the lines from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogLine>> {
        self.sender.subscribe()
    }

    /// The layer that feeds this stream.
    pub fn layer(&self) -> MonitorLayer {
        MonitorLayer {
            stream: self.clone(),
        }
    }
}

/// Consul's `?loglevel=` (and `-log-level`): `trace`, `debug`, `info`, `warn`, `err` or
/// `error`, any case.
pub fn parse_level(text: &str) -> Option<Level> {
    match text.to_ascii_lowercase().as_str() {
        "trace" => Some(Level::TRACE),
        "debug" => Some(Level::DEBUG),
        "" | "info" => Some(Level::INFO),
        "warn" => Some(Level::WARN),
        "err" | "error" => Some(Level::ERROR),
        _ => None,
    }
}

/// Feeds a [`LogStream`].
pub struct MonitorLayer {
    stream: LogStream,
}

struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if self.stream.sender.receiver_count() == 0 {
            return;
        }
        let mut fields = Fields {
            message: String::new(),
            rest: String::new(),
        };
        event.record(&mut fields);
        let level = *event.metadata().level();
        let tag = match level {
            Level::TRACE => "[TRACE]",
            Level::DEBUG => "[DEBUG]",
            Level::INFO => "[INFO] ",
            Level::WARN => "[WARN] ",
            Level::ERROR => "[ERROR]",
        };
        let now = time::OffsetDateTime::now_utc();
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {tag} agent: {}{}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.millisecond(),
            fields.message,
            if fields.rest.is_empty() {
                String::new()
            } else {
                format!(":{}", fields.rest)
            }
        );
        let _ = self.stream.sender.send(Arc::new(LogLine { level, text }));
    }
}
