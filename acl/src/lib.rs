//! Consul's ACL rule language and its evaluation.
//!
//! Owns: parsing rules (HCL or JSON, as Consul takes a policy's `Rules`), merging the rules
//! of every policy a token carries, the rules Consul's service and node identities stand
//! for, and deciding whether an [`Authorizer`] allows an access. Must not touch: tokens'
//! storage, HTTP, time. Pure.
//!
//! Consul's semantics: a segmented resource (`key`, `service`, ...) has exact rules (`key
//! "a/b"`) and prefix rules (`key_prefix "a/"`); for a name, an exact rule wins, else the
//! longest matching prefix; with neither, the default policy decides. When several policies
//! name the same segment, the strongest disposition wins: `deny` over `write` over `list`
//! over `read`. Unsegmented resources (`operator`, `keyring`, `acl`, `mesh`, `peering`) take
//! one disposition.

use std::collections::BTreeMap;

use serde_json::Value;

/// A rule's disposition, weakest to strongest as policies merge (see [`Access::merge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// May read.
    Read,
    /// May read and list (`key_prefix` with `acl.enable_key_list_policy`).
    List,
    /// May read and change.
    Write,
    /// May do nothing.
    Deny,
}

impl Access {
    fn parse(text: &str) -> Result<Access, RulesError> {
        match text {
            "read" => Ok(Access::Read),
            "list" => Ok(Access::List),
            "write" => Ok(Access::Write),
            "deny" => Ok(Access::Deny),
            other => Err(RulesError::Disposition(other.to_owned())),
        }
    }

    /// The disposition two policies naming the same segment add up to (Consul's
    /// `takesPrecedenceOver`: deny, then write, then list, then read).
    pub fn merge(self, other: Access) -> Access {
        self.max(other)
    }

    /// Whether this disposition grants `need`.
    pub fn grants(self, need: Need) -> bool {
        match (self, need) {
            (Access::Deny, _) => false,
            (Access::Write, _) => true,
            (Access::List, Need::Read | Need::List) => true,
            (Access::Read, Need::Read) => true,
            _ => false,
        }
    }
}

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// To read.
    Read,
    /// To list keys under a prefix.
    List,
    /// To change.
    Write,
}

/// The segmented resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// KV keys.
    Key,
    /// Services.
    Service,
    /// Nodes.
    Node,
    /// Agents (by node name).
    Agent,
    /// Sessions (by node name).
    Session,
    /// User events (by name).
    Event,
    /// Prepared queries (by name).
    Query,
}

impl Resource {
    const ALL: [(Resource, &'static str); 7] = [
        (Resource::Key, "key"),
        (Resource::Service, "service"),
        (Resource::Node, "node"),
        (Resource::Agent, "agent"),
        (Resource::Session, "session"),
        (Resource::Event, "event"),
        (Resource::Query, "query"),
    ];
}

/// The unsegmented resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Global {
    /// Cluster operations (Raft, autopilot, federation).
    Operator,
    /// The gossip keyring.
    Keyring,
    /// ACLs themselves.
    Acl,
    /// Service mesh settings (accepted, unused).
    Mesh,
    /// Cluster peering (accepted, unused).
    Peering,
}

impl Global {
    const ALL: [(Global, &'static str); 5] = [
        (Global::Operator, "operator"),
        (Global::Keyring, "keyring"),
        (Global::Acl, "acl"),
        (Global::Mesh, "mesh"),
        (Global::Peering, "peering"),
    ];
}

/// Why rules were refused, in words that point at the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// Neither HCL nor JSON.
    #[error("Failed to parse ACL rules: {0}")]
    Syntax(String),
    /// A resource Consul does not have.
    #[error("Failed to parse ACL rules: unknown resource {0:?}")]
    Resource(String),
    /// A disposition other than read, list, write or deny.
    #[error("Failed to parse ACL rules: invalid policy {0:?} (read, list, write or deny)")]
    Disposition(String),
    /// A rule without its `policy`.
    #[error("Failed to parse ACL rules: {0} has no policy")]
    Missing(String),
}

/// The exact and prefix rules of one segmented resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Segments {
    exact: BTreeMap<String, Access>,
    prefix: BTreeMap<String, Access>,
}

impl Segments {
    /// The disposition for `name`: the exact rule, else the longest prefix.
    fn lookup(&self, name: &str) -> Option<Access> {
        if let Some(access) = self.exact.get(name) {
            return Some(*access);
        }
        self.prefix
            .iter()
            .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, access)| *access)
    }

    /// The strongest disposition of any rule that could apply to a name under `prefix`
    /// (for a recursive read or delete, which touches every key under it).
    fn any_under(&self, prefix: &str) -> impl Iterator<Item = Access> + '_ {
        let prefix = prefix.to_owned();
        self.exact
            .iter()
            .chain(self.prefix.iter())
            .filter(move |(name, _)| name.starts_with(prefix.as_str()))
            .map(|(_, access)| *access)
    }
}

/// A set of rules: one policy's, or every policy of a token merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    segmented: BTreeMap<Resource, Segments>,
    globals: BTreeMap<Global, Access>,
}

impl Rules {
    /// Parses a policy's `Rules`: HCL (`key_prefix "app/" { policy = "write" }`) or JSON
    /// (`{"key_prefix": {"app/": {"policy": "write"}}}`). Empty rules grant nothing.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        if text.trim().is_empty() {
            return Ok(Rules::default());
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => hcl::from_str(text).map_err(|e| RulesError::Syntax(e.to_string()))?,
        };
        Rules::from_value(&value)
    }

    fn from_value(value: &Value) -> Result<Rules, RulesError> {
        let Value::Object(object) = value else {
            return Err(RulesError::Syntax("rules must be an object".to_owned()));
        };
        let mut rules = Rules::default();
        for (key, body) in object {
            if let Some((global, _)) = Global::ALL.iter().find(|(_, name)| name == key) {
                let text = body
                    .as_str()
                    .ok_or_else(|| RulesError::Missing(key.clone()))?;
                rules.add_global(*global, Access::parse(text)?);
                continue;
            }
            let (name, is_prefix) = match key.strip_suffix("_prefix") {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            let Some((resource, _)) = Resource::ALL.iter().find(|(_, n)| *n == name) else {
                return Err(RulesError::Resource(key.clone()));
            };
            // `key "a" {..}` blocks: an object of segment -> body, or (repeated blocks) a
            // list of such objects.
            let blocks: Vec<&serde_json::Map<String, Value>> = match body {
                Value::Object(map) => vec![map],
                Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
                _ => return Err(RulesError::Missing(key.clone())),
            };
            for block in blocks {
                for (segment, rule) in block {
                    let rule = match rule {
                        Value::Array(items) => items.first().unwrap_or(&Value::Null),
                        other => other,
                    };
                    let text = rule
                        .get("policy")
                        .and_then(Value::as_str)
                        .ok_or_else(|| RulesError::Missing(format!("{key} {segment:?}")))?;
                    rules.add(*resource, segment, is_prefix, Access::parse(text)?);
                }
            }
        }
        Ok(rules)
    }

    fn add(&mut self, resource: Resource, segment: &str, prefix: bool, access: Access) {
        let segments = self.segmented.entry(resource).or_default();
        let map = if prefix {
            &mut segments.prefix
        } else {
            &mut segments.exact
        };
        let entry = map.entry(segment.to_owned()).or_insert(access);
        *entry = entry.merge(access);
    }

    fn add_global(&mut self, global: Global, access: Access) {
        let entry = self.globals.entry(global).or_insert(access);
        *entry = entry.merge(access);
    }

    /// These rules and `other`'s together (a token with several policies).
    pub fn merge(&mut self, other: &Rules) {
        for (resource, segments) in &other.segmented {
            for (segment, access) in &segments.exact {
                self.add(*resource, segment, false, *access);
            }
            for (segment, access) in &segments.prefix {
                self.add(*resource, segment, true, *access);
            }
        }
        for (global, access) in &other.globals {
            self.add_global(*global, *access);
        }
    }

    /// Consul's service identity: write on the service (and its sidecar), read on every
    /// service and node (to discover them).
    pub fn service_identity(service: &str) -> Rules {
        let mut rules = Rules::default();
        rules.add(Resource::Service, service, false, Access::Write);
        rules.add(
            Resource::Service,
            &format!("{service}-sidecar-proxy"),
            false,
            Access::Write,
        );
        rules.add(Resource::Service, "", true, Access::Read);
        rules.add(Resource::Node, "", true, Access::Read);
        rules
    }

    /// Consul's node identity: write on the node (an agent's own token), read on services.
    pub fn node_identity(node: &str) -> Rules {
        let mut rules = Rules::default();
        rules.add(Resource::Node, node, false, Access::Write);
        rules.add(Resource::Service, "", true, Access::Read);
        rules
    }
}

/// What a token may do: its rules over the default policy, or everything (a management
/// token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorizer {
    rules: Rules,
    /// When no rule applies: `allow` grants everything, `deny` nothing.
    default_allow: bool,
    management: bool,
}

impl Authorizer {
    /// A token with `rules`, under the agent's `default_policy` (`allow`: true).
    pub fn new(rules: Rules, default_allow: bool) -> Authorizer {
        Authorizer {
            rules,
            default_allow,
            management: false,
        }
    }

    /// A management token (`global-management`): everything.
    pub fn management() -> Authorizer {
        Authorizer {
            rules: Rules::default(),
            default_allow: true,
            management: true,
        }
    }

    /// Whether this is a management token.
    pub fn is_management(&self) -> bool {
        self.management
    }

    /// Whether `need` on `name` of `resource` is allowed.
    pub fn allows(&self, resource: Resource, name: &str, need: Need) -> bool {
        if self.management {
            return true;
        }
        let found = self
            .rules
            .segmented
            .get(&resource)
            .and_then(|segments| segments.lookup(name));
        match found {
            Some(access) => access.grants(need),
            None => self.default_allow,
        }
    }

    /// Whether `need` on every name under `prefix` is allowed (a recursive read, list or
    /// delete): the prefix itself, and no rule under it refusing.
    pub fn allows_all_under(&self, resource: Resource, prefix: &str, need: Need) -> bool {
        if self.management {
            return true;
        }
        if !self.allows(resource, prefix, need) {
            return false;
        }
        match self.rules.segmented.get(&resource) {
            Some(segments) => segments.any_under(prefix).all(|access| access.grants(need)),
            None => true,
        }
    }

    /// Whether `need` on an unsegmented resource is allowed. ACL management (`acl`) is
    /// never granted by the default policy, only by a rule or a management token (as
    /// Consul's `allow` authorizer, which does everything but manage ACLs).
    pub fn allows_global(&self, global: Global, need: Need) -> bool {
        if self.management {
            return true;
        }
        match self.rules.globals.get(&global) {
            Some(access) => access.grants(need),
            None => self.default_allow && global != Global::Acl,
        }
    }
}

#[cfg(test)]
mod tests;
