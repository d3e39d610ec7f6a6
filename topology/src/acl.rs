//! `[acl] enabled = true`: the tokens a federation starts with, decided at render time and
//! kept in the state directory (`acl/tokens.json`, 0600; the management secret alone in
//! `acl/management.token`, 0600), and the `acl` block of each agent's config.
//!
//! - The **management** token: `initial_management` of the primary's servers, whose
//!   leader bootstraps with it at start (once).
//! - A **replication** token (policy `isthmus-replication`: `acl = "write"`) that the
//!   other datacenters' servers present to copy the primary's ACLs, tokens included.
//! - A **DNS** token (policy `isthmus-dns`: read on every node, service and query), every
//!   agent's `tokens.default`, so DNS answers as before (as Consul's ACL tutorial does).
//! - One **agent** token per agent, with the node identity of its node and the service
//!   identities of the services the file puts on it: its `tokens.agent`.
//!
//! Secrets are made once and kept; `topology up` creates the tokens (with these accessor
//! and secret IDs) through the primary's API, which is idempotent.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use wire::agent_config::{AclConfig, AclTokensConfig};
use wire::Role;

use crate::model::{Datacenter, Node, Topology};
use crate::render::RenderError;

/// Where the secrets are kept, under the state directory.
pub const TOKENS_FILE: &str = "acl/tokens.json";
/// The management secret alone (for `CONSUL_HTTP_TOKEN_FILE`).
pub const MANAGEMENT_FILE: &str = "acl/management.token";
/// The replication token's policy.
pub const REPLICATION_POLICY: &str = "isthmus-replication";
/// The DNS token's policy.
pub const DNS_POLICY: &str = "isthmus-dns";

/// One token's IDs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIds {
    /// Its accessor ID.
    pub accessor_id: String,
    /// Its secret.
    pub secret_id: String,
}

/// Every token the federation starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclSecrets {
    /// The management token.
    pub management: TokenIds,
    /// The replication token.
    pub replication: TokenIds,
    /// The DNS (default) token.
    pub dns: TokenIds,
    /// Agent tokens by `dc/node`.
    pub agents: BTreeMap<String, TokenIds>,
}

/// A UUID made from `seed` (fresh random bytes) and `label` (HMAC-SHA256, cut to 16 bytes).
fn derived_uuid(seed: &[u8], label: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, seed);
    let tag = ring::hmac::sign(&key, label.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&tag.as_ref()[..16]);
    // RFC 4122 version 4 and variant bits, as random UUIDs have.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    wire::names::uuid_of(bytes)
}

fn ids(seed: &[u8], label: &str) -> TokenIds {
    TokenIds {
        accessor_id: derived_uuid(seed, &format!("{label}/accessor")),
        secret_id: derived_uuid(seed, &format!("{label}/secret")),
    }
}

/// The agents that get a token: servers and client agents.
fn agents(topology: &Topology) -> impl Iterator<Item = (&Datacenter, &Node)> {
    topology.datacenters.iter().flat_map(|dc| {
        dc.nodes
            .iter()
            .filter(|n| n.role != Role::Gateway)
            .map(move |n| (dc, n))
    })
}

/// The key of an agent in [`AclSecrets::agents`].
pub fn agent_key(dc: &str, node: &str) -> String {
    format!("{dc}/{node}")
}

/// The secrets kept in the output (`existing`), with any that are missing made from
/// `seed`; none without `[acl]`.
pub fn secrets(
    topology: &Topology,
    existing: &dyn Fn(&Path) -> Option<String>,
    seed: &[u8],
) -> Result<Option<AclSecrets>, RenderError> {
    if topology.acl.is_none() {
        return Ok(None);
    }
    let mut secrets = match existing(Path::new(TOKENS_FILE)) {
        Some(text) => {
            serde_json::from_str::<AclSecrets>(&text).map_err(|e| RenderError::BadExisting {
                path: TOKENS_FILE.to_owned(),
                message: format!("{e}; remove it only if no agent runs with its tokens"),
            })?
        }
        None => AclSecrets {
            management: ids(seed, "management"),
            replication: ids(seed, "replication"),
            dns: ids(seed, "dns"),
            agents: BTreeMap::new(),
        },
    };
    for (dc, node) in agents(topology) {
        let key = agent_key(&dc.name, &node.name);
        secrets
            .agents
            .entry(key.clone())
            .or_insert_with(|| ids(seed, &format!("agent/{key}")));
    }
    Ok(Some(secrets))
}

/// The `acl` block of an agent's config.
pub fn agent_acl(
    topology: &Topology,
    dc: &Datacenter,
    node: &Node,
    secrets: &AclSecrets,
) -> Option<AclConfig> {
    let settings = topology.acl.as_ref()?;
    let primary = dc.name == topology.primary_datacenter;
    let server = node.role == Role::Server;
    Some(AclConfig {
        enabled: Some(true),
        default_policy: Some(settings.default_policy.clone()),
        down_policy: Some("extend-cache".to_owned()),
        token_ttl: None,
        policy_ttl: None,
        role_ttl: None,
        enable_token_replication: (server && !primary).then_some(true),
        enable_token_persistence: Some(true),
        tokens: Some(AclTokensConfig {
            initial_management: (server && primary).then(|| secrets.management.secret_id.clone()),
            agent: secrets
                .agents
                .get(&agent_key(&dc.name, &node.name))
                .map(|ids| ids.secret_id.clone()),
            default: Some(secrets.dns.secret_id.clone()),
            agent_recovery: None,
            replication: (server && !primary).then(|| secrets.replication.secret_id.clone()),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[acl]
enabled = true

[[datacenters]]
name = "dc1"
servers = 1
clients = 1
gateways = 1

[[datacenters]]
name = "dc2"
servers = 1
gateways = 1
"#;

    #[test]
    fn secrets_are_made_once_then_kept_and_each_agent_has_its_own() {
        let (topology, _) = crate::parse(FILE, "t").expect("valid");
        let none = |_: &Path| None;
        let first = secrets(&topology, &none, b"seed one")
            .expect("secrets")
            .expect("acl on");
        assert_eq!(first.agents.len(), 3);
        let text = serde_json::to_string(&first).expect("json");
        let kept = |p: &Path| (p == Path::new(TOKENS_FILE)).then(|| text.clone());
        let again = secrets(&topology, &kept, b"another seed")
            .expect("secrets")
            .expect("acl on");
        assert_eq!(again, first);
        let dc1 = &topology.datacenters[0];
        let server = dc1.nodes_of(Role::Server).next().expect("a server");
        let acl = agent_acl(&topology, dc1, server, &first).expect("acl");
        let tokens = acl.tokens.expect("tokens");
        assert_eq!(
            tokens.initial_management.as_deref(),
            Some(first.management.secret_id.as_str())
        );
        assert_eq!(tokens.replication, None);
        assert_eq!(acl.default_policy.as_deref(), Some("deny"));
        let dc2 = &topology.datacenters[1];
        let secondary = dc2.nodes_of(Role::Server).next().expect("a server");
        let acl = agent_acl(&topology, dc2, secondary, &first).expect("acl");
        assert_eq!(acl.enable_token_replication, Some(true));
        let tokens = acl.tokens.expect("tokens");
        assert_eq!(tokens.initial_management, None);
        assert_eq!(
            tokens.replication.as_deref(),
            Some(first.replication.secret_id.as_str())
        );
        assert_ne!(tokens.agent, Some(first.management.secret_id.clone()));
        let broken = |_: &Path| Some("{".to_owned());
        assert!(secrets(&topology, &broken, b"s").is_err());
    }
}
