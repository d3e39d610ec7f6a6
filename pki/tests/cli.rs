//! The `pki` binary, run as a user runs it.

use std::path::Path;
use std::process::Command;

use expect_test::{expect, Expect};

/// Runs `pki ARGS` in `dir`; returns exit code, stdout and stderr as one text, with the
/// parts that change from run to run (serials, dates, CA ids) replaced by placeholders.
fn pki(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_pki"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run pki");
    let text = format!(
        "exit: {}\n{}{}",
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    redact(&text)
}

fn redact(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut words: Vec<String> = Vec::new();
            for word in line.split(' ') {
                let is_date = word.len() >= 20 && word.as_bytes()[4] == b'-' && word.contains('T');
                let is_hex_id = word.len() >= 8
                    && word
                        .trim_end_matches(',')
                        .chars()
                        .all(|c| c.is_ascii_hexdigit())
                    && word
                        .chars()
                        .any(|c| c.is_ascii_alphabetic() || c.is_ascii_digit())
                    && !word.chars().all(|c| c.is_ascii_digit());
                if is_date {
                    words.push("<date>".to_owned());
                } else if is_hex_id {
                    words.push(if word.ends_with(',') {
                        "<id>,".to_owned()
                    } else {
                        "<id>".to_owned()
                    });
                } else {
                    words.push(word.to_owned());
                }
            }
            words.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn check(dir: &Path, args: &[&str], expect: Expect) {
    expect.assert_eq(&pki(dir, args));
}

#[test]
fn create_a_ca_issue_certificates_and_inspect_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    check(
        dir,
        &["ca", "create", "--out", "ca"],
        expect![[r#"
        exit: 0
        ==> Saved ca/ca.pem
        ==> Saved ca/ca-key.pem
    "#]],
    );
    // Consul's single-dash spelling works too.
    check(
        dir,
        &[
            "cert",
            "create",
            "-server",
            "-dc",
            "dc1",
            "-node=s1",
            "-ip",
            "127.0.1.1",
            "-ca",
            "ca",
            "-out",
            "certs",
        ],
        expect![[r#"
        exit: 0
        ==> Using ca/ca.pem and ca/ca-key.pem
        ==> Saved certs/dc1-server-consul-0.pem
        ==> Saved certs/dc1-server-consul-0-key.pem
    "#]],
    );
    check(
        dir,
        &[
            "cert",
            "create",
            "--gateway",
            "--dc",
            "dc2",
            "--dns",
            "gw.example.com",
            "--ca",
            "ca",
            "--out",
            "certs",
            "--days",
            "10",
        ],
        expect![[r#"
        exit: 0
        ==> Using ca/ca.pem and ca/ca-key.pem
        ==> Saved certs/dc2-gateway-consul-0.pem
        ==> Saved certs/dc2-gateway-consul-0-key.pem
    "#]],
    );
    check(
        dir,
        &["inspect", "certs/dc1-server-consul-0.pem"],
        expect![[r#"
        exit: 0
        Subject:     CN=server.dc1.consul
        Issuer:      CN=Isthmus Agent CA <id>, O=Isthmus, OU=consul
        Serial:      <id>
        CA:          no
        Role:        server
        Datacenter:  dc1
        Domain:      consul
        Node:        s1
        SANs:        server.dc1.consul, s1.server.dc1.consul, localhost, 127.0.0.1, 127.0.1.1
        Not before:  <date>
        Not after:   <date> (in 365 days)
    "#]],
    );
    check(
        dir,
        &["inspect", "certs/dc2-gateway-consul-0.pem"],
        expect![[r#"
        exit: 0
        Subject:     CN=gateway.dc2.consul
        Issuer:      CN=Isthmus Agent CA <id>, O=Isthmus, OU=consul
        Serial:      <id>
        CA:          no
        Role:        gateway
        Datacenter:  dc2
        Domain:      consul
        SANs:        gateway.dc2.consul, localhost, gw.example.com, 127.0.0.1
        Not before:  <date>
        Not after:   <date> (in 10 days)
    "#]],
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca/ca-key.pem", "certs/dc1-server-consul-0-key.pem"] {
            let mode = std::fs::metadata(dir.join(key))
                .expect("key exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key} must be private");
        }
    }
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    pki(dir, &["ca", "create", "--out", "ca"]);
    check(
        dir,
        &["ca", "create", "--out", "ca"],
        expect![[r#"
        exit: 1
        error: ca/ca.pem already exists; a CA is never replaced silently: remove it or choose another --out
    "#]],
    );
    check(
        dir,
        &[
            "cert", "create", "--server", "--dc", "DC1", "--ca", "ca", "--out", "certs",
        ],
        expect![[r#"
        exit: 1
        error: datacenter "DC1" is not a DNS label: it contains 'D'; use only lowercase letters, digits and '-'
    "#]],
    );
    check(
        dir,
        &[
            "cert", "create", "--server", "--dc", "dc1", "--ca", "missing", "--out", "certs",
        ],
        expect![[r#"
        exit: 1
        error: reading CA certificate missing/ca.pem (create one with `pki ca create --out missing`): No such file or directory (os error 2)
    "#]],
    );
    check(
        dir,
        &["inspect", "ca/ca-key.pem"],
        expect![[r#"
        exit: 1
        error: reading ca/ca-key.pem: certificate: found a PEM block of type "PRIVATE KEY", expected CERTIFICATE
    "#]],
    );
}
