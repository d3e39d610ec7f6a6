//! ACLs across a two-DC federation (dc1 the primary on 127.158.0.0/24, dc2 on
//! 127.159.0.0/24; the second test on 127.161 and 127.162), real servers and gateways: dc2 copies dc1's policies and global tokens
//! (Consul's replication, `/v1/acl/replication`), sends its global ACL writes to dc1, keeps
//! `Local` tokens to itself, serves with its copy while dc1 is cut off, and, without token
//! replication, asks dc1 for tokens it does not know and keeps the answers (`extend-cache`).

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::Cluster;

const FILE: &str = r#"
primary_datacenter = "dc1"

[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.D1.0.1" }]
gateways = [{ name = "gw1", address = "127.D1.0.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.D2.0.1" }]
clients = [{ name = "c1", address = "127.D2.0.4" }]
gateways = [{ name = "gw1", address = "127.D2.0.100" }]
"#;

const MANAGEMENT: &str = "3b0d6f2a-8c41-4e7b-a1d2-6f5e4c3b2a19";
const DC1: usize = 0;
const DC1_GW: usize = 1;
const DC2: usize = 2;
const DC2_C1: usize = 4;

fn call(
    cluster: &Cluster,
    agent: usize,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, String) {
    let client = cluster.agents[agent]
        .client()
        .with_token(Some(token.to_owned()));
    let response = match method {
        "GET" => client.get(path),
        "PUT" => client.put(path, body.as_bytes()),
        "DELETE" => client.delete(path),
        other => panic!("{other}"),
    };
    match response {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e),
    }
}

fn secret_of(body: &str) -> (String, String) {
    let token: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (
        token["SecretID"].as_str().expect("SecretID").to_owned(),
        token["AccessorID"].as_str().expect("AccessorID").to_owned(),
    )
}

/// Makes a token in `agent`'s datacenter (or, for a global one asked of dc2, in dc1).
fn token(cluster: &Cluster, agent: usize, body: &str) -> (String, String) {
    let (status, text) = call(cluster, agent, "PUT", "/v1/acl/token", MANAGEMENT, body);
    assert_eq!(status, 200, "{text}{}", cluster.logs());
    secret_of(&text)
}

/// Starts the federation, dc1 on `127.D1.0.0/24` and dc2 on `127.D2.0.0/24`.
fn start(d1: u8, d2: u8, token_replication: bool) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = FILE
        .replace("D1", &d1.to_string())
        .replace("D2", &d2.to_string());
    support::render_topology(&file, dir.path());
    let address = |d: u8, n: u8| format!("127.{d}.0.{n}");
    let (s1, g1, s2, g2) = (
        address(d1, 1),
        address(d1, 100),
        address(d2, 1),
        address(d2, 100),
    );
    let mut cluster = support::federation_nodes(
        dir,
        &[
            ("dc1", "s1", &s1),
            ("dc1", "gw1", &g1),
            ("dc2", "s1", &s2),
            ("dc2", "gw1", &g2),
            ("dc2", "c1", &address(d2, 4)),
        ],
    );
    cluster.agents[DC1].edit_config(|config| {
        config["acl"] = serde_json::json!({
            "enabled": true,
            "default_policy": "deny",
            "tokens": {"initial_management": MANAGEMENT, "agent": MANAGEMENT}
        });
    });
    cluster.agents[DC2_C1].edit_config(|config| {
        config["acl"] = serde_json::json!({
            "enabled": true,
            "default_policy": "deny",
            "tokens": {"agent": MANAGEMENT}
        });
    });
    cluster.agents[DC2].edit_config(|config| {
        config["acl"] = serde_json::json!({
            "enabled": true,
            "default_policy": "deny",
            "down_policy": "extend-cache",
            "token_ttl": "1s",
            "enable_token_replication": token_replication,
            "tokens": {"agent": MANAGEMENT, "replication": MANAGEMENT}
        });
    });
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[DC1]);
    cluster.wait_for_leader_among(&[DC2]);
    cluster
}

#[test]
fn dc2_copies_dc1s_acls_and_keeps_serving_when_cut_off() {
    let cluster = start(158, 159, true);
    // dc1 bootstraps with initial_management; dc2 copies the token.
    let started = Instant::now();
    cluster.wait_for(
        "dc2's copy of the management token",
        Duration::from_secs(60),
        |c| (call(c, DC2, "GET", "/v1/acl/token/self", MANAGEMENT, "").0 == 200).then_some(()),
    );
    eprintln!(
        "management token usable in dc2 {:?} after both leaders were up",
        started.elapsed()
    );
    let (status, text) = call(&cluster, DC2, "GET", "/v1/acl/replication", "", "");
    assert_eq!(status, 200, "{text}");
    let replication: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(replication["Enabled"], true, "{text}");
    assert_eq!(replication["Running"], true, "{text}");
    assert_eq!(replication["SourceDatacenter"], "dc1", "{text}");
    assert_eq!(replication["ReplicationType"], "tokens", "{text}");
    assert!(replication["ReplicatedIndex"].as_u64() > Some(0), "{text}");
    assert!(
        replication["ReplicatedTokenIndex"].as_u64() > Some(0),
        "{text}"
    );
    let (_, primary) = call(&cluster, DC1, "GET", "/v1/acl/replication", "", "");
    assert!(primary.contains(r#""Enabled":false"#), "{primary}");
    // The bootstrap is the primary's: asked of dc2, dc1 answers that it is done.
    let (status, text) = call(&cluster, DC2, "PUT", "/v1/acl/bootstrap", "", "");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("ACL bootstrap no longer allowed"), "{text}");

    // A policy written through dc2 is dc1's (the primary's), then copied back.
    let policy = r#"{"Name": "app-writer", "Rules": "key_prefix \"app/\" { policy = \"write\" }"}"#;
    let (status, text) = call(&cluster, DC2, "PUT", "/v1/acl/policy", MANAGEMENT, policy);
    assert_eq!(status, 200, "{text}");
    let (status, text) = call(
        &cluster,
        DC1,
        "GET",
        "/v1/acl/policy/name/app-writer",
        MANAGEMENT,
        "",
    );
    assert_eq!(status, 200, "dc1 holds the policy at once: {text}");

    // A global token made in dc1 works in dc2 once copied; its rules hold there.
    let (secret, accessor) = token(&cluster, DC1, r#"{"Policies": [{"Name": "app-writer"}]}"#);
    let made = Instant::now();
    cluster.wait_for("dc1's token in dc2", Duration::from_secs(30), |c| {
        (call(c, DC2, "PUT", "/v1/kv/app/x", &secret, "1") == (200, "true".to_owned()))
            .then_some(())
    });
    eprintln!(
        "a new dc1 token was usable in dc2 after {:?}",
        made.elapsed()
    );
    let (status, text) = call(&cluster, DC2, "PUT", "/v1/kv/other/x", &secret, "1");
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains(&format!(
            "AccessorID '{accessor}' lacks permission 'key:write'"
        )),
        "{text}"
    );
    // A `?dc=dc2` request from dc1 carries the token and is checked in dc2.
    assert_eq!(
        call(
            &cluster,
            DC1,
            "PUT",
            "/v1/kv/app/from-dc1?dc=dc2",
            &secret,
            "1"
        ),
        (200, "true".to_owned())
    );
    assert_eq!(
        call(&cluster, DC1, "PUT", "/v1/kv/other/y?dc=dc2", &secret, "1").0,
        403
    );

    // Local tokens stay where they were made (the body's names in any case, as Consul's).
    let (dc2_local, _) = token(
        &cluster,
        DC2,
        r#"{"local": true, "Policies": [{"Name": "app-writer"}]}"#,
    );
    let (dc1_local, _) = token(
        &cluster,
        DC1,
        r#"{"Local": true, "Policies": [{"Name": "app-writer"}]}"#,
    );
    assert_eq!(
        call(&cluster, DC2, "PUT", "/v1/kv/app/local", &dc2_local, "1").0,
        200
    );
    let (status, text) = call(&cluster, DC1, "PUT", "/v1/kv/app/local", &dc2_local, "1");
    assert_eq!((status, text.as_str()), (403, "ACL not found"));
    // A later change of the tables comes across; dc1's local token never does.
    let (later, _) = token(&cluster, DC1, r#"{"Policies": [{"Name": "app-writer"}]}"#);
    cluster.wait_for("a later dc1 token in dc2", Duration::from_secs(30), |c| {
        (call(c, DC2, "GET", "/v1/acl/token/self", &later, "").0 == 200).then_some(())
    });
    assert_eq!(
        call(&cluster, DC2, "PUT", "/v1/kv/app/y", &dc1_local, "1").0,
        403
    );

    // Deleted in dc1 (asked of dc2: it goes to dc1), the token stops working in both.
    let (status, text) = call(
        &cluster,
        DC2,
        "DELETE",
        &format!("/v1/acl/token/{accessor}"),
        MANAGEMENT,
        "",
    );
    assert_eq!(status, 200, "{text}");
    let deleted = Instant::now();
    assert_eq!(
        call(&cluster, DC1, "PUT", "/v1/kv/app/z", &secret, "1").0,
        403
    );
    cluster.wait_for("the deletion in dc2", Duration::from_secs(30), |c| {
        (call(c, DC2, "PUT", "/v1/kv/app/z", &secret, "1").0 == 403).then_some(())
    });
    eprintln!(
        "a deleted dc1 token stopped working in dc2 after {:?}",
        deleted.elapsed()
    );

    // dc1 cut off (its gateway gone): dc2 keeps serving with its copy and says what fails.
    let mut cluster = cluster;
    cluster.agents[DC1_GW].kill();
    cluster.wait_for("replication to notice", Duration::from_secs(90), |c| {
        let (_, text) = call(c, DC2, "GET", "/v1/acl/replication", "", "");
        let status: Value = serde_json::from_str(&text).ok()?;
        (status["LastErrorMessage"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
            && status["LastError"] != "0001-01-01T00:00:00Z")
            .then_some(())
    });
    assert_eq!(
        call(&cluster, DC2, "PUT", "/v1/kv/app/cut", &later, "1"),
        (200, "true".to_owned())
    );
    assert_eq!(
        call(&cluster, DC2, "PUT", "/v1/kv/other/cut", &later, "1").0,
        403
    );
    assert_eq!(call(&cluster, DC2, "PUT", "/v1/kv/app/cut", "", "1").0, 403);
    let (_, metrics) = call(
        &cluster,
        DC2,
        "GET",
        "/v1/agent/metrics?format=prometheus",
        MANAGEMENT,
        "",
    );
    assert!(
        metrics.contains("isthmus_acl_replication_errors_total"),
        "{metrics}"
    );
}

#[test]
fn without_token_replication_dc2_asks_dc1_and_extends_its_cache() {
    let mut cluster = start(161, 162, false);
    cluster.wait_for(
        "dc1's management token, asked for by dc2",
        Duration::from_secs(60),
        |c| (call(c, DC2, "GET", "/v1/acl/token/self", MANAGEMENT, "").0 == 200).then_some(()),
    );
    let (_, text) = call(&cluster, DC2, "GET", "/v1/acl/replication", "", "");
    assert!(text.contains(r#""ReplicationType":"policies""#), "{text}");
    let policy = r#"{"Name": "app-writer", "Rules": "key_prefix \"app/\" { policy = \"write\" }"}"#;
    let (status, text) = call(&cluster, DC1, "PUT", "/v1/acl/policy", MANAGEMENT, policy);
    assert_eq!(status, 200, "{text}");
    let (secret, accessor) = token(&cluster, DC1, r#"{"Policies": [{"Name": "app-writer"}]}"#);
    cluster.wait_for("dc1's token in dc2", Duration::from_secs(30), |c| {
        (call(c, DC2, "PUT", "/v1/kv/app/x", &secret, "1") == (200, "true".to_owned()))
            .then_some(())
    });
    // Tokens are not copied (token reads in dc2 are dc1's to answer).
    let (_, text) = call(&cluster, DC2, "GET", "/v1/acl/replication", "", "");
    assert!(text.contains(r#""ReplicatedTokenIndex":0"#), "{text}");
    let (_, list) = call(&cluster, DC2, "GET", "/v1/acl/tokens", MANAGEMENT, "");
    assert!(list.contains(&accessor), "{list}");
    // A dc1 local token is refused in dc2.
    let (dc1_local, _) = token(
        &cluster,
        DC1,
        r#"{"Local": true, "Policies": [{"Name": "app-writer"}]}"#,
    );
    let (status, text) = call(&cluster, DC2, "PUT", "/v1/kv/app/y", &dc1_local, "1");
    assert_eq!((status, text.as_str()), (403, "ACL not found"));
    // dc2's client agent resolves dc1's tokens through its server, which asks dc1.
    let (status, text) = call(&cluster, DC2_C1, "GET", "/v1/agent/self", MANAGEMENT, "");
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        call(
            &cluster,
            DC2_C1,
            "PUT",
            "/v1/kv/app/via-client",
            &secret,
            "1"
        ),
        (200, "true".to_owned())
    );
    // Local tokens need token replication here (as Consul's).
    let (status, text) = call(
        &cluster,
        DC2,
        "PUT",
        "/v1/acl/token",
        MANAGEMENT,
        r#"{"Local": true}"#,
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Local tokens are disabled"), "{text}");
    // A secret that cannot be a token is no token, never "the primary is unreachable".
    let (status, text) = call(&cluster, DC2, "GET", "/v1/kv/app/x?token=%01", "", "");
    assert_eq!((status, text.as_str()), (403, "ACL not found"));

    // dc1 cut off: past token_ttl (1 s), extend-cache keeps what dc2 knew.
    cluster.agents[DC1_GW].kill();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        call(&cluster, DC2, "PUT", "/v1/kv/app/cut", &secret, "1"),
        (200, "true".to_owned())
    );
    assert_eq!(
        call(&cluster, DC2, "PUT", "/v1/kv/other/cut", &secret, "1").0,
        403
    );
}
