//! What a template depends on: one Consul query each ([`Dep`]), parsed from consul-template's
//! argument strings (`"tag.name@dc~near"`, `"@dc"`, `"path/to/key@dc"`), the `/v1` path that
//! answers it, and the answer turned into the values consul-template's templates see
//! (`.Address`, `.ServiceMeta`, `.Key`, ...), with consul-template's sorting and health
//! filtering.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use gotmpl::Value;
use serde_json::Value as Json;

/// Which health states a `service` query keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HealthFilter {
    /// Every instance (`"any"`).
    Any,
    /// Instances whose aggregated status is one of these (sorted; the default is
    /// `passing`).
    States(Vec<String>),
}

impl HealthFilter {
    /// consul-template's second argument of `service`: `"any"` or a comma-separated list of
    /// `passing`, `warning`, `critical`, `maintenance`.
    pub fn parse(text: &str) -> Result<HealthFilter, String> {
        let mut states = Vec::new();
        for state in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match state {
                "any" => return Ok(HealthFilter::Any),
                "passing" | "warning" | "critical" | "maintenance" => states.push(state.to_owned()),
                other => return Err(format!("service: invalid health status {other:?}")),
            }
        }
        if states.is_empty() {
            return Err("service: no health status given".to_owned());
        }
        states.sort();
        states.dedup();
        Ok(HealthFilter::States(states))
    }

    fn passing_only(&self) -> bool {
        matches!(self, HealthFilter::States(s) if s.len() == 1 && s[0] == "passing")
    }

    fn keeps(&self, status: &str) -> bool {
        match self {
            HealthFilter::Any => true,
            HealthFilter::States(states) => states.iter().any(|s| s == status),
        }
    }
}

/// One query a template depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dep {
    /// `service "tag.name@dc~near"`: healthy instances (as the filter says).
    Service {
        /// Service name.
        name: String,
        /// Only instances with this tag.
        tag: Option<String>,
        /// Datacenter (`None`: the agent's).
        dc: Option<String>,
        /// Sort by round trip from this node (`_agent`: the agent's).
        near: Option<String>,
        /// Health states kept.
        filter: HealthFilter,
    },
    /// `services "@dc"`: every service's name and tags.
    Services {
        /// Datacenter.
        dc: Option<String>,
    },
    /// `node "name@dc"`: a node and its services.
    Node {
        /// Node name.
        name: String,
        /// Datacenter.
        dc: Option<String>,
    },
    /// `nodes "@dc"`: every node.
    Nodes {
        /// Datacenter.
        dc: Option<String>,
    },
    /// `key`, `keyExists`, `keyOrDefault`: one KV entry.
    Key {
        /// The key.
        key: String,
        /// Datacenter.
        dc: Option<String>,
    },
    /// `ls` (direct children) and `tree` (everything below): KV entries under a prefix.
    Prefix {
        /// The prefix.
        prefix: String,
        /// Datacenter.
        dc: Option<String>,
        /// `tree` (every level) rather than `ls`.
        recurse: bool,
    },
    /// `datacenters`: every known datacenter.
    Datacenters,
}

/// Splits `text@dc` into the part before `@` and the datacenter.
fn at_dc(text: &str) -> (&str, Option<String>) {
    match text.rsplit_once('@') {
        Some((name, dc)) if !dc.is_empty() => (name, Some(dc.to_owned())),
        Some((name, _)) => (name, None),
        None => (text, None),
    }
}

fn word(text: &str, extra: &[char]) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

impl Dep {
    /// `service`'s query: `"[tag.]name[@dc][~near]"` and an optional health filter.
    pub fn service(text: &str, filter: Option<&str>) -> Result<Dep, String> {
        let (rest, near) = match text.split_once('~') {
            Some((rest, near)) => (rest, Some(near.to_owned())),
            None => (text, None),
        };
        let (tagged, dc) = at_dc(rest);
        // The tag may hold dots; the name may not.
        let (tag, name) = match tagged.rsplit_once('.') {
            Some((tag, name)) => (Some(tag.to_owned()), name),
            None => (None, tagged),
        };
        if !word(name, &[]) || tag.as_deref().is_some_and(|t| !word(t, &['.', '=', ':'])) {
            return Err(format!("service: invalid format: {text:?}"));
        }
        let filter = match filter {
            Some(text) => HealthFilter::parse(text)?,
            None => HealthFilter::States(vec!["passing".to_owned()]),
        };
        Ok(Dep::Service {
            name: name.to_owned(),
            tag,
            dc,
            near,
            filter,
        })
    }

    /// A `"@dc"` argument (or none): the datacenter.
    pub fn datacenter_of(text: Option<&str>, verb: &str) -> Result<Option<String>, String> {
        match text {
            None | Some("") => Ok(None),
            Some(text) => match text.strip_prefix('@') {
                Some(dc) if word(dc, &['.']) => Ok(Some(dc.to_owned())),
                _ => Err(format!("{verb}: invalid format: {text:?}")),
            },
        }
    }

    /// `node`'s query: `"name[@dc]"`.
    pub fn node(text: &str) -> Result<Dep, String> {
        let (name, dc) = at_dc(text);
        if !word(name, &['.']) {
            return Err(format!("node: invalid format: {text:?}"));
        }
        Ok(Dep::Node {
            name: name.to_owned(),
            dc,
        })
    }

    /// `key`'s query: `"path[@dc]"`.
    pub fn key(text: &str) -> Result<Dep, String> {
        let (key, dc) = at_dc(text);
        let key = key.trim_start_matches('/');
        if key.is_empty() {
            return Err(format!("key: invalid format: {text:?}"));
        }
        Ok(Dep::Key {
            key: key.to_owned(),
            dc,
        })
    }

    /// `ls` and `tree`'s query: `"prefix[@dc]"`.
    pub fn prefix(text: &str, recurse: bool) -> Result<Dep, String> {
        let (prefix, dc) = at_dc(text);
        Ok(Dep::Prefix {
            prefix: prefix.trim_start_matches('/').to_owned(),
            dc,
            recurse,
        })
    }

    /// The `/v1` request that answers it (`stale`: any server may answer).
    pub fn path(&self, stale: bool) -> String {
        let seg = wire::percent::segment;
        let mut query: Vec<String> = Vec::new();
        let dc = |query: &mut Vec<String>, dc: &Option<String>| {
            if let Some(dc) = dc {
                query.push(format!("dc={}", seg(dc)));
            }
        };
        let path = match self {
            Dep::Service {
                name,
                tag,
                dc: d,
                near,
                filter,
            } => {
                dc(&mut query, d);
                if let Some(tag) = tag {
                    query.push(format!("tag={}", seg(tag)));
                }
                if let Some(near) = near {
                    query.push(format!("near={}", seg(near)));
                }
                if filter.passing_only() {
                    query.push("passing".to_owned());
                }
                format!("/v1/health/service/{}", seg(name))
            }
            Dep::Services { dc: d } => {
                dc(&mut query, d);
                "/v1/catalog/services".to_owned()
            }
            Dep::Node { name, dc: d } => {
                dc(&mut query, d);
                format!("/v1/catalog/node/{}", seg(name))
            }
            Dep::Nodes { dc: d } => {
                dc(&mut query, d);
                "/v1/catalog/nodes".to_owned()
            }
            Dep::Key { key, dc: d } => {
                dc(&mut query, d);
                format!("/v1/kv/{}", wire::percent::key_path(key))
            }
            Dep::Prefix { prefix, dc: d, .. } => {
                dc(&mut query, d);
                query.push("recurse".to_owned());
                format!("/v1/kv/{}", wire::percent::key_path(prefix))
            }
            Dep::Datacenters => "/v1/catalog/datacenters".to_owned(),
        };
        if stale && !matches!(self, Dep::Datacenters) {
            query.push("stale".to_owned());
        }
        if query.is_empty() {
            path
        } else {
            format!("{path}?{}", query.join("&"))
        }
    }

    /// The answer (`status`, `body`) as the template sees it. A key that does not exist is
    /// `Nil`; so is a node the catalog does not have.
    pub fn decode(&self, status: u16, body: &[u8]) -> Result<Value, String> {
        let absent = status == 404;
        if status != 200 && !absent {
            return Err(format!(
                "{} answered {status}: {}",
                self.path(false),
                String::from_utf8_lossy(body).trim()
            ));
        }
        let json: Json = if absent || body.is_empty() {
            Json::Null
        } else {
            serde_json::from_slice(body).map_err(|e| format!("{}: {e}", self.path(false)))?
        };
        Ok(match self {
            Dep::Service { filter, .. } => service_entries(&json, filter),
            Dep::Services { .. } => services(&json),
            Dep::Node { .. } => node(&json),
            Dep::Nodes { .. } => nodes(&json),
            Dep::Key { .. } => match json.as_array().and_then(|a| a.first()) {
                Some(entry) => Value::String(decode_value(entry).into()),
                None => Value::Nil,
            },
            Dep::Prefix {
                prefix, recurse, ..
            } => pairs(&json, prefix, *recurse),
            Dep::Datacenters => Value::List(
                json.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str())
                    .map(|d| Value::String(d.into()))
                    .collect::<Vec<_>>()
                    .into(),
            ),
        })
    }
}

/// A map value from `(name, value)` pairs.
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(Arc::new(
        entries
            .into_iter()
            .map(|(k, v)| (Arc::<str>::from(k), v))
            .collect(),
    ))
}

fn text(json: &Json) -> Value {
    Value::String(json.as_str().unwrap_or_default().into())
}

fn string_map(json: &Json) -> Value {
    let entries: BTreeMap<Arc<str>, Value> = json
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (Arc::from(k.as_str()), text(v)))
        .collect();
    Value::Map(Arc::new(entries))
}

fn sorted_tags(json: &Json) -> Value {
    let mut tags: Vec<&str> = json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    Value::List(
        tags.into_iter()
            .map(|t| Value::String(t.into()))
            .collect::<Vec<_>>()
            .into(),
    )
}

fn number(json: &Json) -> Value {
    json.as_i64().map_or(Value::Int(0), Value::Int)
}

/// A catalog node as consul-template's `Node`.
fn node_value(node: &Json) -> Value {
    map(vec![
        ("ID", text(&node["ID"])),
        ("Node", text(&node["Node"])),
        ("Address", text(&node["Address"])),
        ("Datacenter", text(&node["Datacenter"])),
        ("TaggedAddresses", string_map(&node["TaggedAddresses"])),
        ("Meta", string_map(&node["Meta"])),
    ])
}

/// consul-template's aggregate of a service's checks: critical, then maintenance, then
/// warning, else passing.
fn aggregate(checks: &[Json]) -> &'static str {
    let status = |c: &Json| c["Status"].as_str().unwrap_or_default().to_owned();
    let id = |c: &Json| c["CheckID"].as_str().unwrap_or_default().to_owned();
    if checks.iter().any(|c| status(c) == "critical") {
        let maintenance = checks.iter().any(|c| {
            status(c) == "critical"
                && (id(c) == "_node_maintenance" || id(c).starts_with("_service_maintenance"))
        });
        return if maintenance {
            "maintenance"
        } else {
            "critical"
        };
    }
    if checks.iter().any(|c| status(c) == "warning") {
        return "warning";
    }
    "passing"
}

/// `/v1/health/service/NAME` as consul-template's `[]*HealthService`, filtered by
/// aggregated status and sorted by node, then service ID.
fn service_entries(json: &Json, filter: &HealthFilter) -> Value {
    let mut entries: Vec<(String, String, Value)> = Vec::new();
    for entry in json.as_array().into_iter().flatten() {
        let (node, service) = (&entry["Node"], &entry["Service"]);
        let checks: Vec<Json> = entry["Checks"].as_array().cloned().unwrap_or_default();
        let status = aggregate(&checks);
        if !filter.keeps(status) {
            continue;
        }
        let address = match service["Address"].as_str() {
            Some(a) if !a.is_empty() => a,
            _ => node["Address"].as_str().unwrap_or_default(),
        };
        let checks = checks
            .iter()
            .map(|c| {
                map(vec![
                    ("Node", text(&c["Node"])),
                    ("CheckID", text(&c["CheckID"])),
                    ("Name", text(&c["Name"])),
                    ("Status", text(&c["Status"])),
                    ("Notes", text(&c["Notes"])),
                    ("Output", text(&c["Output"])),
                    ("ServiceID", text(&c["ServiceID"])),
                    ("ServiceName", text(&c["ServiceName"])),
                ])
            })
            .collect::<Vec<_>>();
        let value = map(vec![
            ("Node", text(&node["Node"])),
            ("NodeID", text(&node["ID"])),
            ("NodeAddress", text(&node["Address"])),
            ("NodeDatacenter", text(&node["Datacenter"])),
            ("NodeTaggedAddresses", string_map(&node["TaggedAddresses"])),
            ("NodeMeta", string_map(&node["Meta"])),
            ("ServiceMeta", string_map(&service["Meta"])),
            ("Address", Value::String(address.into())),
            ("ID", text(&service["ID"])),
            ("Name", text(&service["Service"])),
            ("Kind", text(&service["Kind"])),
            ("Tags", sorted_tags(&service["Tags"])),
            ("Checks", Value::List(checks.into())),
            ("Status", Value::String(status.into())),
            ("Port", number(&service["Port"])),
            ("Namespace", text(&service["Namespace"])),
        ]);
        entries.push((
            node["Node"].as_str().unwrap_or_default().to_owned(),
            service["ID"].as_str().unwrap_or_default().to_owned(),
            value,
        ));
    }
    // `?near` answers in round-trip order already; otherwise consul-template's order.
    entries.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Value::List(
        entries
            .into_iter()
            .map(|(_, _, v)| v)
            .collect::<Vec<_>>()
            .into(),
    )
}

/// `/v1/catalog/services` as `[]*CatalogSnippet` (name and sorted tags), by name.
fn services(json: &Json) -> Value {
    let list: Vec<Value> = json
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, tags)| {
            map(vec![
                ("Name", Value::String(name.as_str().into())),
                ("Tags", sorted_tags(tags)),
            ])
        })
        .collect();
    Value::List(list.into())
}

/// `/v1/catalog/node/NAME` as `*CatalogNode` (its services sorted by name), or `Nil`.
fn node(json: &Json) -> Value {
    if json.is_null() {
        return Value::Nil;
    }
    let mut services: Vec<(String, Value)> = json["Services"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, s)| {
            (
                s["Service"].as_str().unwrap_or_default().to_owned(),
                map(vec![
                    ("ID", text(&s["ID"])),
                    ("Service", text(&s["Service"])),
                    ("Tags", sorted_tags(&s["Tags"])),
                    ("Meta", string_map(&s["Meta"])),
                    ("Port", number(&s["Port"])),
                    ("Address", text(&s["Address"])),
                ]),
            )
        })
        .collect();
    services.sort_by(|a, b| a.0.cmp(&b.0));
    map(vec![
        ("Node", node_value(&json["Node"])),
        (
            "Services",
            Value::List(
                services
                    .into_iter()
                    .map(|(_, s)| s)
                    .collect::<Vec<_>>()
                    .into(),
            ),
        ),
    ])
}

/// `/v1/catalog/nodes` as `[]*Node`, by name.
fn nodes(json: &Json) -> Value {
    let mut list: Vec<(String, Value)> = json
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["Node"].as_str().unwrap_or_default().to_owned(),
                node_value(n),
            )
        })
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    Value::List(list.into_iter().map(|(_, n)| n).collect::<Vec<_>>().into())
}

/// A KV entry's value, base64-decoded (lossily as UTF-8).
fn decode_value(entry: &Json) -> String {
    let encoded = entry["Value"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A recursive KV read under `prefix` as `[]*KeyPair`: keys relative to the prefix,
/// folders (keys ending in `/`) left out; `ls` keeps only the first level.
fn pairs(json: &Json, prefix: &str, recurse: bool) -> Value {
    let base = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    };
    let list: Vec<Value> = json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let path = entry["Key"].as_str()?;
            let key = path.strip_prefix(&base).unwrap_or(path);
            if key.is_empty() || key.ends_with('/') || (!recurse && key.contains('/')) {
                return None;
            }
            Some(map(vec![
                ("Path", Value::String(path.into())),
                ("Key", Value::String(key.into())),
                ("Value", Value::String(decode_value(entry).into())),
                ("CreateIndex", number(&entry["CreateIndex"])),
                ("ModifyIndex", number(&entry["ModifyIndex"])),
                ("LockIndex", number(&entry["LockIndex"])),
                ("Flags", number(&entry["Flags"])),
                ("Session", text(&entry["Session"])),
            ]))
        })
        .collect();
    Value::List(list.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consul_templates_argument_strings() {
        let s = Dep::service("v1.2.web@dc2~_agent", None).expect("valid");
        assert_eq!(
            s,
            Dep::Service {
                name: "web".into(),
                tag: Some("v1.2".into()),
                dc: Some("dc2".into()),
                near: Some("_agent".into()),
                filter: HealthFilter::States(vec!["passing".into()]),
            }
        );
        assert_eq!(
            s.path(true),
            "/v1/health/service/web?dc=dc2&tag=v1.2&near=_agent&passing&stale"
        );
        let any = Dep::service("web", Some("any")).expect("valid");
        assert_eq!(any.path(false), "/v1/health/service/web");
        assert!(Dep::service("web", Some("passing,bogus")).is_err());
        assert!(Dep::service("we b", None).is_err());
        assert_eq!(
            Dep::datacenter_of(Some("@dc2"), "nodes"),
            Ok(Some("dc2".to_owned()))
        );
        assert!(Dep::datacenter_of(Some("dc2"), "nodes").is_err());
        assert_eq!(
            Dep::key("/app/config@dc1").expect("valid").path(false),
            "/v1/kv/app/config?dc=dc1"
        );
        assert_eq!(
            Dep::prefix("app", true).expect("valid").path(false),
            "/v1/kv/app?recurse"
        );
    }

    #[test]
    fn services_are_filtered_by_their_aggregated_health_and_sorted() {
        let body = br#"[
          {"Node":{"Node":"n2","Address":"10.0.0.2","Datacenter":"dc1"},
           "Service":{"ID":"web2","Service":"web","Tags":["b","a"],"Port":80,"Address":""},
           "Checks":[{"CheckID":"serfHealth","Status":"passing"},{"CheckID":"c","Status":"warning"}]},
          {"Node":{"Node":"n1","Address":"10.0.0.1","Datacenter":"dc1"},
           "Service":{"ID":"web1","Service":"web","Tags":[],"Port":81,"Address":"192.168.0.1"},
           "Checks":[{"CheckID":"serfHealth","Status":"passing"}]},
          {"Node":{"Node":"n3","Address":"10.0.0.3","Datacenter":"dc1"},
           "Service":{"ID":"web3","Service":"web","Tags":[],"Port":82},
           "Checks":[{"CheckID":"_node_maintenance","Status":"critical"}]}
        ]"#;
        let names = |filter: Option<&str>| -> Vec<String> {
            let dep = Dep::service("web", filter).expect("valid");
            let Value::List(list) = dep.decode(200, body).expect("decoded") else {
                panic!("a list");
            };
            list.iter()
                .map(|v| {
                    format!(
                        "{} {} {}",
                        v.field("ID").expect("ID"),
                        v.field("Address").expect("Address"),
                        v.field("Status").expect("Status")
                    )
                })
                .collect()
        };
        assert_eq!(names(None), ["web1 192.168.0.1 passing"]);
        assert_eq!(
            names(Some("passing,warning")),
            ["web1 192.168.0.1 passing", "web2 10.0.0.2 warning"]
        );
        assert_eq!(
            names(Some("any")),
            [
                "web1 192.168.0.1 passing",
                "web2 10.0.0.2 warning",
                "web3 10.0.0.3 maintenance"
            ]
        );
    }

    #[test]
    fn keys_and_prefixes() {
        let key = Dep::key("a").expect("valid");
        assert_eq!(key.decode(404, b"").expect("absent"), Value::Nil);
        let body = br#"[{"Key":"a","Value":"aGk="}]"#;
        assert_eq!(key.decode(200, body).expect("decoded").to_string(), "hi");
        let body = br#"[
          {"Key":"app/","Value":null},
          {"Key":"app/a","Value":"MQ=="},
          {"Key":"app/dir/","Value":null},
          {"Key":"app/dir/b","Value":"Mg=="}
        ]"#;
        let keys = |recurse: bool| -> Vec<String> {
            let Value::List(list) = Dep::prefix("app", recurse)
                .expect("valid")
                .decode(200, body)
                .expect("decoded")
            else {
                panic!("a list");
            };
            list.iter()
                .map(|p| {
                    format!(
                        "{}={}",
                        p.field("Key").expect("k"),
                        p.field("Value").expect("v")
                    )
                })
                .collect()
        };
        assert_eq!(keys(false), ["a=1"]);
        assert_eq!(keys(true), ["a=1", "dir/b=2"]);
        assert!(key.decode(500, b"boom").is_err());
    }
}
