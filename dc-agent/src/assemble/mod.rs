//! Builds one agent configuration from Consul's sources, in Consul's order: config files and
//! directories (JSON or HCL, lexical order within a directory), then command-line flags, then
//! `-hcl` fragments. Objects merge key by key; `retry_join`, `services`, `checks` and
//! `recursors` accumulate.
//!
//! Each source is read on its own, so every message names the file (and, for an unknown key,
//! the line and column). In each source, every key of Consul's agent configuration
//! ([`keys::CONSUL_KEYS`]) is either applied ([`keys::APPLIED`]) or dropped with one warning
//! naming it; a key Consul does not have is an error suggesting the nearest one. Keys match
//! without case and underscores, as Consul's decoder matches them (`NodeName`, `node_name`).
//! Consul's deprecated spellings (top-level `ca_file`, `start_join`, a check's `script`, ...)
//! become their current keys first.

pub mod flags;
pub mod hcl1;
pub mod keys;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use wire::agent_config::AgentConfig;
use wire::config_file::ConfigError;

/// A merged configuration and the warnings met on the way.
#[derive(Debug, Default)]
pub struct Assembled {
    /// The configuration.
    pub config: AgentConfig,
    /// One line per ignored option, naming it and where it came from.
    pub warnings: Vec<String>,
}

/// The format of a config source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// HCL (HCL 2 syntax, which Consul's documented HCL configs are written in).
    Hcl,
}

impl Format {
    /// `-config-format`'s value.
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "json" => Ok(Format::Json),
            "hcl" => Ok(Format::Hcl),
            other => Err(format!(
                "-config-format must be \"json\" or \"hcl\", not {other:?}"
            )),
        }
    }

    fn of(path: &Path, forced: Option<Format>) -> Result<Format, ConfigError> {
        match (path.extension().and_then(|e| e.to_str()), forced) {
            (_, Some(format)) => Ok(format),
            (Some("json"), None) => Ok(Format::Json),
            (Some("hcl"), None) => Ok(Format::Hcl),
            _ => Err(ConfigError::Invalid {
                path: path.display().to_string(),
                problems: vec![
                    "a config file must end in .json or .hcl, or its format be given with -config-format"
                        .to_owned(),
                ],
            }),
        }
    }
}

/// Where an agent's configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `-config-dir`s, in order.
    pub dirs: Vec<PathBuf>,
    /// `-config-file`s, in order.
    pub files: Vec<PathBuf>,
    /// `-config-format`: the format of every file, whatever its extension.
    pub format: Option<Format>,
    /// The flags, as a config layer.
    pub flags: Map<String, Value>,
    /// `-hcl` fragments, in order.
    pub hcl: Vec<String>,
}

/// Reads every source, in Consul's order, into one configuration.
pub fn load(sources: &Sources) -> Result<Assembled, ConfigError> {
    let mut files = Vec::new();
    for dir in &sources.dirs {
        files.extend(dir_files(dir, sources.format)?);
    }
    files.extend(sources.files.iter().cloned());
    let mut merged = Map::new();
    let mut warnings = Vec::new();
    let mut origins = Vec::new();
    for file in &files {
        let layer = read_file(file, sources.format, &mut warnings)?;
        merge(&mut merged, layer);
        origins.push(file.display().to_string());
    }
    let mut flags = sources.flags.clone();
    let flag_problems = keys::check_source(&mut flags, "command-line flags", &mut warnings);
    if !flag_problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: "command-line flags".to_owned(),
            problems: flag_problems.into_iter().map(|p| p.message).collect(),
        });
    }
    merge(&mut merged, flags);
    origins.push("command-line flags".to_owned());
    for (n, fragment) in sources.hcl.iter().enumerate() {
        let name = format!("-hcl fragment {}", n + 1);
        let layer = read_text(fragment, &name, Format::Hcl, None, &mut warnings)?;
        merge(&mut merged, layer);
        origins.push(name);
    }
    let origin = origins.join(", ");
    let config: AgentConfig =
        serde_json::from_value(Value::Object(merged)).map_err(|e| ConfigError::Invalid {
            path: origin.clone(),
            problems: vec![e.to_string()],
        })?;
    Ok(Assembled { config, warnings })
}

/// Path fields of a file (JSON pointers), resolved against the file's directory.
const PATH_FIELDS: &[&str] = &[
    "/data_dir",
    "/tls/defaults/ca_file",
    "/tls/defaults/cert_file",
    "/tls/defaults/key_file",
];

fn resolve_paths(object: &mut Map<String, Value>, base: &Path) {
    for pointer in PATH_FIELDS {
        let mut current: Option<&mut Value> = None;
        let mut parts = pointer.trim_start_matches('/').split('/');
        if let Some(first) = parts.next() {
            current = object.get_mut(first);
        }
        for part in parts {
            current = current.and_then(|v| v.get_mut(part));
        }
        if let Some(Value::String(path)) = current {
            if Path::new(path.as_str()).is_relative() {
                *path = base.join(path.as_str()).display().to_string();
            }
        }
    }
}

/// Keys whose lists accumulate across sources instead of replacing each other.
const ACCUMULATING: &[&str] = &["retry_join", "services", "checks", "recursors", "watches"];

/// Merges `overlay` into `base`: objects key by key, accumulating lists, otherwise replacing.
pub fn merge(base: &mut Map<String, Value>, overlay: Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(more)) => merge(existing, more),
            (Some(Value::Array(existing)), Value::Array(more))
                if ACCUMULATING.contains(&key.as_str()) =>
            {
                existing.extend(more)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Reads one config file (JSON or HCL) into a checked layer, paths resolved.
pub fn read_file(
    path: &Path,
    forced: Option<Format>,
    warnings: &mut Vec<String>,
) -> Result<Map<String, Value>, ConfigError> {
    let shown = path.display().to_string();
    let format = Format::of(path, forced)?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    read_text(&text, &shown, format, Some(&base), warnings)
}

fn syntax(path: &str, line: usize, column: usize, message: String) -> ConfigError {
    ConfigError::Syntax {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

/// Parses one source's text into a checked layer: singular blocks folded into their lists,
/// deprecated keys translated, unsupported Consul keys dropped with a warning, unknown keys
/// refused with their line and column.
pub fn read_text(
    text: &str,
    name: &str,
    format: Format,
    base: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<Map<String, Value>, ConfigError> {
    let value: Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or_default();
            syntax(name, e.line(), e.column(), message.to_owned())
        })?,
        // HCL2 first (hcl-rs, better messages); what only HCL1 allows, as Consul reads it.
        Format::Hcl => match hcl::from_str(text) {
            Ok(value) => value,
            Err(e) => match hcl1::parse(text) {
                Ok(value) => value,
                Err(_) => {
                    return Err(match &e {
                        hcl::Error::Parse(parse) => syntax(
                            name,
                            parse.location().line(),
                            parse.location().column(),
                            parse.message().to_owned(),
                        ),
                        other => syntax(name, 1, 1, other.to_string()),
                    })
                }
            },
        },
    };
    let Value::Object(mut object) = value else {
        return Err(ConfigError::Invalid {
            path: name.to_owned(),
            problems: vec!["the file must hold an object of settings".to_owned()],
        });
    };
    let problems = keys::check_source(&mut object, name, warnings);
    if let Some(problem) = problems.first() {
        let (line, column) = keys::locate(text, &problem.key, format);
        return Err(syntax(name, line, column, problems_text(&problems)));
    }
    if let Some(base) = base {
        resolve_paths(&mut object, base);
    }
    Ok(object)
}

fn problems_text(problems: &[keys::Problem]) -> String {
    problems
        .iter()
        .map(|p| p.message.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The config files of a directory (`.json` and `.hcl`, or every file with
/// `-config-format`), in lexical order.
pub fn dir_files(dir: &Path, forced: Option<Format>) -> Result<Vec<PathBuf>, ConfigError> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Read {
        path: shown,
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .filter(|path| {
            forced.is_some() || path.extension().is_some_and(|e| e == "json" || e == "hcl")
        })
        .collect();
    files.sort();
    Ok(files)
}
