//! Rotating the gossip key without downtime, as Consul's `keyring`: install a new key on
//! every agent of both datacenters (LAN pools and the WAN pool), make it primary, remove the
//! old one; gossip goes on throughout, and the rotated keyring survives a restart. Real
//! `dc-agent` and `wan-gateway` processes on 127.120.0.0/24 (dc1) and 127.121.0.0/24 (dc2).

mod support;

use std::time::Duration;

use support::Cluster;

const FILE: &str = r#"
[gossip]
key = "generate"

[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.120.0.1" }]
clients = [{ name = "c1", address = "127.120.0.4" }]
gateways = [{ name = "gw1", address = "127.120.0.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.121.0.1" }]
gateways = [{ name = "gw1", address = "127.121.0.100" }]
"#;

const S1: usize = 0;
const C1: usize = 1;
const DC2_S1: usize = 3;

fn keyring_file(cluster: &Cluster, node: &str) -> Vec<String> {
    let path = cluster
        .dir
        .path()
        .join(node)
        .join("data/serf/local.keyring");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

fn alive_members(cluster: &Cluster, agent: usize, wan: bool) -> usize {
    let path = if wan {
        "/v1/agent/members?wan=1"
    } else {
        "/v1/agent/members"
    };
    let members: Vec<serde_json::Value> = cluster
        .request(agent, "GET", path, b"")
        .json()
        .unwrap_or_default();
    members.iter().filter(|m| m["Status"] == 1).count()
}

#[test]
fn the_gossip_key_rotates_across_the_federation_without_downtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    support::render_topology(FILE, dir.path());
    let out = dir.path().to_owned();
    let mut cluster = support::federation_nodes(
        dir,
        &[
            ("dc1", "s1", "127.120.0.1"),
            ("dc1", "c1", "127.120.0.4"),
            ("dc1", "gw1", "127.120.0.100"),
            ("dc2", "s1", "127.121.0.1"),
            ("dc2", "gw1", "127.121.0.100"),
        ],
    );

    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[S1]);
    cluster.wait_for_leader_among(&[DC2_S1]);
    cluster.wait_for("both pools whole", Duration::from_secs(30), |c| {
        (alive_members(c, S1, false) == 2 && alive_members(c, S1, true) == 2).then_some(())
    });
    let old = keyring_file(&cluster, "dc1/s1");
    assert_eq!(old.len(), 1, "the keyring file is written at first start");
    let old = old[0].clone();
    let http = cluster.agents[C1].http();

    // Listed from a client agent: the WAN pool and both datacenters' LAN pools.
    // (Gossip is datagrams: an operation a member did not answer in time fails, and is
    // simply run again; every operation is idempotent.)
    let expected = format!(
        "==> Gathering installed encryption keys...\n\nWAN:\n  {old} [2/2]\n\ndc1 (LAN):\n  {old} [2/2]\n\ndc2 (LAN):\n  {old} [1/1]\n"
    );
    cluster.wait_for("keyring -list", Duration::from_secs(20), |_| {
        let (code, listed, _) = support::cli(&http, &["keyring", "-list"]);
        (code == 0 && listed == expected).then_some(())
    });

    // Rotate: install, use, remove.
    let (_, new, _) = support::cli(&http, &["keygen"]);
    let new = new.trim().to_owned();
    for args in [
        ["keyring", "-install", new.as_str()],
        ["keyring", "-use", new.as_str()],
        ["keyring", "-remove", old.as_str()],
    ] {
        cluster.wait_for("a keyring operation", Duration::from_secs(20), |_| {
            let (code, _, _) = support::cli(&http, &args);
            (code == 0).then_some(())
        });
    }
    let (_, listed, _) = support::cli(&http, &["keyring", "-list"]);
    assert!(!listed.contains(&old), "{listed}");
    assert_eq!(listed.matches(&format!("{new} [")).count(), 3, "{listed}");
    for node in ["dc1/s1", "dc1/c1", "dc2/s1"] {
        assert_eq!(
            keyring_file(&cluster, node),
            std::slice::from_ref(&new),
            "{node}"
        );
    }
    // Gossip never stopped, and goes on under the new key alone.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(alive_members(&cluster, S1, false), 2);
    assert_eq!(alive_members(&cluster, S1, true), 2);
    let r = cluster.request(S1, "PUT", "/v1/kv/rotated?dc=dc2", b"yes");
    assert_eq!(r.text(), "true");

    // The primary cannot be removed; a bad key is refused before anything changes.
    let (code, _, err) = support::cli(&http, &["keyring", "-remove", &new]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the key is still primary on 3 agents"),
        "{err}"
    );
    let (code, _, err) = support::cli(&http, &["keyring", "-install", "not-a-key"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Error: Invalid key"), "{err}");
    // A change in one datacenter alone would split the WAN pool: refused.
    let r = cluster.request(
        C1,
        "PUT",
        "/v1/operator/keyring?local-only",
        format!(r#"{{"Key":"{new}"}}"#).as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    // `-rotate` does the three steps in one, checked on every member of every pool.
    let rotated = cluster.wait_for("keyring -rotate", Duration::from_secs(60), |_| {
        let (code, out, _) = support::cli(&http, &["keyring", "-rotate"]);
        (code == 0).then_some(out)
    });
    assert!(
        rotated.contains("installed on every member of every pool"),
        "{rotated}"
    );
    assert!(
        rotated.contains("primary on every member of every pool"),
        "{rotated}"
    );
    let newest = rotated.lines().last().unwrap_or_default().trim().to_owned();
    assert_ne!(newest, new);
    let (_, listed, _) = support::cli(&http, &["keyring", "-list"]);
    assert!(!listed.contains(&new), "{listed}");
    assert_eq!(
        listed.matches(&format!("{newest} [")).count(),
        3,
        "{listed}"
    );
    for node in ["dc1/s1", "dc1/c1", "dc2/s1"] {
        assert_eq!(
            keyring_file(&cluster, node),
            std::slice::from_ref(&newest),
            "{node}"
        );
    }

    // A restarted agent keeps the rotated keyring (its config still says the old key) and
    // rejoins; without the file it could not.
    cluster.agents[C1].stop();
    cluster.agents[C1].start();
    let log_path = out.join("dc1-c1.log");
    cluster.wait_for(
        "the restarted client back in the pool",
        Duration::from_secs(30),
        |_| {
            let log = std::fs::read_to_string(&log_path).ok()?;
            let restarted = log.rsplit("agent stopped").next()?;
            (restarted.contains("`encrypt` is not in the keyring file")
                && restarted.contains("member joined"))
            .then_some(())
        },
    );
    cluster.wait_for("both members alive", Duration::from_secs(30), |c| {
        (alive_members(c, S1, false) == 2 && alive_members(c, C1, false) == 2).then_some(())
    });
}

/// Members `agent` itself sees alive (a freshly restarted agent knows only what its
/// gossip with the others, under its current settings, told it).
fn sees_both(cluster: &Cluster, agent: usize) -> bool {
    let members: Vec<serde_json::Value> = cluster.agents[agent]
        .client()
        .get("/v1/agent/members")
        .ok()
        .and_then(|r| r.json().ok())
        .unwrap_or_default();
    members.iter().filter(|m| m["Status"] == 1).count() == 2
}

#[test]
fn encryption_is_turned_on_in_a_running_datacenter_by_rolling_restarts() {
    // s1 and c1 on 127.165.0.0/24, first without a gossip key.
    let mut cluster = Cluster::render_with_clients(165, 1, 1, "");
    let key = {
        let text = std::fs::read_to_string(&cluster.agents[0].config).expect("config");
        let config: serde_json::Value = serde_json::from_str(&text).expect("json");
        config["encrypt"]
            .as_str()
            .expect("a rendered key")
            .to_owned()
    };
    for agent in &cluster.agents {
        agent.edit_config(|c| {
            c.as_object_mut().map(|o| o.remove("encrypt"));
        });
    }
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0]);
    cluster.wait_for("plaintext gossip", Duration::from_secs(30), |c| {
        (sees_both(c, 0) && sees_both(c, 1)).then_some(())
    });

    // Each step is a rolling restart (c1, then s1), and gossip works after each restart:
    // accept and send plaintext with the key installed, then seal, then refuse plaintext.
    let steps: [(Option<bool>, Option<bool>); 3] = [
        (Some(false), Some(false)),
        (Some(false), Some(true)),
        (None, None),
    ];
    for (step, (incoming, outgoing)) in steps.into_iter().enumerate() {
        for agent in [1, 0] {
            cluster.agents[agent].edit_config(|c| {
                c["encrypt"] = serde_json::json!(key);
                match incoming {
                    Some(v) => c["encrypt_verify_incoming"] = serde_json::json!(v),
                    None => {
                        c.as_object_mut()
                            .map(|o| o.remove("encrypt_verify_incoming"));
                    }
                }
                match outgoing {
                    Some(v) => c["encrypt_verify_outgoing"] = serde_json::json!(v),
                    None => {
                        c.as_object_mut()
                            .map(|o| o.remove("encrypt_verify_outgoing"));
                    }
                }
            });
            cluster.agents[agent].stop();
            cluster.agents[agent].start();
            cluster.wait_for(
                &format!("gossip after step {step}'s restart of agent {agent}"),
                Duration::from_secs(30),
                |c| (sees_both(c, agent) && sees_both(c, 1 - agent)).then_some(()),
            );
        }
    }

    // Now every packet is sealed and plaintext is refused: an agent without the key is
    // not let in, and s1 says why in its metrics.
    cluster.agents[1].edit_config(|c| {
        c.as_object_mut().map(|o| o.remove("encrypt"));
    });
    let data = cluster.agents[1]
        .config
        .parent()
        .expect("dir")
        .join("data/serf");
    let _ = std::fs::remove_dir_all(&data);
    cluster.agents[1].stop();
    cluster.agents[1].start();
    cluster.wait_for("s1 refusing plaintext", Duration::from_secs(30), |c| {
        let metrics = c
            .request(0, "GET", "/v1/agent/metrics?format=prometheus", b"")
            .text();
        metrics
            .lines()
            .any(|l| {
                l.starts_with("isthmus_gossip_dropped_packets_total")
                    && l.contains("reason=\"unencrypted\"")
                    && !l.ends_with(" 0")
            })
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !sees_both(&cluster, 1),
        "a keyless agent joined an encrypted pool"
    );
}
