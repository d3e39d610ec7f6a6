//! ACLs on real agents, with Consul's config, bodies and answers: `default_policy = "deny"`
//! refuses anonymous requests, `initial_management` bootstraps once, a policy's rules
//! decide what its token may do, deleted tokens stop working, client agents resolve
//! tokens through a server.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{cli, Cluster};

const MANAGEMENT: &str = "8f9ed2b4-5c6e-4c1a-9f3b-2d4e6a8b0c1d";

fn with_token(
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
    }
    .expect("an answer");
    (response.status, response.text())
}

#[test]
fn acls_deny_by_default_and_policies_decide() {
    let mut cluster = Cluster::render_with_clients(156, 1, 1, "");
    for agent in &cluster.agents {
        agent.edit_config(|config| {
            config["acl"] = serde_json::json!({
                "enabled": true,
                "default_policy": "deny",
                "down_policy": "extend-cache",
                "tokens": {"initial_management": MANAGEMENT, "agent": MANAGEMENT}
            });
        });
    }
    cluster.agents[1].edit_config(|config| {
        config["disable_remote_exec"] = serde_json::json!(false);
    });
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0]);
    // initial_management bootstraps once: the API's bootstrap is then refused.
    cluster.wait_for(
        "the initial management token",
        Duration::from_secs(20),
        |c| {
            let (status, _) = with_token(c, 0, "GET", "/v1/acl/token/self", MANAGEMENT, "");
            (status == 200).then_some(())
        },
    );
    let again = cluster.request(0, "PUT", "/v1/acl/bootstrap", b"");
    assert_eq!(again.status, 403, "{}", again.text());
    assert!(
        again.text().contains("ACL bootstrap no longer allowed"),
        "{}",
        again.text()
    );

    // Anonymous: refused, in Consul's words; status needs no token.
    let anonymous = cluster.request(0, "PUT", "/v1/kv/x", b"v");
    assert_eq!(anonymous.status, 403);
    assert_eq!(
        anonymous.text(),
        "Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' lacks permission 'key:write' on \"x\""
    );
    assert_eq!(
        cluster.request(0, "GET", "/v1/status/leader", b"").status,
        200
    );
    assert_eq!(
        with_token(&cluster, 0, "PUT", "/v1/kv/x", MANAGEMENT, "v").0,
        200
    );

    // A policy in Consul's HCL, a token with it.
    let policy = serde_json::json!({
        "Name": "app-writer",
        "Description": "app/ only",
        "Rules": "key_prefix \"app/\" {\n  policy = \"write\"\n}\n"
    });
    let (status, body) = with_token(
        &cluster,
        1,
        "PUT",
        "/v1/acl/policy",
        MANAGEMENT,
        &policy.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let policy: Value = serde_json::from_str(&body).expect("policy");
    assert_eq!(policy["Name"], "app-writer");
    let request = r#"{"Description": "app", "Policies": [{"Name": "app-writer"}]}"#;
    let (status, body) = with_token(&cluster, 0, "PUT", "/v1/acl/token", MANAGEMENT, request);
    assert_eq!(status, 200, "{body}");
    let token: Value = serde_json::from_str(&body).expect("token");
    let secret = token["SecretID"].as_str().expect("secret").to_owned();
    let accessor = token["AccessorID"].as_str().expect("accessor").to_owned();
    assert_eq!(token["Policies"][0]["Name"], "app-writer");

    assert_eq!(
        with_token(&cluster, 0, "PUT", "/v1/kv/app/x", &secret, "1"),
        (200, "true".into())
    );
    let (status, text) = with_token(&cluster, 0, "PUT", "/v1/kv/other/x", &secret, "1");
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains(&format!(
            "AccessorID '{accessor}' lacks permission 'key:write' on \"other/x\""
        )),
        "{text}"
    );
    assert_eq!(
        with_token(&cluster, 0, "GET", "/v1/kv/x", &secret, "").0,
        403
    );
    assert_eq!(
        with_token(&cluster, 0, "PUT", "/v1/operator/keyring", &secret, "{}").0,
        403
    );
    // Through a client agent (forwarded, checked by the server) and with Consul's CLI flags.
    let (code, out, err) = cli(
        &cluster.agents[1].http(),
        &["kv", "put", &format!("-token={secret}"), "app/cli", "v"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = cli(
        &cluster.agents[1].http(),
        &["kv", "put", &format!("-token={secret}"), "nope/cli", "v"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("Permission denied"), "{err}");
    // The client agent's own endpoints: resolved through a server.
    assert_eq!(
        with_token(&cluster, 1, "GET", "/v1/agent/self", &secret, "").0,
        403
    );
    assert_eq!(
        with_token(&cluster, 1, "GET", "/v1/agent/self", MANAGEMENT, "").0,
        200
    );
    let (status, me) = with_token(&cluster, 1, "GET", "/v1/acl/token/self", &secret, "");
    assert_eq!(status, 200, "{me}");
    assert!(me.contains(&accessor));

    // Identities as Consul's templates: a node identity writes its own node only; a service
    // identity registers its service on a node without touching the node.
    let identities = r#"{"NodeIdentities": [{"NodeName": "edge1", "Datacenter": "dc1"}], "ServiceIdentities": [{"ServiceName": "web"}]}"#;
    let (status, body) = with_token(&cluster, 0, "PUT", "/v1/acl/token", MANAGEMENT, identities);
    assert_eq!(status, 200, "{body}");
    let id_token: Value = serde_json::from_str(&body).expect("token");
    let id_secret = id_token["SecretID"].as_str().expect("secret").to_owned();
    let node = |name: &str| format!(r#"{{"Node": "{name}", "Address": "10.1.1.1"}}"#);
    assert_eq!(
        with_token(
            &cluster,
            0,
            "PUT",
            "/v1/catalog/register",
            &id_secret,
            &node("edge1")
        )
        .0,
        200
    );
    let (status, text) = with_token(
        &cluster,
        0,
        "PUT",
        "/v1/catalog/register",
        &id_secret,
        &node("edge2"),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("'node:write' on \"edge2\""), "{text}");
    let web =
        r#"{"Node": "edge1", "SkipNodeUpdate": true, "Service": {"Service": "web", "Port": 80}}"#;
    assert_eq!(
        with_token(&cluster, 0, "PUT", "/v1/catalog/register", &id_secret, web).0,
        200
    );
    let db =
        r#"{"Node": "edge1", "SkipNodeUpdate": true, "Service": {"Service": "db", "Port": 5432}}"#;
    assert_eq!(
        with_token(&cluster, 0, "PUT", "/v1/catalog/register", &id_secret, db).0,
        403
    );

    // Lists are filtered, as Consul's, and say so: the app token reads app/ keys only.
    assert_eq!(
        with_token(&cluster, 0, "PUT", "/v1/kv/app/y", MANAGEMENT, "2").0,
        200
    );
    assert_eq!(
        with_token(&cluster, 0, "PUT", "/v1/kv/other/y", MANAGEMENT, "2").0,
        200
    );
    let listed = cluster.agents[0]
        .client()
        .with_token(Some(secret.clone()))
        .get("/v1/kv/?keys")
        .expect("an answer");
    assert_eq!(listed.status, 200, "{}", listed.text());
    let keys: Vec<String> = listed.json().expect("keys");
    assert!(
        keys.iter().all(|k| k.starts_with("app/")) && keys.len() >= 2,
        "{keys:?}"
    );
    assert_eq!(
        listed.header("x-consul-results-filtered-by-acls"),
        Some("true")
    );
    let services = cluster.agents[0]
        .client()
        .with_token(Some(secret.clone()))
        .get("/v1/catalog/services")
        .expect("an answer");
    assert_eq!((services.status, services.text().as_str()), (200, "{}"));
    // Every other list too: checks, a node, coordinates, the agent's services, sessions.
    let filtered = |agent: usize, path: &str, token: &str| {
        let r = cluster.agents[agent]
            .client()
            .with_token(Some(token.to_owned()))
            .get(path)
            .expect("an answer");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        (
            r.text(),
            r.header("x-consul-results-filtered-by-acls").is_some(),
        )
    };
    assert_eq!(
        filtered(0, "/v1/health/state/any", &secret),
        ("[]".into(), true)
    );
    assert_eq!(
        filtered(0, "/v1/health/node/s1", &secret),
        ("[]".into(), true)
    );
    assert_eq!(
        filtered(0, "/v1/catalog/node/s1", &secret),
        ("null".into(), true)
    );
    assert_eq!(filtered(1, "/v1/agent/checks", &secret).0, "{}");
    let (all, hidden) = filtered(0, "/v1/health/state/any", MANAGEMENT);
    assert!(all.contains("serfHealth") && !hidden, "{all}");
    // A token that reads nodes but no service sees node checks only.
    let nodes_only = r#"{"Name": "nodes", "Rules": "node_prefix \"\" { policy = \"read\" }"}"#;
    assert_eq!(
        with_token(&cluster, 0, "PUT", "/v1/acl/policy", MANAGEMENT, nodes_only).0,
        200
    );
    let (_, body) = with_token(
        &cluster,
        0,
        "PUT",
        "/v1/acl/token",
        MANAGEMENT,
        r#"{"Policies": [{"Name": "nodes"}]}"#,
    );
    let nodes_secret = serde_json::from_str::<Value>(&body).expect("token")["SecretID"]
        .as_str()
        .expect("secret")
        .to_owned();
    let (checks, _) = filtered(0, "/v1/health/state/any", &nodes_secret);
    assert!(checks.contains("serfHealth"), "{checks}");
    let (node, hidden) = filtered(0, "/v1/catalog/node/s1", &nodes_secret);
    assert!(
        node.contains("\"Node\"") && hidden,
        "the consul service is hidden: {node}"
    );
    // Sessions: `session:write` on the node to create one, lists filtered by `session:read`.
    let (status, text) = with_token(&cluster, 0, "PUT", "/v1/session/create", &secret, "{}");
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("lacks permission 'session:write' on \"s1\""),
        "{text}"
    );
    let (status, text) = with_token(&cluster, 0, "PUT", "/v1/session/create", MANAGEMENT, "{}");
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        filtered(0, "/v1/session/list", &secret),
        ("[]".into(), true)
    );
    assert!(filtered(0, "/v1/session/list", MANAGEMENT)
        .0
        .contains("\"Node\":\"s1\""));

    // Deleted: the token stops working at once on the server.
    let (status, _) = with_token(
        &cluster,
        0,
        "DELETE",
        &format!("/v1/acl/token/{accessor}"),
        MANAGEMENT,
        "",
    );
    assert_eq!(status, 200);
    let (status, text) = with_token(&cluster, 0, "PUT", "/v1/kv/app/x", &secret, "2");
    assert_eq!((status, text.as_str()), (403, "ACL not found"));

    // DNS shows only what the default token may read: nothing under deny without one.
    let dig = |name: &str| {
        let out = std::process::Command::new("dig")
            .args([
                "@127.156.0.1",
                "-p",
                "8600",
                "+short",
                "+time=2",
                "+tries=1",
                name,
            ])
            .output()
            .expect("dig (dnsutils) is installed by the test script");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(
        dig("consul.service.consul"),
        "",
        "anonymous DNS under deny shows nothing"
    );
    let (status, _) = with_token(
        &cluster,
        0,
        "PUT",
        "/v1/agent/token/default",
        MANAGEMENT,
        &format!("{{\"Token\": \"{MANAGEMENT}\"}}"),
    );
    assert_eq!(status, 200);
    cluster.wait_for(
        "DNS through the default token",
        Duration::from_secs(10),
        |_| (dig("consul.service.consul") == "127.156.0.1").then_some(()),
    );

    // Remote exec under ACLs: the job is read and answered with the agent's token.
    let (code, out, err) = cli(
        &cluster.agents[0].http(),
        &["exec", &format!("-token={MANAGEMENT}"), "echo under-acl"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("c1: under-acl"), "{out}{err}");
    let (code, out, err) = cli(
        &cluster.agents[0].http(),
        &["exec", &format!("-token={nodes_secret}"), "echo read-only"],
    );
    assert_ne!(code, 0, "a token that only reads nodes cannot exec: {out}");
    assert!(err.contains("Permission denied"), "{err}");

    // The client agent's anti-entropy carries the agent token: its node is registered.
    cluster.wait_for("c1 in the catalog", Duration::from_secs(30), |c| {
        let (status, text) = with_token(c, 0, "GET", "/v1/catalog/nodes", MANAGEMENT, "");
        (status == 200 && text.contains("\"c1\"")).then_some(())
    });
}

#[test]
fn the_acl_cli_bootstraps_once_and_manages_tokens_and_policies() {
    let mut cluster = Cluster::render(157, 1, "");
    cluster.agents[0].edit_config(|config| {
        config["acl"] = serde_json::json!({
            "enabled": true,
            "default_policy": "deny",
            "enable_token_persistence": true
        });
    });
    cluster.agents[0].start();
    cluster.wait_for_leader_among(&[0]);
    let http = cluster.agents[0].http();
    let (code, out, err) = cli(&http, &["acl", "bootstrap"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Description:      Bootstrap Token (Global Management)"),
        "{out}"
    );
    assert!(
        out.contains("00000000-0000-0000-0000-000000000001 - global-management"),
        "{out}"
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .map(|s| s.trim().to_owned())
        .expect("a SecretID line");
    let (code, _, err) = cli(&http, &["acl", "bootstrap"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Failed ACL bootstrapping") && err.contains("no longer allowed"),
        "{err}"
    );

    let rules = cluster.dir.path().join("rules.hcl");
    std::fs::write(&rules, "key_prefix \"app/\" {\n  policy = \"write\"\n}\n").expect("rules");
    let token = format!("-token={secret}");
    let rules_arg = format!("-rules=@{}", rules.display());
    let (code, out, err) = cli(
        &http,
        &["acl", "policy", "create", &token, "-name=app", &rules_arg],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Name:         app") && out.contains("key_prefix \"app/\""),
        "{out}"
    );
    let (code, out, _) = cli(&http, &["acl", "policy", "list", &token]);
    assert_eq!(code, 0);
    assert!(
        out.contains("app:") && out.contains("global-management:"),
        "{out}"
    );
    let (code, out, err) = cli(
        &http,
        &[
            "acl",
            "token",
            "create",
            &token,
            "-description=ci",
            "-policy-name=app",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let app_secret = out
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .map(|s| s.trim().to_owned())
        .expect("a SecretID line");
    let accessor = out
        .lines()
        .find_map(|l| l.strip_prefix("AccessorID:"))
        .map(|s| s.trim().to_owned())
        .expect("an AccessorID line");
    let (code, out, _) = cli(
        &http,
        &[
            "acl",
            "token",
            "read",
            "-self",
            &format!("-token={app_secret}"),
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains(&accessor) && out.contains(" - app"), "{out}");
    let (code, _, err) = cli(
        &http,
        &["kv", "put", &format!("-token={app_secret}"), "app/a", "1"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(
        &http,
        &["acl", "token", "delete", &token, &format!("-id={accessor}")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("Token \"{accessor}\" deleted successfully")
    );
    let (code, _, err) = cli(
        &http,
        &["kv", "put", &format!("-token={app_secret}"), "app/a", "2"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("ACL not found"), "{err}");

    // Roles, token update and clone, policy update: Consul's commands and output.
    let (code, out, err) = cli(
        &http,
        &[
            "acl",
            "role",
            "create",
            &token,
            "-name=deployer",
            "-description=ships app",
            "-policy-name=app",
            "-service-identity=web:dc1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Name:         deployer")
            && out.contains(" - app")
            && out.contains("web (Datacenters: dc1)"),
        "{out}"
    );
    let role_id = out
        .lines()
        .find_map(|l| l.strip_prefix("ID:"))
        .map(|s| s.trim().to_owned())
        .expect("an ID line");
    let (code, out, _) = cli(&http, &["acl", "role", "list", &token]);
    assert_eq!(code, 0);
    assert!(out.contains("deployer:") && out.contains(&role_id), "{out}");
    let (code, out, err) = cli(
        &http,
        &[
            "acl",
            "role",
            "update",
            &token,
            &format!("-id={role_id}"),
            "-node-identity=edge:dc1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("edge (Datacenter: dc1)") && out.contains(" - app"),
        "merged: {out}"
    );
    let (code, out, err) = cli(
        &http,
        &[
            "acl",
            "token",
            "create",
            &token,
            "-description=short",
            "-policy-name=app",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let short = out
        .lines()
        .find_map(|l| l.strip_prefix("AccessorID:"))
        .map(|s| s.trim().to_owned())
        .expect("an AccessorID line");
    let (code, out, err) = cli(
        &http,
        &[
            "acl",
            "token",
            "update",
            &token,
            &format!("-id={short}"),
            "-description=renamed",
            "-policy-name=global-management",
            "-merge-policies",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Token updated successfully.")
            && out.contains("Description:      renamed")
            && out.contains(" - app")
            && out.contains(" - global-management"),
        "{out}"
    );
    let (code, out, err) = cli(
        &http,
        &[
            "acl",
            "token",
            "clone",
            &token,
            &format!("-id={short}"),
            "-description=copy",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Token cloned successfully.")
            && out.contains("Description:      copy")
            && !out.contains(&format!("AccessorID:       {short}")),
        "{out}"
    );
    std::fs::write(&rules, "key_prefix \"apps/\" {\n  policy = \"read\"\n}\n").expect("rules");
    let (code, out, err) = cli(
        &http,
        &["acl", "policy", "update", &token, "-name=app", &rules_arg],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("key_prefix \"apps/\""), "{out}");
    let (code, out, err) = cli(&http, &["acl", "role", "delete", &token, "-name=deployer"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "Role \"deployer\" deleted successfully");
    let (code, _, _) = cli(&http, &["acl", "role", "read", &token, "-name=deployer"]);
    assert_eq!(code, 1);

    // With token persistence, a token set through the API outlives a restart, kept in the
    // data directory (owner-only) as Consul's `acl-tokens.json`.
    let (code, _, err) = cli(
        &http,
        &["acl", "set-agent-token", &token, "default", &secret],
    );
    assert_eq!(code, 0, "{err}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(&cluster.agents[0].config).expect("config"))
            .expect("json");
    // `data_dir` is relative to the config file's directory.
    let agent_dir = cluster.agents[0].config.parent().expect("config dir");
    let file = agent_dir
        .join(config["data_dir"].as_str().expect("data_dir"))
        .join("acl-tokens.json");
    let kept = std::fs::read_to_string(&file).expect("acl-tokens.json");
    assert!(kept.contains(&secret), "{kept}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    cluster.agents[0].stop();
    cluster.agents[0].start();
    cluster.wait_for_leader_among(&[0]);
    cluster.wait_for(
        "an anonymous write under the kept default token",
        Duration::from_secs(20),
        |c| (c.request(0, "PUT", "/v1/kv/after-restart", b"1").status == 200).then_some(()),
    );
}
