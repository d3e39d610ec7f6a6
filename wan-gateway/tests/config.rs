//! `wan-gateway validate`, run on the gateway configs that `topology render` writes.

use std::fs;
use std::path::Path;
use std::process::Command;

use wire::Role;

fn wan_gateway(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_wan-gateway"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run wan-gateway");
    format!(
        "exit: {}\n{}{}",
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn every_rendered_gateway_config_is_valid_and_a_server_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/three-dcs.toml");
    let source = fs::read_to_string(&example).expect("read example");
    let (topology, _) = topology::parse(&source, "three-dcs").expect("example is valid");
    let existing = |relative: &Path| fs::read_to_string(out.join(relative)).ok();
    let key = wire::gossip_key::encode(&[3u8; 32]);
    let plan = topology::render::plan(
        &topology,
        &Default::default(),
        &existing,
        &key,
        time::OffsetDateTime::now_utc(),
    )
    .expect("render plan");
    plan.write_to(out).expect("write the rendered files");
    let mut outputs = Vec::new();
    for dc in &topology.datacenters {
        for node in dc.nodes_of(Role::Gateway) {
            let config = topology::render::config_path(&dc.name, node)
                .display()
                .to_string();
            outputs.push(wan_gateway(out, &["validate", "--config", &config]));
        }
    }
    expect_test::expect![[r#"
        exit: 0
        Configuration is valid! gateway gw1 of dc1 on 127.0.1.100:8443, 3 local server(s), 2 remote gateway(s)
        exit: 0
        Configuration is valid! gateway gw2 of dc1 on 127.0.1.101:8443, 3 local server(s), 2 remote gateway(s)
        exit: 0
        Configuration is valid! gateway gw1 of dc2 on 127.0.2.100:8443, 3 local server(s), 3 remote gateway(s)
        exit: 0
        Configuration is valid! gateway gw1 of dc3 on 127.0.3.100:8443, 3 local server(s), 3 remote gateway(s)
    "#]]
    .assert_eq(&outputs.join(""));

    // A gateway config pointing at a server's certificate is refused.
    let config = out.join("dc2/gw1/gateway.toml");
    let text = fs::read_to_string(&config)
        .expect("read")
        .replace("tls/cert.pem", "../s1/tls/cert.pem")
        .replace("tls/key.pem", "../s1/tls/key.pem");
    fs::write(&config, text).expect("write");
    expect_test::expect![[r#"
        exit: 1
        Config validation failed: dc2/gw1/gateway.toml: dc2/gw1/../s1/tls/cert.pem is not a gateway certificate of dc2; issue one with `pki cert create --gateway --dc dc2`
    "#]]
    .assert_eq(&wan_gateway(out, &["validate", "--config", "dc2/gw1/gateway.toml"]));
}
