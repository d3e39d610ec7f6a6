//! Real QUIC handshakes on loopback with the configs `pki` builds: who gets in, who is
//! refused, and what the refusal says.

use std::net::SocketAddr;
use std::sync::Arc;

use expect_test::{expect, Expect};
use pki::{CertRequest, CertificateAuthority, NodeTls, PeerPolicy, Role, Validity};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use time::macros::datetime;
use time::OffsetDateTime;

const ALPN: &[u8] = b"isthmus/test";

fn valid_now() -> Validity {
    Validity::days_from(OffsetDateTime::now_utc(), 30).expect("30 days is valid")
}

fn node(
    ca: &CertificateAuthority,
    role: Role,
    dc: &str,
    node: &str,
    validity: Validity,
) -> NodeTls {
    let request = CertRequest {
        role,
        datacenter: dc.to_owned(),
        domain: "consul".to_owned(),
        node: Some(node.to_owned()),
        ips: vec![],
        dns_names: vec![],
    };
    let issued = ca.issue(&request, validity).expect("issue");
    NodeTls::from_pem(
        ca.cert_pem().as_bytes(),
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .expect("load node tls")
}

/// Outcome of one handshake and one echo round trip, as text for snapshots.
struct Outcome {
    server: String,
    client: String,
}

async fn handshake(server_tls: rustls::ServerConfig, client_tls: rustls::ClientConfig) -> Outcome {
    let server_config = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server_tls).expect("TLS 1.3 server config"),
    ));
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let server = quinn::Endpoint::server(server_config, listen).expect("bind server");
    let server_addr = server.local_addr().expect("server address");
    let mut client = quinn::Endpoint::client(listen).expect("bind client");
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client_tls).expect("TLS 1.3 client config"),
    )));

    let server_task = tokio::spawn(async move {
        let incoming = server.accept().await.expect("an incoming connection");
        let outcome = match incoming.await {
            Ok(connection) => match connection.accept_bi().await {
                Ok((mut send, mut recv)) => {
                    let message = recv.read_to_end(64).await.unwrap_or_default();
                    let _ = send.write_all(&message).await;
                    let _ = send.finish();
                    let _ = connection.closed().await;
                    format!("accepted {}", String::from_utf8_lossy(&message))
                }
                Err(e) => format!("error after handshake: {e}"),
            },
            Err(e) => format!("refused: {e}"),
        };
        server.wait_idle().await;
        outcome
    });

    let client_outcome = match client
        .connect(server_addr, "server.dc1.consul")
        .expect("connect")
        .await
    {
        Ok(connection) => {
            let round_trip = async {
                let (mut send, mut recv) = connection.open_bi().await?;
                send.write_all(b"ping").await?;
                send.finish()?;
                let echoed = recv.read_to_end(64).await?;
                anyhow::Ok(echoed)
            };
            match round_trip.await {
                Ok(echoed) => {
                    connection.close(0u32.into(), b"done");
                    format!("echoed {}", String::from_utf8_lossy(&echoed))
                }
                // Which error the client sees after the server refuses it (stream reset,
                // connection lost, ...) depends on packet order; that it failed does not.
                Err(_) => "closed by the server after the handshake".to_owned(),
            }
        }
        Err(e) => format!("refused: {e}"),
    };
    client.wait_idle().await;
    let server_outcome = server_task.await.expect("server task");
    Outcome {
        server: server_outcome,
        client: client_outcome,
    }
}

fn check(outcome: Outcome, replacements: &[(&str, &str)], expect: Expect) {
    let mut text = format!("server: {}\nclient: {}\n", outcome.server, outcome.client);
    for (from, to) in replacements {
        text = text.replace(from, to);
    }
    expect.assert_eq(&text);
}

fn ca_subject(ca: &CertificateAuthority) -> String {
    pki::inspect_pem(ca.cert_pem().as_bytes())
        .expect("CA parses")
        .subject
}

#[tokio::test]
async fn servers_of_the_same_dc_talk() {
    let ca = CertificateAuthority::create("consul", valid_now()).expect("ca");
    let s1 = node(&ca, Role::Server, "dc1", "s1", valid_now());
    let s2 = node(&ca, Role::Server, "dc1", "s2", valid_now());
    let policy = PeerPolicy::servers_of("consul", "dc1");
    let outcome = handshake(
        s1.server_config(policy.clone(), &[ALPN])
            .expect("server config"),
        s2.client_config(policy, &[ALPN]).expect("client config"),
    )
    .await;
    check(
        outcome,
        &[],
        expect![[r#"
        server: accepted ping
        client: echoed ping
    "#]],
    );
}

#[tokio::test]
async fn a_server_accepts_rpc_from_a_client_of_its_dc() {
    let ca = CertificateAuthority::create("consul", valid_now()).expect("ca");
    let s1 = node(&ca, Role::Server, "dc1", "s1", valid_now());
    let c1 = node(&ca, Role::Client, "dc1", "c1", valid_now());
    let outcome = handshake(
        s1.server_config(PeerPolicy::servers_or_clients_of("consul", "dc1"), &[ALPN])
            .expect("server config"),
        c1.client_config(PeerPolicy::servers_of("consul", "dc1"), &[ALPN])
            .expect("client config"),
    )
    .await;
    check(
        outcome,
        &[],
        expect![[r#"
        server: accepted ping
        client: echoed ping
    "#]],
    );
}

#[tokio::test]
async fn gateways_of_any_dc_link_up() {
    let ca = CertificateAuthority::create("consul", valid_now()).expect("ca");
    let g1 = node(&ca, Role::Gateway, "dc1", "gw1", valid_now());
    let g2 = node(&ca, Role::Gateway, "dc2", "gw1", valid_now());
    let outcome = handshake(
        g1.server_config(PeerPolicy::gateways("consul"), &[ALPN])
            .expect("server config"),
        g2.client_config(PeerPolicy::gateways("consul"), &[ALPN])
            .expect("client config"),
    )
    .await;
    check(
        outcome,
        &[],
        expect![[r#"
        server: accepted ping
        client: echoed ping
    "#]],
    );
}

#[tokio::test]
async fn a_client_certificate_from_a_foreign_ca_is_refused() {
    let ca = CertificateAuthority::create("consul", valid_now()).expect("ca");
    let foreign = CertificateAuthority::create("consul", valid_now()).expect("foreign ca");
    let s1 = node(&ca, Role::Server, "dc1", "s1", valid_now());
    // Trusts our CA (so it accepts s1) but holds a certificate signed by the foreign CA.
    let intruder_cert = foreign
        .issue(
            &CertRequest {
                role: Role::Server,
                datacenter: "dc1".into(),
                domain: "consul".into(),
                node: Some("evil".into()),
                ips: vec![],
                dns_names: vec![],
            },
            valid_now(),
        )
        .expect("issue");
    let intruder = NodeTls::from_pem(
        ca.cert_pem().as_bytes(),
        intruder_cert.cert_pem.as_bytes(),
        intruder_cert.key_pem.as_bytes(),
    )
    .expect("load");
    let policy = PeerPolicy::servers_of("consul", "dc1");
    let outcome = handshake(
        s1.server_config(policy.clone(), &[ALPN])
            .expect("server config"),
        intruder
            .client_config(policy, &[ALPN])
            .expect("client config"),
    )
    .await;
    check(
        outcome,
        &[
            (&ca_subject(&ca), "<our CA>"),
            (&ca_subject(&foreign), "<foreign CA>"),
        ],
        expect![[r#"
            server: refused: the cryptographic handshake failed: error 48: invalid peer certificate: UnknownIssuer
            client: closed by the server after the handshake
        "#]],
    );
}

#[tokio::test]
async fn a_server_certificate_from_a_foreign_ca_is_refused_by_the_client() {
    let ca = CertificateAuthority::create("consul", valid_now()).expect("ca");
    let foreign = CertificateAuthority::create("consul", valid_now()).expect("foreign ca");
    let impostor = node(&foreign, Role::Server, "dc1", "s1", valid_now());
    let c1 = node(&ca, Role::Client, "dc1", "c1", valid_now());
    let outcome = handshake(
        impostor
            .server_config(PeerPolicy::servers_or_clients_of("consul", "dc1"), &[ALPN])
            .expect("server config"),
        c1.client_config(PeerPolicy::servers_of("consul", "dc1"), &[ALPN])
            .expect("client config"),
    )
    .await;
    check(
        outcome,
        &[
            (&ca_subject(&ca), "<our CA>"),
            (&ca_subject(&foreign), "<foreign CA>"),
        ],
        expect![[r#"
            server: refused: aborted by peer: the cryptographic handshake failed: error 48: invalid peer certificate: UnknownIssuer
            client: refused: the cryptographic handshake failed: error 48: invalid peer certificate: UnknownIssuer
        "#]],
    );
}

#[tokio::test]
async fn a_client_agent_may_not_join_raft() {
    let ca = CertificateAuthority::create("consul", valid_now()).expect("ca");
    let s1 = node(&ca, Role::Server, "dc1", "s1", valid_now());
    let c1 = node(&ca, Role::Client, "dc1", "c1", valid_now());
    let outcome = handshake(
        s1.server_config(PeerPolicy::servers_of("consul", "dc1"), &[ALPN])
            .expect("server config"),
        c1.client_config(PeerPolicy::servers_of("consul", "dc1"), &[ALPN])
            .expect("client config"),
    )
    .await;
    check(
        outcome,
        &[],
        expect![[r#"
            server: refused: the cryptographic handshake failed: error 49: invalid peer certificate: ApplicationVerificationFailure
            client: closed by the server after the handshake
        "#]],
    );
}

#[tokio::test]
async fn a_server_of_another_dc_may_not_join_raft() {
    let ca = CertificateAuthority::create("consul", valid_now()).expect("ca");
    let mut s1 = node(&ca, Role::Server, "dc1", "s1", valid_now());
    let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = refused.clone();
    s1.set_rejection_observer(Arc::new(move |rejection: &pki::Rejection| {
        seen.lock()
            .expect("not poisoned")
            .push(rejection.reason.as_label());
    }));
    let other = node(&ca, Role::Server, "dc2", "s1", valid_now());
    let outcome = handshake(
        s1.server_config(PeerPolicy::servers_of("consul", "dc1"), &[ALPN])
            .expect("server config"),
        other
            .client_config(PeerPolicy::servers_of("consul", "dc1"), &[ALPN])
            .expect("client config"),
    )
    .await;
    assert_eq!(*refused.lock().expect("not poisoned"), vec!["wrong_dc"]);
    check(
        outcome,
        &[],
        expect![[r#"
            server: refused: the cryptographic handshake failed: error 49: invalid peer certificate: ApplicationVerificationFailure
            client: closed by the server after the handshake
        "#]],
    );
}

#[tokio::test]
async fn a_server_may_not_pose_as_a_gateway() {
    let ca = CertificateAuthority::create("consul", valid_now()).expect("ca");
    let g1 = node(&ca, Role::Gateway, "dc1", "gw1", valid_now());
    let s2 = node(&ca, Role::Server, "dc2", "s1", valid_now());
    let outcome = handshake(
        g1.server_config(PeerPolicy::gateways("consul"), &[ALPN])
            .expect("server config"),
        s2.client_config(PeerPolicy::gateways("consul"), &[ALPN])
            .expect("client config"),
    )
    .await;
    check(
        outcome,
        &[],
        expect![[r#"
            server: refused: the cryptographic handshake failed: error 49: invalid peer certificate: ApplicationVerificationFailure
            client: closed by the server after the handshake
        "#]],
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let ca = CertificateAuthority::create("consul", valid_now()).expect("ca");
    let s1 = node(&ca, Role::Server, "dc1", "s1", valid_now());
    let expired = Validity {
        not_before: datetime!(2020-01-01 0:00 UTC),
        not_after: datetime!(2020-06-01 0:00 UTC),
    };
    let s2 = node(&ca, Role::Server, "dc1", "s2", expired);
    let policy = PeerPolicy::servers_of("consul", "dc1");
    let outcome = handshake(
        s1.server_config(policy.clone(), &[ALPN])
            .expect("server config"),
        s2.client_config(policy, &[ALPN]).expect("client config"),
    )
    .await;
    check(
        outcome,
        &[],
        expect![[r#"
            server: refused: the cryptographic handshake failed: error 45: invalid peer certificate: Expired
            client: closed by the server after the handshake
        "#]],
    );
}

/// Accepts any server certificate; used only to make a client that sends no certificate.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[tokio::test]
async fn a_peer_without_a_client_certificate_is_refused() {
    let ca = CertificateAuthority::create("consul", valid_now()).expect("ca");
    let s1 = node(&ca, Role::Server, "dc1", "s1", valid_now());
    let provider = pki::crypto_provider();
    let mut anonymous = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        .with_no_client_auth();
    anonymous.alpn_protocols = vec![ALPN.to_vec()];
    let outcome = handshake(
        s1.server_config(PeerPolicy::servers_or_clients_of("consul", "dc1"), &[ALPN])
            .expect("server config"),
        anonymous,
    )
    .await;
    check(
        outcome,
        &[],
        expect![[r#"
            server: refused: the cryptographic handshake failed: error 116: peer sent no certificates
            client: closed by the server after the handshake
        "#]],
    );
}
