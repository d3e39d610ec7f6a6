//! What each endpoint needs, as Consul's endpoints check it. An endpoint not listed needs
//! `acl:write` (a management token): a new endpoint is closed until it is given its rule.
//!
//! Where Consul filters a list by what the token may read, this first version asks for read
//! on the whole resource (`service_prefix ""`, `node_prefix ""`, `key_prefix` of the tree):
//! it refuses where Consul would answer a shorter list (COMPATIBILITY.md says so).

use acl::{Authorizer, Global, Need, Resource};
use axum::http::{Method, Uri};

/// A requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Required {
    /// Nothing (status, the bootstrap, version).
    Nothing,
    /// Any token that resolves (`/v1/acl/token/self`).
    AnyToken,
    /// `need` on one name of a resource.
    One(Resource, String, Need),
    /// `need` on every name under a prefix.
    Under(Resource, String, Need),
    /// `need` on an unsegmented resource.
    Cluster(Global, Need),
    /// Several at once.
    All(Vec<Required>),
    /// `acl:write` (a management token, or a rule granting it; never the default policy).
    Management,
}

fn resource_name(resource: Resource) -> &'static str {
    match resource {
        Resource::Key => "key",
        Resource::Service => "service",
        Resource::Node => "node",
        Resource::Agent => "agent",
        Resource::Session => "session",
        Resource::Event => "event",
        Resource::Query => "query",
    }
}

fn need_name(need: Need) -> &'static str {
    match need {
        Need::Read => "read",
        Need::List => "list",
        Need::Write => "write",
    }
}

fn global_name(global: Global) -> &'static str {
    match global {
        Global::Operator => "operator",
        Global::Keyring => "keyring",
        Global::Acl => "acl",
        Global::Mesh => "mesh",
        Global::Peering => "peering",
    }
}

impl Required {
    /// The permission `authorizer` lacks, in Consul's words (`'key:write' on "app/x"`), or
    /// none when it is allowed.
    pub fn refused_by(&self, authorizer: &Authorizer) -> Option<String> {
        match self {
            Required::Nothing | Required::AnyToken => None,
            Required::One(resource, name, need) => (!authorizer.allows(*resource, name, *need))
                .then(|| {
                    format!(
                        "'{}:{}' on \"{name}\"",
                        resource_name(*resource),
                        need_name(*need)
                    )
                }),
            Required::Under(resource, prefix, need) => {
                (!authorizer.allows_all_under(*resource, prefix, *need)).then(|| {
                    format!(
                        "'{}:{}' on \"{prefix}\" and everything under it",
                        resource_name(*resource),
                        need_name(*need)
                    )
                })
            }
            Required::Cluster(global, need) => (!authorizer.allows_global(*global, *need))
                .then(|| format!("'{}:{}'", global_name(*global), need_name(*need))),
            Required::All(all) => all.iter().find_map(|r| r.refused_by(authorizer)),
            Required::Management => (!authorizer.allows_global(Global::Acl, Need::Write))
                .then(|| "'acl:write'".to_owned()),
        }
    }
}

fn key_of(path: &str) -> String {
    wire::percent::decode_path(path.strip_prefix("/v1/kv/").unwrap_or_default()).unwrap_or_default()
}

/// What `method path?query` needs.
pub fn required(method: &Method, uri: &Uri) -> Required {
    use Required::*;
    let path = uri.path();
    let query = uri.query().unwrap_or_default();
    let has = |flag: &str| {
        query
            .split('&')
            .any(|p| p == flag || p.starts_with(&format!("{flag}=")))
    };
    let read = *method == Method::GET;
    let need = if read { Need::Read } else { Need::Write };
    let last = |prefix: &str| {
        wire::percent::decode_path(path.strip_prefix(prefix).unwrap_or_default())
            .unwrap_or_default()
    };
    let everything = |need: Need| {
        All(vec![
            Under(Resource::Node, String::new(), need),
            Under(Resource::Service, String::new(), need),
        ])
    };
    if path.starts_with("/v1/status/")
        || path == "/v1/agent/version"
        || path == "/v1/acl/bootstrap"
        || path == "/v1/acl/replication"
    {
        return Nothing;
    }
    if path.starts_with("/v1/kv/") {
        let key = key_of(path);
        return if (has("recurse") || has("keys")) && read {
            // Answered with what the token may read (the handler filters).
            AnyToken
        } else if has("recurse") || has("keys") {
            Under(Resource::Key, key, need)
        } else {
            One(Resource::Key, key, need)
        };
    }
    if path == "/v1/acl/token/self" {
        return AnyToken;
    }
    if path.starts_with("/v1/acl/") || path.starts_with("/v1/isthmus/acl/") {
        return if path == "/v1/isthmus/acl/resolve" {
            AnyToken
        } else {
            Cluster(Global::Acl, need)
        };
    }
    // The handlers check `session:write` on the session's node and filter what is read.
    if path.starts_with("/v1/session/") {
        return AnyToken;
    }
    if let Some(name) = path.strip_prefix("/v1/event/fire/") {
        return One(Resource::Event, name.to_owned(), Need::Write);
    }
    if path == "/v1/event/list" {
        return Under(Resource::Event, String::new(), Need::Read);
    }
    if path == "/v1/operator/keyring" {
        return Cluster(Global::Keyring, need);
    }
    if path.starts_with("/v1/operator/")
        || path.starts_with("/v1/isthmus/datacenters")
        || path == "/v1/isthmus/gateways"
    {
        return Cluster(Global::Operator, need);
    }
    if let Some(node) = path.strip_prefix("/v1/coordinate/node/") {
        return One(Resource::Node, node.to_owned(), Need::Read);
    }
    // Answered with what the token may read (the handlers filter, as Consul's).
    if read
        && (path == "/v1/catalog/services"
            || path == "/v1/catalog/nodes"
            || path.starts_with("/v1/catalog/service/")
            || path.starts_with("/v1/catalog/node/")
            || path.starts_with("/v1/catalog/node-services/")
            || path.starts_with("/v1/health/")
            || path == "/v1/coordinate/nodes")
    {
        return AnyToken;
    }
    // Checked by the handlers, which know the node and service (Consul's rules).
    if path == "/v1/catalog/register" || path == "/v1/catalog/deregister" {
        return AnyToken;
    }
    if path.starts_with("/v1/catalog/")
        || path.starts_with("/v1/health/")
        || path.starts_with("/v1/coordinate/")
    {
        return everything(Need::Read);
    }
    if path == "/v1/txn" {
        return Under(Resource::Key, String::new(), Need::Write);
    }
    if path.starts_with("/v1/agent/") {
        return agent(method, path, &last);
    }
    Management
}

/// The agent's own endpoints: reading it needs `agent:read` on its node, changing its
/// services and checks `service:write` (checks: `node:write` as well), joining and leaving
/// `agent:write`, force-leave `operator:write`.
fn agent(method: &Method, path: &str, last: &dyn Fn(&str) -> String) -> Required {
    use Required::*;
    let everything_read = All(vec![
        Under(Resource::Service, String::new(), Need::Read),
        Under(Resource::Node, String::new(), Need::Read),
    ]);
    if *method == Method::GET {
        return match path {
            // Filtered (and one service checked) by the handlers, as Consul's.
            "/v1/agent/services" | "/v1/agent/checks" => AnyToken,
            p if p.starts_with("/v1/agent/service/") => AnyToken,
            p if p.starts_with("/v1/agent/health/") => everything_read,
            _ => Under(Resource::Agent, String::new(), Need::Read),
        };
    }
    if path.starts_with("/v1/agent/force-leave/") {
        return Cluster(Global::Operator, Need::Write);
    }
    if path.starts_with("/v1/agent/service/") || path.starts_with("/v1/agent/check/") {
        let _ = last;
        return All(vec![
            Under(Resource::Service, String::new(), Need::Write),
            Under(Resource::Node, String::new(), Need::Write),
        ]);
    }
    Under(Resource::Agent, String::new(), Need::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(method: Method, uri: &str) -> Required {
        required(&method, &uri.parse().expect("uri"))
    }

    #[test]
    fn endpoints_need_what_consuls_need() {
        assert_eq!(
            need(Method::PUT, "/v1/kv/app/x"),
            Required::One(Resource::Key, "app/x".into(), Need::Write)
        );
        assert_eq!(need(Method::GET, "/v1/kv/app/?recurse"), Required::AnyToken);
        assert_eq!(
            need(Method::DELETE, "/v1/kv/app/?recurse"),
            Required::Under(Resource::Key, "app/".into(), Need::Write)
        );
        assert_eq!(need(Method::GET, "/v1/status/leader"), Required::Nothing);
        assert_eq!(need(Method::PUT, "/v1/acl/bootstrap"), Required::Nothing);
        assert_eq!(
            need(Method::GET, "/v1/operator/keyring"),
            Required::Cluster(Global::Keyring, Need::Read)
        );
        assert_eq!(
            need(Method::POST, "/v1/operator/raft/transfer-leader"),
            Required::Cluster(Global::Operator, Need::Write)
        );
        assert_eq!(need(Method::GET, "/v1/snapshot"), Required::Management);
        assert_eq!(
            need(Method::PUT, "/v1/some/new/endpoint"),
            Required::Management
        );
    }

    #[test]
    fn refusals_name_the_permission_as_consul() {
        let auth = Authorizer::new(
            acl::Rules::parse(r#"key_prefix "app/" { policy = "write" }"#).expect("rules"),
            false,
        );
        assert_eq!(need(Method::PUT, "/v1/kv/app/x").refused_by(&auth), None);
        assert_eq!(
            need(Method::PUT, "/v1/kv/other/x")
                .refused_by(&auth)
                .as_deref(),
            Some("'key:write' on \"other/x\"")
        );
        assert_eq!(
            need(Method::PUT, "/v1/operator/keyring")
                .refused_by(&auth)
                .as_deref(),
            Some("'keyring:write'")
        );
    }
}
