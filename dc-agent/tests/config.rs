//! `dc-agent validate` and `dc-agent keygen`, run as a user runs them, on the configs that
//! `topology render` writes and on broken ones.

use std::fs;
use std::path::Path;
use std::process::Command;

use expect_test::{expect, Expect};

mod support;
use wire::Role;

fn dc_agent(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_dc-agent"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run dc-agent");
    format!(
        "exit: {}\n{}{}",
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Renders `examples/two-dcs.toml` into `out` with the topology library.
fn render_example(out: &Path) -> topology::Topology {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/two-dcs.toml");
    let source = fs::read_to_string(&example).expect("read example");
    assert!(topology::parse(&source, "two-dcs").is_ok_and(|(_, warnings)| warnings.is_empty()));
    support::render_topology(&source, out)
}

#[test]
fn every_rendered_agent_config_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let topology = render_example(dir.path());
    let mut n_agents = 0;
    for dc in &topology.datacenters {
        for node in dc.nodes.iter().filter(|n| n.role != Role::Gateway) {
            let config = topology::render::config_path(&dc.name, node);
            let output = dc_agent(dir.path(), &["validate", &config.display().to_string()]);
            assert_eq!(
                output,
                "exit: 0\nConfiguration is valid!\n",
                "{}",
                config.display()
            );
            n_agents += 1;
        }
    }
    assert_eq!(n_agents, 8);
}

fn check_broken(edit: impl Fn(&mut serde_json::Value), expect: Expect) {
    let dir = tempfile::tempdir().expect("tempdir");
    render_example(dir.path());
    let path = dir.path().join("dc1/s1/agent.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("read")).expect("json");
    edit(&mut config);
    fs::write(&path, serde_json::to_string_pretty(&config).expect("json")).expect("write");
    expect.assert_eq(&dc_agent(dir.path(), &["validate", "dc1/s1/agent.json"]));
}

#[test]
fn a_certificate_of_another_role_or_dc_is_refused() {
    check_broken(
        |config| config["tls"]["defaults"]["cert_file"] = "../../dc2/s1/tls/cert.pem".into(),
        expect![[r#"
            exit: 1
            Config validation failed: dc1/s1/agent.json: dc1/s1/../../dc2/s1/tls/cert.pem is not a certificate for a server of dc1 (domain consul); it names a server of dc2 (node s1). Issue one with `pki cert create --server --dc dc1`
        "#]],
    );
    check_broken(
        |config| {
            config["tls"]["defaults"]["cert_file"] = "../c1/tls/cert.pem".into();
            config["tls"]["defaults"]["key_file"] = "../c1/tls/key.pem".into();
        },
        expect![[r#"
            exit: 1
            Config validation failed: dc1/s1/agent.json: dc1/s1/../c1/tls/cert.pem is not a certificate for a server of dc1 (domain consul); it names a client of dc1 (node c1). Issue one with `pki cert create --server --dc dc1`
        "#]],
    );
}

#[test]
fn bad_values_are_all_reported() {
    check_broken(
        |config| {
            config["encrypt"] = "c2hvcnQ=".into();
            config["bind_addr"] = "localhost".into();
            config["bootstrap_expect"] = 0.into();
            config["tls"]["defaults"]["ca_file"] = "missing.pem".into();
            config["recursors"] = serde_json::json!(["1.1.1.1", "dns.google"]);
            config["dns_config"] = serde_json::json!({"recursor_timeout": "0s"});
        },
        expect![[r#"
            exit: 1
            Config validation failed: dc1/s1/agent.json: bind_addr "localhost" is not an IP address
              bootstrap_expect is 0; set it to the number of servers (3 or 5)
              encrypt: the gossip key decodes to 5 bytes; it must be 16, 24 or 32; generate one with `dc-agent keygen`
              reading dc1/s1/missing.pem: No such file or directory (os error 2)
              recursor "dns.google" is not an IP address or IP:port (such as "1.1.1.1" or "10.0.0.53:5353")
              dns_config.recursor_timeout is 0; give the recursors time to answer, such as "2s"
        "#]],
    );
}

#[test]
fn an_unknown_key_is_named() {
    check_broken(
        |config| config["retry_joins"] = serde_json::json!(["127.0.1.2"]),
        expect![[r#"
            exit: 1
            Config validation failed: dc1/s1/agent.json:28:3: unknown configuration key `retry_joins`; did you mean `retry_join`?
        "#]],
    );
}

#[test]
fn keygen_prints_a_key_consul_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_dc-agent"))
        .arg("keygen")
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(output.status.success());
    let key = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(
        wire::gossip_key::decode(&key).map(|bytes| bytes.len()),
        Ok(32)
    );
    let again = Command::new(env!("CARGO_BIN_EXE_dc-agent"))
        .arg("keygen")
        .output()
        .expect("run");
    assert_ne!(
        String::from_utf8_lossy(&again.stdout),
        key,
        "keys are random"
    );
}
