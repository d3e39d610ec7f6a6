//! The HTTPS API as Consul users turn it on: `ports { https = 8501 }` with the `tls` block
//! of Consul's tutorials (`verify_incoming`), reached with the CLI's `-ca-file`,
//! `-client-cert`, `-client-key`, `-tls-server-name` and `CONSUL_HTTP_SSL`/`CONSUL_CACERT`.
//! Plain HTTP turned off with `ports.http = -1`. Subnet 127.145.0.0/24.

mod support;

use std::path::Path;
use std::time::Duration;

use dc_agent::client::{ApiClient, ClientTls};
use pki::{CertRequest, CertificateAuthority, Role, Validity};
use support::flag_agent::{dc_agent, dc_agent_env, wait_for, FlagAgent};

const ADDRESS: &str = "127.145.0.1";

fn issue(ca: &CertificateAuthority, role: Role, ips: &[&str], dir: &Path, name: &str) {
    let now = time::OffsetDateTime::now_utc();
    let validity = Validity::days_from(now, 30).expect("validity");
    let request = CertRequest {
        role,
        datacenter: "dc1".into(),
        domain: "consul".into(),
        node: None,
        ips: ips.iter().map(|ip| ip.parse().expect("ip")).collect(),
        dns_names: Vec::new(),
    };
    let issued = ca.issue(&request, validity).expect("issue");
    std::fs::write(dir.join(format!("{name}.pem")), issued.cert_pem).expect("write cert");
    std::fs::write(dir.join(format!("{name}-key.pem")), issued.key_pem).expect("write key");
}

fn authority(dir: &Path, name: &str) -> CertificateAuthority {
    let now = time::OffsetDateTime::now_utc();
    let ca =
        CertificateAuthority::create("consul", Validity::days_from(now, 30).expect("validity"))
            .expect("ca");
    std::fs::write(dir.join(format!("{name}.pem")), ca.cert_pem()).expect("write ca");
    ca
}

#[test]
fn the_https_api_as_consuls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = authority(d, "consul-agent-ca");
    issue(&ca, Role::Server, &[ADDRESS], d, "dc1-server-consul-0");
    issue(&ca, Role::Client, &[], d, "dc1-cli-consul-0");
    let foreign = authority(d, "foreign-ca");
    issue(&foreign, Role::Client, &[], d, "foreign-cli");
    let path = |name: &str| d.join(name).display().to_string();

    // The tutorials' TLS block, with HTTPS on and HTTP off.
    let config = format!(
        r#"
ports {{
  http  = -1
  https = 8501
}}
tls {{
  defaults {{
    ca_file   = "{ca}"
    cert_file = "{cert}"
    key_file  = "{key}"
    verify_incoming = true
    verify_outgoing = true
  }}
  internal_rpc {{
    verify_server_hostname = true
  }}
}}
"#,
        ca = path("consul-agent-ca.pem"),
        cert = path("dc1-server-consul-0.pem"),
        key = path("dc1-server-consul-0-key.pem"),
    );
    std::fs::write(d.join("tls.hcl"), config).expect("write config");
    let config_flag = format!("-config-file={}", path("tls.hcl"));
    let agent = FlagAgent::server(d, "secure", ADDRESS, &["-bootstrap-expect=1", &config_flag]);

    let https = format!("https://{ADDRESS}:8501");
    let good = ClientTls {
        ca_file: Some(d.join("consul-agent-ca.pem")),
        client_cert: Some(d.join("dc1-cli-consul-0.pem")),
        client_key: Some(d.join("dc1-cli-consul-0-key.pem")),
        ..ClientTls::default()
    };
    let client = ApiClient::with_tls(&https, Duration::from_secs(10), &good).expect("client");
    wait_for(
        Duration::from_secs(30),
        &[&agent],
        "a leader over HTTPS",
        || {
            let leader: String = client.get("/v1/status/leader").ok()?.json().ok()?;
            (!leader.is_empty()).then_some(())
        },
    );
    assert!(agent.log().contains("HTTPS: 8501"), "{}", agent.log());
    // Plain HTTP is off.
    assert!(
        ApiClient::new(&format!("{ADDRESS}:8500"), Duration::from_secs(2))
            .get("/v1/status/leader")
            .is_err()
    );

    // The CLI with Consul's flags.
    let ca_flag = format!("-ca-file={}", path("consul-agent-ca.pem"));
    let cert_flag = format!("-client-cert={}", path("dc1-cli-consul-0.pem"));
    let key_flag = format!("-client-key={}", path("dc1-cli-consul-0-key.pem"));
    let addr_flag = format!("-http-addr={https}");
    let (code, output) = dc_agent(&[
        &addr_flag, &ca_flag, &cert_flag, &key_flag, "kv", "put", "secret", "s3cr3t",
    ]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(output, "Success! Data written to: secret\n");
    let (code, output) = dc_agent(&[
        &addr_flag, &ca_flag, &cert_flag, &key_flag, "kv", "get", "secret",
    ]);
    assert_eq!((code, output.as_str()), (0, "s3cr3t\n"));

    // And with Consul's environment variables: an address without a scheme and
    // CONSUL_HTTP_SSL, the name checked given apart from the address.
    let env = vec![
        ("CONSUL_HTTP_ADDR", format!("{ADDRESS}:8501")),
        ("CONSUL_HTTP_SSL", "true".to_owned()),
        ("CONSUL_CACERT", path("consul-agent-ca.pem")),
        ("CONSUL_CLIENT_CERT", path("dc1-cli-consul-0.pem")),
        ("CONSUL_CLIENT_KEY", path("dc1-cli-consul-0-key.pem")),
    ];
    let (code, output) = dc_agent_env(&env, &["members"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("secure"), "{output}");
    let mut named = env.clone();
    named[0] = ("CONSUL_HTTP_ADDR", format!("https://{ADDRESS}:8501"));
    named.push(("CONSUL_TLS_SERVER_NAME", "server.dc1.consul".to_owned()));
    let (code, output) = dc_agent_env(&named, &["kv", "get", "secret"]);
    assert_eq!((code, output.as_str()), (0, "s3cr3t\n"));
    let (code, output) = dc_agent_env(
        &named,
        &["-tls-server-name=server.dc2.consul", "kv", "get", "secret"],
    );
    assert_eq!(code, 1, "a name the certificate does not carry: {output}");

    // verify_incoming: no client certificate, or one of another CA, is refused in the
    // handshake; so is a client that does not trust the agent's CA.
    let (code, output) = dc_agent(&[&addr_flag, &ca_flag, "kv", "get", "secret"]);
    assert_eq!(code, 1, "no client certificate: {output}");
    let (code, output) = dc_agent(&[
        &addr_flag,
        &ca_flag,
        &format!("-client-cert={}", path("foreign-cli.pem")),
        &format!("-client-key={}", path("foreign-cli-key.pem")),
        "kv",
        "get",
        "secret",
    ]);
    assert_eq!(code, 1, "a foreign client certificate: {output}");
    let (code, output) = dc_agent(&[&addr_flag, &cert_flag, &key_flag, "kv", "get", "secret"]);
    assert_eq!(code, 1, "an unknown server CA: {output}");
    let metrics = client
        .get("/v1/agent/metrics?format=prometheus")
        .expect("metrics")
        .text();
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("isthmus_https_handshake_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(failures >= 2.0, "{metrics}");
    // A CLI flag naming a file that is not there fails before any request.
    let (code, output) = dc_agent(&[&addr_flag, "-ca-file=/nonexistent/ca.pem", "members"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("/nonexistent/ca.pem"), "{output}");

    // HTTPS without a certificate is a configuration error, named.
    std::fs::write(d.join("bad.hcl"), "ports { https = 8501 }\n").expect("write");
    let (code, output) = dc_agent(&["validate", &path("bad.hcl")]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("ports.https is set but there is no certificate"),
        "{output}"
    );
}
