//! TLS for the HTTPS API, as Consul's: a certificate and key any web PKI client can check
//! (`ports.https` with `tls.https.cert_file`/`key_file`), and, with `verify_incoming`,
//! client certificates signed by the CA. Unlike the QUIC links there is no identity policy:
//! any certificate the CA signed may call the API (ACLs decide what it may do).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::tls::certs_in;
use crate::PkiError;

/// A rustls server config for HTTPS: `cert_pem` (the chain) and `key_pem` answer; with
/// `client_ca_pem`, clients must present a certificate that CA signed.
pub fn https_server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<ServerConfig, PkiError> {
    let chain = certs_in(cert_pem, "HTTPS certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| PkiError::BadPem {
        what: "HTTPS key",
        detail: format!("no private key found ({e})"),
    })?;
    let provider = crate::crypto_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        Some(ca_pem) => {
            let mut roots = RootCertStore::empty();
            for ca in certs_in(ca_pem, "CA certificate")? {
                roots.add(ca).map_err(|e| PkiError::BadPem {
                    what: "CA certificate",
                    detail: format!("not usable as a trust anchor: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| PkiError::InvalidRequest(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertRequest, CertificateAuthority, Role, Validity};

    #[test]
    fn builds_with_and_without_client_verification_and_names_bad_input() {
        let now = time::OffsetDateTime::now_utc();
        let ca = CertificateAuthority::create(
            "consul",
            Validity::days_from(now, 1).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let request = CertRequest {
            role: Role::Server,
            datacenter: "dc1".into(),
            domain: "consul".into(),
            node: None,
            ips: Vec::new(),
            dns_names: Vec::new(),
        };
        let issued = ca
            .issue(
                &request,
                Validity::days_from(now, 1).unwrap_or_else(|e| panic!("{e}")),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let cert = issued.cert_pem.as_bytes();
        let key = issued.key_pem.as_bytes();
        assert!(https_server_config(cert, key, None).is_ok());
        assert!(https_server_config(cert, key, Some(ca.cert_pem().as_bytes())).is_ok());
        let bad = https_server_config(b"nothing", key, None)
            .err()
            .map(|e| e.to_string());
        assert!(bad.is_some_and(|e| e.contains("HTTPS certificate")));
        let bad = https_server_config(cert, b"nothing", None)
            .err()
            .map(|e| e.to_string());
        assert!(bad.is_some_and(|e| e.contains("HTTPS key")));
    }
}
