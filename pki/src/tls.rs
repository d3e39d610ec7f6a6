//! rustls configs for mutual TLS between Isthmus nodes.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use crate::identity::{inspect_der, CertInfo, Identity};
use crate::policy::{PeerPolicy, RejectReason, Rejection, RejectionObserver};
use crate::PkiError;

/// A node's TLS material: the CA it trusts, its certificate chain and its key.
pub struct NodeTls {
    roots: Arc<RootCertStore>,
    ca_subject: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    identity: CertInfo,
    provider: Arc<CryptoProvider>,
    observer: Option<RejectionObserver>,
    authenticate_peers: bool,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("identity", &self.identity.subject)
            .finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Loads PEM inputs: the CA certificate, the node certificate (chain), the node key.
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<NodeTls, PkiError> {
        let ca_certs = certs_in(ca_pem, "CA certificate")?;
        let mut roots = RootCertStore::empty();
        for ca in &ca_certs {
            roots.add(ca.clone()).map_err(|e| PkiError::BadPem {
                what: "CA certificate",
                detail: format!("not usable as a trust anchor: {e}"),
            })?;
        }
        let ca_subject = inspect_der(&ca_certs[0])?.subject;
        let chain = certs_in(cert_pem, "node certificate")?;
        let identity = inspect_der(&chain[0])?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| PkiError::BadPem {
            what: "node key",
            detail: format!("no private key found ({e})"),
        })?;
        Ok(NodeTls {
            roots: Arc::new(roots),
            ca_subject,
            chain,
            key,
            identity,
            provider: crate::crypto_provider(),
            observer: None,
            authenticate_peers: true,
        })
    }

    /// TLS material made up on the spot, for an agent started without any (`-dev`, or
    /// Consul's flags without `tls` settings): connections are still encrypted, but peers
    /// are **not authenticated**, the same trust as Consul without `verify_incoming`.
    /// Callers must say so loudly at start.
    pub fn ephemeral(request: &crate::CertRequest) -> Result<NodeTls, PkiError> {
        let now = time::OffsetDateTime::now_utc();
        let ca = crate::CertificateAuthority::create(
            &request.domain,
            crate::Validity::days_from(now, 3650)?,
        )?;
        let issued = ca.issue(request, crate::Validity::days_from(now, 3650)?)?;
        let mut tls = NodeTls::from_pem(
            ca.cert_pem().as_bytes(),
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
        )?;
        tls.authenticate_peers = false;
        Ok(tls)
    }

    /// Whether peers are authenticated (false only for [`NodeTls::ephemeral`] material).
    pub fn authenticates_peers(&self) -> bool {
        self.authenticate_peers
    }

    /// The identity of a peer certificate, checked against `policy`: what an endpoint that
    /// accepts several kinds of peer at the TLS layer uses to decide per protocol. Without
    /// authentication ([`NodeTls::ephemeral`]) the claimed identity is returned unchecked.
    pub fn peer_identity(
        &self,
        peer_certificate: &[u8],
        policy: &PeerPolicy,
    ) -> Result<Identity, Rejection> {
        let info = inspect_der(peer_certificate).map_err(|e| {
            policy.reject(
                RejectReason::Invalid,
                "(unparseable)".to_owned(),
                e.to_string(),
            )
        })?;
        if !self.authenticate_peers {
            return info.identities.first().cloned().ok_or_else(|| {
                policy.reject(
                    RejectReason::NoIdentity,
                    info.summary(),
                    "no identity".to_owned(),
                )
            });
        }
        policy.check(&info).inspect_err(|rejection| {
            if let Some(observer) = &self.observer {
                observer(rejection);
            }
        })
    }

    /// Calls `observer` with every peer certificate the configs built from now on refuse.
    pub fn set_rejection_observer(&mut self, observer: RejectionObserver) {
        self.observer = Some(observer);
    }

    fn verifier(&self, policy: PeerPolicy) -> Result<Arc<PeerVerifier>, PkiError> {
        let inner =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
                .build()
                .map_err(|e| PkiError::Verifier(e.to_string()))?;
        Ok(Arc::new(PeerVerifier {
            policy,
            inner,
            roots: self.roots.clone(),
            ca_subject: self.ca_subject.clone(),
            provider: self.provider.clone(),
            observer: self.observer.clone(),
            authenticate: self.authenticate_peers,
        }))
    }

    /// The key a QUIC endpoint derives its stateless reset tokens from: the same across
    /// restarts of this node (it comes from the node's private key), so a peer that still
    /// holds a connection to the previous process is reset at its next packet instead of
    /// waiting out the idle timeout (a restarted gateway is found again in about a second).
    pub fn stateless_reset_key(&self) -> ring::hmac::Key {
        let mut secret = ring::digest::Context::new(&ring::digest::SHA256);
        secret.update(b"isthmus/quic-stateless-reset/v1\0");
        secret.update(self.key.secret_der());
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.finish().as_ref())
    }

    /// The key a QUIC endpoint's connection IDs are hashed with, the same across restarts
    /// for the same reason as [`NodeTls::stateless_reset_key`]: a restarted endpoint must
    /// recognise its predecessor's connection IDs as its own to answer them with a reset.
    pub fn connection_id_key(&self) -> u64 {
        let mut secret = ring::digest::Context::new(&ring::digest::SHA256);
        secret.update(b"isthmus/quic-connection-id/v1\0");
        secret.update(self.key.secret_der());
        let digest = secret.finish();
        let mut key = [0u8; 8];
        key.copy_from_slice(&digest.as_ref()[..8]);
        u64::from_le_bytes(key)
    }

    /// What this node's own certificate says.
    pub fn own_certificate(&self) -> &CertInfo {
        &self.identity
    }

    /// A server config (TLS 1.3 only) that demands a client certificate accepted by `accept`.
    pub fn server_config(
        &self,
        accept: PeerPolicy,
        alpn: &[&[u8]],
    ) -> Result<rustls::ServerConfig, PkiError> {
        let verifier = self.verifier(accept)?;
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// A client config (TLS 1.3 only) that presents this node's certificate and accepts only
    /// a server whose certificate `expect` accepts. The server name used to connect is not
    /// what is checked: the identity in the certificate is.
    pub fn client_config(
        &self,
        expect: PeerPolicy,
        alpn: &[&[u8]],
    ) -> Result<rustls::ClientConfig, PkiError> {
        let verifier = self.verifier(expect)?;
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

pub(crate) fn certs_in(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadPem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::BadPem {
            what,
            detail: "no PEM certificate found".to_owned(),
        });
    }
    Ok(certs)
}

/// Checks the chain against the CA, then the identity against the policy. Serves both as a
/// client-certificate verifier (server side) and a server-certificate verifier (client side).
struct PeerVerifier {
    policy: PeerPolicy,
    inner: Arc<dyn ClientCertVerifier>,
    roots: Arc<RootCertStore>,
    ca_subject: String,
    provider: Arc<CryptoProvider>,
    observer: Option<RejectionObserver>,
    /// False only for ephemeral material: accept any certificate (encryption, no trust).
    authenticate: bool,
}

impl std::fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl PeerVerifier {
    fn check_identity(&self, end_entity: &CertificateDer<'_>) -> Result<Identity, rustls::Error> {
        let checked = inspect_der(end_entity)
            .map_err(|e| {
                self.policy.reject(
                    RejectReason::Invalid,
                    "(unparseable)".to_owned(),
                    e.to_string(),
                )
            })
            .and_then(|info| self.policy.check(&info));
        checked.map_err(|rejection| self.refuse(rejection))
    }

    fn refuse(&self, rejection: Rejection) -> rustls::Error {
        if let Some(observer) = &self.observer {
            observer(&rejection);
        }
        rejection.into()
    }

    /// Turns a chain error from webpki into a [`Rejection`] that names the certificate.
    fn chain_rejection(
        &self,
        end_entity: &CertificateDer<'_>,
        error: rustls::Error,
    ) -> rustls::Error {
        let info = inspect_der(end_entity).ok();
        let certificate = info
            .as_ref()
            .map_or_else(|| "(unparseable)".to_owned(), CertInfo::summary);
        let (reason, found) = match &error {
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => {
                let issuer = info.as_ref().map_or("?", |i| i.issuer.as_str());
                (
                    RejectReason::UnknownCa,
                    format!(
                        "a certificate issued by \"{issuer}\", not by this federation's CA \"{}\"",
                        self.ca_subject
                    ),
                )
            }
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => {
                let when = info
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), |i| crate::format_time(i.not_after));
                (
                    RejectReason::Expired,
                    format!("a certificate that expired at {when}"),
                )
            }
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => {
                let when = info
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), |i| crate::format_time(i.not_before));
                (
                    RejectReason::NotYetValid,
                    format!("a certificate not valid before {when}"),
                )
            }
            other => (
                RejectReason::Invalid,
                format!("a certificate the chain check refused: {other}"),
            ),
        };
        self.refuse(self.policy.reject(reason, certificate, found))
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !self.authenticate {
            return Ok(ClientCertVerified::assertion());
        }
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| self.chain_rejection(end_entity, e))?;
        self.check_identity(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.authenticate {
            return Ok(ServerCertVerified::assertion());
        }
        let parsed = ParsedCertificate::try_from(end_entity)
            .map_err(|e| self.chain_rejection(end_entity, e))?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )
        .map_err(|e| self.chain_rejection(end_entity, e))?;
        let identity = self.check_identity(end_entity)?;
        // The identity SAN must be one the certificate is really valid for (it is: it came
        // from the SAN list); checking it through webpki keeps name handling in one place.
        let name = ServerName::try_from(identity.role_name()).map_err(|_| {
            rustls::Error::General(format!(
                "identity {} is not a DNS name",
                identity.role_name()
            ))
        })?;
        rustls::client::verify_server_name(&parsed, &name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
