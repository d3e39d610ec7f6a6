use thiserror::Error;

/// What can go wrong making or loading certificates and TLS configs.
#[derive(Debug, Error)]
pub enum PkiError {
    /// A PEM input holds no certificate, or more than one where one was expected.
    #[error("{what}: {detail}")]
    BadPem {
        /// Which input (`CA certificate`, `node key`, ...).
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// rcgen refused to make or sign a certificate.
    #[error("{what}: {source}")]
    Generate {
        /// What was being made.
        what: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A certificate's DER could not be parsed.
    #[error("parsing {what}: {detail}")]
    Parse {
        /// Which certificate.
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// A request that cannot produce a valid certificate (bad DC name, zero days, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// rustls refused the configuration.
    #[error("building TLS config: {0}")]
    Tls(#[from] rustls::Error),
    /// The certificate and key do not belong together, or the CA is unusable.
    #[error("building TLS verifier: {0}")]
    Verifier(String),
}
