//! consul-template's functions on top of Go's built-ins (which `gotmpl` provides): the
//! Consul queries (`service`, `services`, `node`, `nodes`, `key`, `keyExists`,
//! `keyOrDefault`, `ls`, `tree`, `datacenters`), which read what the runner fetched and
//! record what they needed, and the helpers (`byTag`, `contains`, `join`, `split`,
//! `replaceAll`, `regexMatch`, `toJSON`, `parseInt`, `add`, ...) with consul-template's
//! argument order (the piped value last).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use gotmpl::{TemplateError, Value};

use crate::dep::Dep;

type Result<T> = std::result::Result<T, TemplateError>;

/// What the watchers fetched: each query's answer, as the template sees it.
pub type Answers = HashMap<Dep, Value>;

/// One rendering's view: the answers, and what the template asked for.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    pub answers: Arc<Answers>,
    /// Every query the template asked for.
    pub used: BTreeSet<Dep>,
    /// Queries with no answer yet, or (for `key`) a key that does not exist.
    pub missing: BTreeSet<Dep>,
    /// The agent's node name (`node` with no argument).
    pub local_node: String,
}

pub(crate) type Shared = Arc<Mutex<Pass>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Pass> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The answer to `dep`, if fetched; recorded as used (and as missing when not fetched).
fn answer(shared: &Shared, dep: Dep) -> Option<Value> {
    let mut pass = lock(shared);
    pass.used.insert(dep.clone());
    match pass.answers.get(&dep) {
        Some(value) => Some(value.clone()),
        None => {
            pass.missing.insert(dep);
            None
        }
    }
}

fn error(text: impl Into<String>) -> TemplateError {
    TemplateError::Exec(text.into())
}

fn string<'a>(args: &'a [Value], i: usize, func: &str) -> Result<&'a str> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| error(format!("{func}: argument {} must be a string", i + 1)))
}

fn arity(args: &[Value], min: usize, max: usize, func: &str) -> Result<()> {
    if args.len() < min || args.len() > max {
        let wanted = if min == max {
            min.to_string()
        } else {
            format!("{min} to {max}")
        };
        return Err(error(format!(
            "{func}: expected {wanted} arguments, got {}",
            args.len()
        )));
    }
    Ok(())
}

fn list(items: Vec<Value>) -> Value {
    Value::List(items.into())
}

fn items(value: &Value) -> Vec<Value> {
    match value {
        Value::List(items) => items.to_vec(),
        Value::Nil => Vec::new(),
        other => vec![other.clone()],
    }
}

fn text(value: impl Into<Arc<str>>) -> Value {
    Value::String(value.into())
}

/// The Consul queries, reading `shared`.
fn queries(shared: &Shared) -> Vec<(&'static str, gotmpl::ValueFunc)> {
    let s = shared.clone();
    let service: gotmpl::ValueFunc = Arc::new(move |args: &[Value]| {
        arity(args, 1, 2, "service")?;
        let filter = match args.get(1) {
            Some(v) => Some(
                v.as_str()
                    .ok_or_else(|| error("service: the filter must be a string"))?,
            ),
            None => None,
        };
        let dep = Dep::service(string(args, 0, "service")?, filter).map_err(error)?;
        Ok(answer(&s, dep).unwrap_or_else(|| list(Vec::new())))
    });
    let s = shared.clone();
    let services: gotmpl::ValueFunc = Arc::new(move |args: &[Value]| {
        arity(args, 0, 1, "services")?;
        let dc =
            Dep::datacenter_of(args.first().and_then(Value::as_str), "services").map_err(error)?;
        Ok(answer(&s, Dep::Services { dc }).unwrap_or_else(|| list(Vec::new())))
    });
    let s = shared.clone();
    let node: gotmpl::ValueFunc = Arc::new(move |args: &[Value]| {
        arity(args, 0, 1, "node")?;
        let dep = match args.first() {
            Some(v) => {
                let text = v
                    .as_str()
                    .ok_or_else(|| error("node: the node must be a string"))?;
                if let Some(dc) = text.strip_prefix('@') {
                    let local = lock(&s).local_node.clone();
                    Dep::node(&format!("{local}@{dc}")).map_err(error)?
                } else {
                    Dep::node(text).map_err(error)?
                }
            }
            None => {
                let local = lock(&s).local_node.clone();
                Dep::node(&local).map_err(error)?
            }
        };
        Ok(answer(&s, dep).unwrap_or(Value::Nil))
    });
    let s = shared.clone();
    let nodes: gotmpl::ValueFunc = Arc::new(move |args: &[Value]| {
        arity(args, 0, 1, "nodes")?;
        let dc =
            Dep::datacenter_of(args.first().and_then(Value::as_str), "nodes").map_err(error)?;
        Ok(answer(&s, Dep::Nodes { dc }).unwrap_or_else(|| list(Vec::new())))
    });
    let s = shared.clone();
    let key: gotmpl::ValueFunc = Arc::new(move |args: &[Value]| {
        arity(args, 1, 1, "key")?;
        let dep = Dep::key(string(args, 0, "key")?).map_err(error)?;
        match answer(&s, dep.clone()) {
            Some(Value::Nil) => {
                // consul-template waits for a key that does not exist yet.
                lock(&s).missing.insert(dep);
                Ok(text(""))
            }
            Some(value) => Ok(value),
            None => Ok(text("")),
        }
    });
    let s = shared.clone();
    let key_exists: gotmpl::ValueFunc = Arc::new(move |args: &[Value]| {
        arity(args, 1, 1, "keyExists")?;
        let dep = Dep::key(string(args, 0, "keyExists")?).map_err(error)?;
        Ok(Value::Bool(
            matches!(answer(&s, dep), Some(v) if v != Value::Nil),
        ))
    });
    let s = shared.clone();
    let key_or_default: gotmpl::ValueFunc = Arc::new(move |args: &[Value]| {
        arity(args, 2, 2, "keyOrDefault")?;
        let dep = Dep::key(string(args, 0, "keyOrDefault")?).map_err(error)?;
        Ok(match answer(&s, dep) {
            Some(value) if value != Value::Nil => value,
            _ => args[1].clone(),
        })
    });
    let s = shared.clone();
    let ls: gotmpl::ValueFunc = Arc::new(move |args: &[Value]| {
        arity(args, 1, 1, "ls")?;
        let dep = Dep::prefix(string(args, 0, "ls")?, false).map_err(error)?;
        Ok(answer(&s, dep).unwrap_or_else(|| list(Vec::new())))
    });
    let s = shared.clone();
    let tree: gotmpl::ValueFunc = Arc::new(move |args: &[Value]| {
        arity(args, 1, 1, "tree")?;
        let dep = Dep::prefix(string(args, 0, "tree")?, true).map_err(error)?;
        Ok(answer(&s, dep).unwrap_or_else(|| list(Vec::new())))
    });
    let s = shared.clone();
    let datacenters: gotmpl::ValueFunc = Arc::new(move |args: &[Value]| {
        arity(args, 0, 1, "datacenters")?;
        Ok(answer(&s, Dep::Datacenters).unwrap_or_else(|| list(Vec::new())))
    });
    vec![
        ("service", service),
        ("services", services),
        ("node", node),
        ("nodes", nodes),
        ("key", key),
        ("keyExists", key_exists),
        ("keyOrDefault", key_or_default),
        ("ls", ls),
        ("tree", tree),
        ("datacenters", datacenters),
    ]
}

/// A value as JSON (for `toJSON`).
fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Uint(u) => serde_json::Value::from(*u),
        Value::Float(f) => serde_json::Value::from(*f),
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::List(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect(),
        ),
    }
}

/// JSON as a value (for `parseJSON`).
fn from_json(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::Uint(u),
            _ => Value::Float(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => text(s.as_str()),
        serde_json::Value::Array(items) => list(items.iter().map(from_json).collect()),
        serde_json::Value::Object(entries) => Value::Map(Arc::new(
            entries
                .iter()
                .map(|(k, v)| (Arc::<str>::from(k.as_str()), from_json(v)))
                .collect(),
        )),
    }
}

/// Whether two values are equal as consul-template compares them (by their text).
fn same(a: &Value, b: &Value) -> bool {
    a == b || a.to_string() == b.to_string()
}

/// consul-template's arithmetic: `{{ 7 | subtract 2 }}` is 7 - 2 (the piped value last).
fn arithmetic(
    name: &'static str,
    op: fn(f64, f64) -> f64,
    int: fn(i64, i64) -> Option<i64>,
) -> gotmpl::ValueFunc {
    Arc::new(move |args: &[Value]| {
        arity(args, 2, 2, name)?;
        let (b, a) = (&args[0], &args[1]);
        let as_int = |v: &Value| match v {
            Value::Int(i) => Some(*i),
            Value::Uint(u) => i64::try_from(*u).ok(),
            _ => None,
        };
        if let (Some(a), Some(b)) = (as_int(a), as_int(b)) {
            return int(a, b)
                .map(Value::Int)
                .ok_or_else(|| error(format!("{name}: {a} and {b} give no integer answer")));
        }
        match (a.as_float(), b.as_float()) {
            (Some(a), Some(b)) => Ok(Value::Float(op(a, b))),
            _ => Err(error(format!("{name}: both arguments must be numbers"))),
        }
    })
}

/// `timestamp [LAYOUT]`: now, in RFC 3339 (UTC) by default; `"unix"` for seconds.
fn timestamp(args: &[Value]) -> Result<Value> {
    arity(args, 0, 1, "timestamp")?;
    let now = time::OffsetDateTime::now_utc();
    match args.first().and_then(Value::as_str) {
        Some("unix") => Ok(Value::Int(now.unix_timestamp())),
        _ => now
            .format(&time::format_description::well_known::Rfc3339)
            .map(text)
            .map_err(|e| error(format!("timestamp: {e}"))),
    }
}

fn regex(pattern: &str, func: &str) -> Result<regex::Regex> {
    regex::Regex::new(pattern).map_err(|e| error(format!("{func}: {e}")))
}

/// The helpers, which need no answers.
fn helpers() -> Vec<(&'static str, gotmpl::ValueFunc)> {
    let f = |f: fn(&[Value]) -> Result<Value>| -> gotmpl::ValueFunc { Arc::new(f) };
    vec![
        (
            "env",
            f(|args| {
                arity(args, 1, 1, "env")?;
                Ok(text(
                    std::env::var(string(args, 0, "env")?).unwrap_or_default(),
                ))
            }),
        ),
        (
            "file",
            f(|args| {
                arity(args, 1, 1, "file")?;
                let path = string(args, 0, "file")?;
                std::fs::read_to_string(path)
                    .map(text)
                    .map_err(|e| error(format!("file: {path}: {e}")))
            }),
        ),
        (
            "byTag",
            f(|args| {
                arity(args, 1, 1, "byTag")?;
                let mut by: BTreeMap<Arc<str>, Vec<Value>> = BTreeMap::new();
                for service in items(&args[0]) {
                    for tag in service.field("Tags").map(items).unwrap_or_default() {
                        by.entry(Arc::from(tag.to_string()))
                            .or_default()
                            .push(service.clone());
                    }
                }
                Ok(Value::Map(Arc::new(
                    by.into_iter().map(|(k, v)| (k, list(v))).collect(),
                )))
            }),
        ),
        (
            "byKey",
            f(|args| {
                arity(args, 1, 1, "byKey")?;
                let mut by: BTreeMap<Arc<str>, BTreeMap<Arc<str>, Value>> = BTreeMap::new();
                for pair in items(&args[0]) {
                    let key = pair.field("Key").map(|k| k.to_string()).unwrap_or_default();
                    if let Some((top, rest)) = key.split_once('/') {
                        let mut pair = pair.clone();
                        if let Value::Map(entries) = &mut pair {
                            Arc::make_mut(entries).insert(Arc::from("Key"), text(rest));
                        }
                        by.entry(Arc::from(top))
                            .or_default()
                            .insert(Arc::from(rest), pair);
                    }
                }
                Ok(Value::Map(Arc::new(
                    by.into_iter()
                        .map(|(k, v)| (k, Value::Map(Arc::new(v))))
                        .collect(),
                )))
            }),
        ),
        (
            "contains",
            f(|args| {
                arity(args, 2, 2, "contains")?;
                Ok(Value::Bool(
                    items(&args[1]).iter().any(|v| same(v, &args[0])),
                ))
            }),
        ),
        (
            "in",
            f(|args| {
                arity(args, 2, 2, "in")?;
                Ok(Value::Bool(
                    items(&args[0]).iter().any(|v| same(v, &args[1])),
                ))
            }),
        ),
        (
            "containsAll",
            f(|args| {
                arity(args, 2, 2, "containsAll")?;
                let hay = items(&args[1]);
                Ok(Value::Bool(
                    items(&args[0])
                        .iter()
                        .all(|n| hay.iter().any(|h| same(h, n))),
                ))
            }),
        ),
        (
            "containsAny",
            f(|args| {
                arity(args, 2, 2, "containsAny")?;
                let hay = items(&args[1]);
                Ok(Value::Bool(
                    items(&args[0])
                        .iter()
                        .any(|n| hay.iter().any(|h| same(h, n))),
                ))
            }),
        ),
        (
            "containsNone",
            f(|args| {
                arity(args, 2, 2, "containsNone")?;
                let hay = items(&args[1]);
                Ok(Value::Bool(
                    !items(&args[0])
                        .iter()
                        .any(|n| hay.iter().any(|h| same(h, n))),
                ))
            }),
        ),
        (
            "containsNotAll",
            f(|args| {
                arity(args, 2, 2, "containsNotAll")?;
                let hay = items(&args[1]);
                Ok(Value::Bool(
                    !items(&args[0])
                        .iter()
                        .all(|n| hay.iter().any(|h| same(h, n))),
                ))
            }),
        ),
        (
            "join",
            f(|args| {
                arity(args, 2, 2, "join")?;
                let sep = string(args, 0, "join")?;
                let parts: Vec<String> = items(&args[1]).iter().map(Value::to_string).collect();
                Ok(text(parts.join(sep)))
            }),
        ),
        (
            "split",
            f(|args| {
                arity(args, 2, 2, "split")?;
                let (sep, s) = (string(args, 0, "split")?, string(args, 1, "split")?);
                if s.is_empty() {
                    return Ok(list(Vec::new()));
                }
                Ok(list(s.split(sep).map(text).collect()))
            }),
        ),
        (
            "replaceAll",
            f(|args| {
                arity(args, 3, 3, "replaceAll")?;
                let (from, to) = (
                    string(args, 0, "replaceAll")?,
                    string(args, 1, "replaceAll")?,
                );
                Ok(text(string(args, 2, "replaceAll")?.replace(from, to)))
            }),
        ),
        (
            "regexMatch",
            f(|args| {
                arity(args, 2, 2, "regexMatch")?;
                let re = regex(string(args, 0, "regexMatch")?, "regexMatch")?;
                Ok(Value::Bool(re.is_match(&args[1].to_string())))
            }),
        ),
        (
            "regexReplaceAll",
            f(|args| {
                arity(args, 3, 3, "regexReplaceAll")?;
                let re = regex(string(args, 0, "regexReplaceAll")?, "regexReplaceAll")?;
                let replacement = string(args, 1, "regexReplaceAll")?;
                Ok(text(
                    re.replace_all(&args[2].to_string(), replacement)
                        .into_owned(),
                ))
            }),
        ),
        (
            "toLower",
            f(|args| {
                arity(args, 1, 1, "toLower")?;
                Ok(text(args[0].to_string().to_lowercase()))
            }),
        ),
        (
            "toUpper",
            f(|args| {
                arity(args, 1, 1, "toUpper")?;
                Ok(text(args[0].to_string().to_uppercase()))
            }),
        ),
        (
            "toTitle",
            f(|args| {
                arity(args, 1, 1, "toTitle")?;
                let titled: Vec<String> = args[0]
                    .to_string()
                    .split(' ')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next()
                            .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
                    })
                    .collect();
                Ok(text(titled.join(" ")))
            }),
        ),
        (
            "trimSpace",
            f(|args| {
                arity(args, 1, 1, "trimSpace")?;
                Ok(text(args[0].to_string().trim()))
            }),
        ),
        (
            "toJSON",
            f(|args| {
                arity(args, 1, 1, "toJSON")?;
                serde_json::to_string(&to_json(&args[0]))
                    .map(text)
                    .map_err(|e| error(format!("toJSON: {e}")))
            }),
        ),
        (
            "toJSONPretty",
            f(|args| {
                arity(args, 1, 1, "toJSONPretty")?;
                serde_json::to_string_pretty(&to_json(&args[0]))
                    .map(text)
                    .map_err(|e| error(format!("toJSONPretty: {e}")))
            }),
        ),
        (
            "parseJSON",
            f(|args| {
                arity(args, 1, 1, "parseJSON")?;
                let s = string(args, 0, "parseJSON")?;
                if s.trim().is_empty() {
                    return Ok(Value::Map(Arc::default()));
                }
                serde_json::from_str::<serde_json::Value>(s)
                    .map(|j| from_json(&j))
                    .map_err(|e| error(format!("parseJSON: {e}")))
            }),
        ),
        (
            "parseInt",
            f(|args| {
                arity(args, 1, 1, "parseInt")?;
                let s = args[0].to_string();
                s.trim()
                    .parse::<i64>()
                    .map(Value::Int)
                    .map_err(|e| error(format!("parseInt: {s:?}: {e}")))
            }),
        ),
        (
            "parseUint",
            f(|args| {
                arity(args, 1, 1, "parseUint")?;
                let s = args[0].to_string();
                s.trim()
                    .parse::<u64>()
                    .map(Value::Uint)
                    .map_err(|e| error(format!("parseUint: {s:?}: {e}")))
            }),
        ),
        (
            "parseFloat",
            f(|args| {
                arity(args, 1, 1, "parseFloat")?;
                let s = args[0].to_string();
                s.trim()
                    .parse::<f64>()
                    .map(Value::Float)
                    .map_err(|e| error(format!("parseFloat: {s:?}: {e}")))
            }),
        ),
        (
            "parseBool",
            f(|args| {
                arity(args, 1, 1, "parseBool")?;
                match args[0].to_string().trim() {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
                    "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
                    other => Err(error(format!("parseBool: {other:?} is not a boolean"))),
                }
            }),
        ),
        ("timestamp", f(timestamp)),
        ("add", arithmetic("add", |a, b| a + b, i64::checked_add)),
        (
            "subtract",
            arithmetic("subtract", |a, b| a - b, i64::checked_sub),
        ),
        (
            "multiply",
            arithmetic("multiply", |a, b| a * b, i64::checked_mul),
        ),
        (
            "divide",
            arithmetic("divide", |a, b| a / b, i64::checked_div),
        ),
        (
            "modulo",
            arithmetic("modulo", |a, b| a % b, i64::checked_rem),
        ),
    ]
}

/// Every consul-template function, the queries reading `shared`.
pub(crate) fn all(shared: &Shared) -> gotmpl::FuncMap {
    queries(shared)
        .into_iter()
        .chain(helpers())
        .map(|(name, f)| (name.to_owned(), f))
        .collect()
}
