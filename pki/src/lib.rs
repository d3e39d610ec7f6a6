//! Certificates for Isthmus, made the way `consul tls` makes them, and mutual-TLS
//! configurations that check who the peer is.
//!
//! A certificate names its holder's role and datacenter in its SANs:
//! `server.<dc>.<domain>` (plus `<node>.server.<dc>.<domain>`), `client.<dc>.<domain>`,
//! `gateway.<dc>.<domain>`. [`NodeTls`] builds rustls configs whose verifiers first check the
//! chain against the CA and then check the peer's identity against a [`PeerPolicy`]
//! ("only servers of dc1", "only gateways", "servers or clients of dc1").
//!
//! Invariant: no file or network I/O here; callers pass PEM bytes in and write PEM out.
//! Time comes in as an argument ([`Validity`]); key material comes from ring's system RNG.
#![warn(missing_docs)]

mod authority;
mod error;
mod https;
mod identity;
mod policy;
mod tls;

pub use authority::{CertRequest, CertificateAuthority, IssuedCert, Validity};
pub use error::PkiError;
pub use https::https_server_config;
pub use identity::{format_time, inspect_pem, CertInfo, Identity};
pub use policy::{PeerPolicy, RejectReason, Rejection, RejectionObserver};
pub use tls::NodeTls;
pub use wire::Role;

/// The crypto provider every Isthmus TLS config uses: rustls' ring provider.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
