//! consul-template's command line values and configuration file: `-template
//! "in:out[:command]"`, `-wait=min[:max]`, and the HCL (or JSON) file with `consul {
//! address, token }`, `template { ... }` blocks, `wait`, `max_stale`, `kill_signal` and
//! `reload_signal`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value as Json;
use wire::duration::GoDuration;

/// consul-template's quiescence: render once changes stop for `min`, or at the latest
/// `max` after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Quiet time.
    pub min: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Wait {
    /// `-wait=5s` (max 4 x min, as consul-template) or `-wait=5s:20s`.
    pub fn parse(text: &str) -> Result<Wait, String> {
        let duration = |t: &str| -> Result<Duration, String> {
            t.trim()
                .parse::<GoDuration>()
                .map(|d| d.0)
                .map_err(|e| format!("wait: {t:?}: {e}"))
        };
        let (min, max) = match text.split_once(':') {
            Some((min, max)) => (duration(min)?, duration(max)?),
            None => {
                let min = duration(text)?;
                (min, min * 4)
            }
        };
        if max < min {
            return Err(format!("wait: max ({max:?}) is less than min ({min:?})"));
        }
        Ok(Wait { min, max })
    }
}

/// One template: where it comes from, where it goes, and what runs after.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateConfig {
    /// The template file.
    pub source: PathBuf,
    /// The rendered file (`None`: printed, as with `-dry`).
    pub destination: Option<PathBuf>,
    /// Run through `sh -c` after the file changed.
    pub command: Option<String>,
    /// How long the command may run (consul-template: 30s).
    pub command_timeout: Duration,
    /// The file's mode (default: kept, or 0644 for a new file).
    pub perms: Option<u32>,
    /// Keep the previous file as `DEST.bak`.
    pub backup: bool,
    /// `left_delimiter`, `right_delimiter`.
    pub delims: Option<(String, String)>,
    /// This template's own quiescence.
    pub wait: Option<Wait>,
}

/// consul-template's default command timeout.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl TemplateConfig {
    /// `-template "in.ctmpl:out.conf[:command]"` (the command may hold colons).
    pub fn from_flag(text: &str) -> Result<TemplateConfig, String> {
        let mut parts = text.splitn(3, ':');
        let source = parts.next().filter(|s| !s.is_empty()).ok_or_else(|| {
            format!("template: {text:?}: expected \"source:destination[:command]\"")
        })?;
        let destination = parts.next().filter(|s| !s.is_empty()).map(PathBuf::from);
        let command = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
        Ok(TemplateConfig {
            source: PathBuf::from(source),
            destination,
            command,
            command_timeout: COMMAND_TIMEOUT,
            ..TemplateConfig::default()
        })
    }
}

/// The configuration file's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `consul { address }`.
    pub address: Option<String>,
    /// `consul { token }`.
    pub token: Option<String>,
    /// `template { ... }` blocks.
    pub templates: Vec<TemplateConfig>,
    /// `wait { min max }` (or `wait = "5s:10s"`).
    pub wait: Option<Wait>,
    /// `max_stale`: how old an answer any server may give (0: only the leader's).
    pub max_stale: Option<Duration>,
    /// `kill_signal`: what stops a child command.
    pub kill_signal: Option<String>,
    /// `reload_signal`: what reloads the templates.
    pub reload_signal: Option<String>,
}

fn duration(value: &Json, field: &str) -> Result<Duration, String> {
    match value {
        Json::String(s) => s
            .parse::<GoDuration>()
            .map(|d| d.0)
            .map_err(|e| format!("{field}: {s:?}: {e}")),
        Json::Number(n) => n
            .as_u64()
            .map(Duration::from_nanos)
            .ok_or_else(|| format!("{field}: {n} is not a duration")),
        other => Err(format!("{field}: {other} is not a duration")),
    }
}

fn wait(value: &Json) -> Result<Wait, String> {
    match value {
        Json::String(s) => Wait::parse(s),
        Json::Object(o) => {
            let min = o.get("min").map(|v| duration(v, "wait.min")).transpose()?;
            let max = o.get("max").map(|v| duration(v, "wait.max")).transpose()?;
            match (min, max) {
                (Some(min), Some(max)) if max >= min => Ok(Wait { min, max }),
                (Some(min), None) => Ok(Wait { min, max: min * 4 }),
                (Some(_), Some(_)) => Err("wait: max is less than min".to_owned()),
                (None, _) => Err("wait: min is missing".to_owned()),
            }
        }
        other => Err(format!("wait: {other} is not a wait")),
    }
}

/// A block that may be written once (an object) or several times (a list of objects).
fn blocks(value: Option<&Json>) -> Vec<&serde_json::Map<String, Json>> {
    match value {
        Some(Json::Object(o)) => vec![o],
        Some(Json::Array(items)) => items.iter().filter_map(Json::as_object).collect(),
        _ => Vec::new(),
    }
}

fn text(value: &Json, field: &str) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{field}: {value} is not a string"))
}

fn template_block(t: &serde_json::Map<String, Json>) -> Result<TemplateConfig, String> {
    let mut config = TemplateConfig {
        command_timeout: COMMAND_TIMEOUT,
        ..TemplateConfig::default()
    };
    for (key, value) in t {
        match key.as_str() {
            "source" => config.source = PathBuf::from(text(value, "template.source")?),
            "destination" => {
                config.destination = Some(PathBuf::from(text(value, "template.destination")?))
            }
            "command" => {
                config.command = Some(match value {
                    // consul-template runs a list as the command and its arguments.
                    Json::Array(parts) => parts
                        .iter()
                        .map(|p| text(p, "template.command"))
                        .collect::<Result<Vec<_>, _>>()?
                        .join(" "),
                    other => text(other, "template.command")?,
                })
            }
            "command_timeout" => {
                config.command_timeout = duration(value, "template.command_timeout")?
            }
            "perms" => {
                config.perms = Some(match value {
                    Json::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
                        .map_err(|_| format!("template.perms: {s:?} is not an octal mode"))?,
                    // `perms = 0600` as consul-template's HCL reads it (octal); HCL 2 and
                    // JSON give 600, whose digits are read as octal again.
                    Json::Number(n) => {
                        let digits = n.to_string();
                        if digits.chars().all(|c| ('0'..='7').contains(&c)) {
                            u32::from_str_radix(&digits, 8).ok()
                        } else {
                            n.as_u64().and_then(|n| u32::try_from(n).ok())
                        }
                        .filter(|mode| *mode <= 0o7777)
                        .ok_or_else(|| format!("template.perms: {n} is not a mode"))?
                    }
                    other => return Err(format!("template.perms: {other} is not a mode")),
                })
            }
            "backup" => config.backup = value.as_bool().unwrap_or(false),
            "left_delimiter" => {
                let right = config
                    .delims
                    .take()
                    .map(|d| d.1)
                    .unwrap_or_else(|| "}}".to_owned());
                config.delims = Some((text(value, "template.left_delimiter")?, right));
            }
            "right_delimiter" => {
                let left = config
                    .delims
                    .take()
                    .map(|d| d.0)
                    .unwrap_or_else(|| "{{".to_owned());
                config.delims = Some((left, text(value, "template.right_delimiter")?));
            }
            "wait" => config.wait = Some(wait(value)?),
            // consul-template's other keys (contents, error_on_missing_key, sandbox_path,
            // function_denylist, ...) change nothing here.
            _ => {}
        }
    }
    if config.source.as_os_str().is_empty() {
        return Err("template: a source is required".to_owned());
    }
    Ok(config)
}

impl Config {
    /// Reads a consul-template configuration file's text (HCL, or JSON when it starts
    /// with `{`); `name` names it in errors.
    pub fn parse(name: &str, source: &str) -> Result<Config, String> {
        let json: Json = if source.trim_start().starts_with('{') {
            serde_json::from_str(source).map_err(|e| format!("{name}: {e}"))?
        } else {
            hcl::from_str(source).map_err(|e| format!("{name}: {e}"))?
        };
        let mut config = Config::default();
        for consul in blocks(json.get("consul")) {
            if let Some(address) = consul.get("address") {
                config.address = Some(text(address, "consul.address")?);
            }
            if let Some(token) = consul.get("token") {
                config.token = Some(text(token, "consul.token")?);
            }
        }
        for block in blocks(json.get("template")) {
            config
                .templates
                .push(template_block(block).map_err(|e| format!("{name}: {e}"))?);
        }
        if let Some(value) = json.get("wait") {
            config.wait = Some(wait(value).map_err(|e| format!("{name}: {e}"))?);
        }
        if let Some(value) = json.get("max_stale") {
            config.max_stale =
                Some(duration(value, "max_stale").map_err(|e| format!("{name}: {e}"))?);
        }
        if let Some(value) = json.get("kill_signal") {
            config.kill_signal = Some(text(value, "kill_signal")?);
        }
        if let Some(value) = json.get("reload_signal") {
            config.reload_signal = Some(text(value, "reload_signal")?);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_flag_and_wait() {
        let t =
            TemplateConfig::from_flag("/tmp/in.ctmpl:/etc/nginx/conf.d/lb.conf:nginx -s reload")
                .expect("valid");
        assert_eq!(t.source, PathBuf::from("/tmp/in.ctmpl"));
        assert_eq!(
            t.destination,
            Some(PathBuf::from("/etc/nginx/conf.d/lb.conf"))
        );
        assert_eq!(t.command.as_deref(), Some("nginx -s reload"));
        let t = TemplateConfig::from_flag("in:out:sh -c 'echo a:b'").expect("valid");
        assert_eq!(t.command.as_deref(), Some("sh -c 'echo a:b'"));
        assert!(TemplateConfig::from_flag(":out").is_err());
        assert_eq!(
            Wait::parse("5s").expect("valid"),
            Wait {
                min: Duration::from_secs(5),
                max: Duration::from_secs(20)
            }
        );
        assert_eq!(
            Wait::parse("1s:3s").expect("valid").max,
            Duration::from_secs(3)
        );
        assert!(Wait::parse("3s:1s").is_err());
    }

    #[test]
    fn consul_templates_hcl_file() {
        // As consul-template's documentation writes it.
        let hcl = r#"
consul {
  address = "127.0.0.1:8500"
  token   = "abcd1234"
}
max_stale = "10m"
kill_signal = "SIGINT"
reload_signal = "SIGHUP"
wait {
  min = "5s"
  max = "10s"
}
template {
  source      = "/path/on/disk/to/template.ctmpl"
  destination = "/path/on/disk/where/template/will/render.txt"
  command     = "restart service foo"
  command_timeout = "60s"
  perms       = 0600
  backup      = true
  left_delimiter  = "[["
  right_delimiter = "]]"
  wait {
    min = "2s"
    max = "10s"
  }
}
template {
  source = "b.ctmpl"
  destination = "b.txt"
}
"#;
        let config = Config::parse("config.hcl", hcl).expect("valid");
        assert_eq!(config.address.as_deref(), Some("127.0.0.1:8500"));
        assert_eq!(config.token.as_deref(), Some("abcd1234"));
        assert_eq!(config.max_stale, Some(Duration::from_secs(600)));
        assert_eq!(config.wait.map(|w| w.max), Some(Duration::from_secs(10)));
        assert_eq!(config.templates.len(), 2);
        let t = &config.templates[0];
        assert_eq!(t.command.as_deref(), Some("restart service foo"));
        assert_eq!(t.command_timeout, Duration::from_secs(60));
        assert_eq!(t.perms, Some(0o600));
        assert!(t.backup);
        assert_eq!(t.delims, Some(("[[".to_owned(), "]]".to_owned())));
        assert_eq!(config.templates[1].command_timeout, COMMAND_TIMEOUT);
        assert!(Config::parse("bad.hcl", "template { destination = \"x\" }")
            .expect_err("no source")
            .contains("source"));
        assert!(Config::parse("bad.hcl", "template {").is_err());
    }
}
