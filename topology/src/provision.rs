//! `topology up` with `[acl]`: once every datacenter has a leader, makes the federation's
//! first tokens in the primary (policies `isthmus-replication` and `isthmus-dns`, the
//! replication, DNS and agent tokens, with the IDs `render` chose), then waits until the
//! other datacenters have copied them. Each step is skipped when already done, so `up` can
//! run again.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use topology::acl::{agent_key, AclSecrets, TokenIds, DNS_POLICY, REPLICATION_POLICY};
use topology::Topology;
use wire::Role;

/// The primary's API, with the management token.
struct Primary {
    addr: String,
    token: String,
}

impl Primary {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String)> {
        let url = format!("http://{}{path}", self.addr);
        let agent = crate::launch::client(&self.addr);
        let response = match (method, body) {
            ("GET", _) => agent.get(&url).header("X-Consul-Token", &self.token).call(),
            (_, Some(body)) => agent
                .put(&url)
                .header("X-Consul-Token", &self.token)
                .send(body.to_string()),
            (_, None) => agent
                .put(&url)
                .header("X-Consul-Token", &self.token)
                .send_empty(),
        };
        let mut response = response.with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Ok((status, text))
    }

    /// Creates `name` unless a policy has that name.
    fn policy(&self, name: &str, description: &str, rules: &str) -> Result<()> {
        if self
            .call("GET", &format!("/v1/acl/policy/name/{name}"), None)?
            .0
            == 200
        {
            return Ok(());
        }
        let body = json!({"Name": name, "Description": description, "Rules": rules});
        let (status, text) = self.call("PUT", "/v1/acl/policy", Some(&body))?;
        if status != 200 {
            bail!("creating the ACL policy {name}: {status} {}", text.trim());
        }
        Ok(())
    }

    /// Creates the token with `ids` unless it exists; `links` are its policies and
    /// identities, in Consul's body.
    fn token(&self, ids: &TokenIds, description: &str, links: Value) -> Result<()> {
        if self
            .call("GET", &format!("/v1/acl/token/{}", ids.accessor_id), None)?
            .0
            == 200
        {
            return Ok(());
        }
        let mut body = json!({
            "AccessorID": ids.accessor_id,
            "SecretID": ids.secret_id,
            "Description": description,
        });
        if let (Some(body), Some(links)) = (body.as_object_mut(), links.as_object()) {
            body.extend(links.clone());
        }
        let (status, text) = self.call("PUT", "/v1/acl/token", Some(&body))?;
        if status != 200 {
            bail!(
                "creating the token {description:?}: {status} {}",
                text.trim()
            );
        }
        Ok(())
    }
}

fn server_http(topology: &Topology, dc: &str) -> Option<String> {
    let dc = topology.datacenters.iter().find(|d| d.name == dc)?;
    let server = dc.nodes_of(Role::Server).next()?;
    Some(std::net::SocketAddr::new(server.address, server.ports.http).to_string())
}

/// Makes the tokens and waits for the other datacenters' copies.
pub fn provision(topology: &Topology, out: &Path) -> Result<()> {
    let path = out.join(topology::acl::TOKENS_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let secrets: AclSecrets =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let addr = server_http(topology, &topology.primary_datacenter)
        .context("the primary datacenter has no server")?;
    let primary = Primary {
        addr,
        token: secrets.management.secret_id.clone(),
    };
    println!("ACLs: waiting for the primary's bootstrap...");
    wait(
        "the management token to work",
        Duration::from_secs(60),
        || Ok(primary.call("GET", "/v1/acl/token/self", None)?.0 == 200),
    )?;
    primary.policy(
        REPLICATION_POLICY,
        "Lets other datacenters copy the primary's ACLs",
        "acl = \"write\"\noperator = \"write\"\nservice_prefix \"\" {\n  policy = \"read\"\n}\n",
    )?;
    primary.policy(
        DNS_POLICY,
        "What DNS (and requests without a token) may read",
        "node_prefix \"\" {\n  policy = \"read\"\n}\nservice_prefix \"\" {\n  policy = \"read\"\n}\nquery_prefix \"\" {\n  policy = \"read\"\n}\n",
    )?;
    primary.token(
        &secrets.replication,
        "Isthmus ACL replication",
        json!({"Policies": [{"Name": REPLICATION_POLICY}]}),
    )?;
    primary.token(
        &secrets.dns,
        "Isthmus DNS and default token",
        json!({"Policies": [{"Name": DNS_POLICY}]}),
    )?;
    let mut made = 0;
    for dc in &topology.datacenters {
        for node in dc.nodes.iter().filter(|n| n.role != Role::Gateway) {
            let Some(ids) = secrets.agents.get(&agent_key(&dc.name, &node.name)) else {
                continue;
            };
            let services: Vec<Value> = dc
                .services
                .iter()
                .filter(|s| s.node == node.name)
                .map(|s| json!({"ServiceName": s.definition.name, "Datacenters": [dc.name]}))
                .collect();
            primary.token(
                ids,
                &format!("Agent token of {}/{}", dc.name, node.name),
                json!({
                    "NodeIdentities": [{"NodeName": node.name, "Datacenter": dc.name}],
                    "ServiceIdentities": services,
                }),
            )?;
            made += 1;
        }
    }
    println!("ACLs: replication, DNS and {made} agent tokens in place");
    // The other datacenters copy them (their servers retry with a backoff).
    for dc in &topology.datacenters {
        if dc.name == topology.primary_datacenter {
            continue;
        }
        let Some(addr) = server_http(topology, &dc.name) else {
            continue;
        };
        let there = Primary {
            addr,
            token: secrets.dns.secret_id.clone(),
        };
        wait(
            &format!("{} to copy the primary's tokens", dc.name),
            Duration::from_secs(60),
            || Ok(there.call("GET", "/v1/acl/token/self", None)?.0 == 200),
        )?;
        println!("ACLs: {} has copied them", dc.name);
    }
    Ok(())
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        match done() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = format!(" (last error: {e:#})"),
        }
        if Instant::now() > deadline {
            bail!("gave up after {limit:?} waiting for {what}{last}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
