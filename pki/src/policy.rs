//! Which peers a TLS endpoint accepts, and why it refused one.

use std::fmt;

use rustls::CertificateError;

use crate::identity::{CertInfo, Identity};
use crate::Role;

/// The peers an endpoint accepts: some roles, of one datacenter or of any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    domain: String,
    roles: Vec<Role>,
    datacenter: Option<String>,
}

impl PeerPolicy {
    /// Peers holding one of `roles`, of `datacenter` (or any datacenter when `None`).
    pub fn new(domain: &str, roles: &[Role], datacenter: Option<&str>) -> PeerPolicy {
        PeerPolicy {
            domain: domain.to_owned(),
            roles: roles.to_vec(),
            datacenter: datacenter.map(str::to_owned),
        }
    }

    /// Only servers of `datacenter`: Raft between servers.
    pub fn servers_of(domain: &str, datacenter: &str) -> PeerPolicy {
        PeerPolicy::new(domain, &[Role::Server], Some(datacenter))
    }

    /// Servers or clients of `datacenter`: RPC into a server.
    pub fn servers_or_clients_of(domain: &str, datacenter: &str) -> PeerPolicy {
        PeerPolicy::new(domain, &[Role::Server, Role::Client], Some(datacenter))
    }

    /// Gateways of any datacenter: WAN links between gateways.
    pub fn gateways(domain: &str) -> PeerPolicy {
        PeerPolicy::new(domain, &[Role::Gateway], None)
    }

    /// The domain whose identities count.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Checks the identities of an already chain-verified certificate.
    pub fn check(&self, info: &CertInfo) -> Result<Identity, Rejection> {
        let in_domain: Vec<&Identity> = info
            .identities
            .iter()
            .filter(|identity| identity.domain == self.domain)
            .collect();
        if let Some(accepted) = in_domain.iter().find(|identity| self.accepts(identity)) {
            return Ok((*accepted).clone());
        }
        let (reason, found) = if in_domain.is_empty() {
            let found = format!(
                "no identity under `{}` (no SAN of the form <role>.<dc>.{})",
                self.domain, self.domain
            );
            (RejectReason::NoIdentity, found)
        } else {
            let found = in_domain
                .iter()
                .map(|identity| identity.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let right_role = in_domain
                .iter()
                .any(|identity| self.roles.contains(&identity.role));
            let reason = if right_role {
                RejectReason::WrongDatacenter
            } else {
                RejectReason::WrongRole
            };
            (reason, found)
        };
        Err(Rejection {
            reason,
            certificate: info.summary(),
            expected: self.to_string(),
            found,
        })
    }

    fn accepts(&self, identity: &Identity) -> bool {
        self.roles.contains(&identity.role)
            && self
                .datacenter
                .as_ref()
                .is_none_or(|dc| *dc == identity.datacenter)
    }

    /// A rejection by this policy.
    pub fn reject(&self, reason: RejectReason, certificate: String, found: String) -> Rejection {
        Rejection {
            reason,
            certificate,
            expected: self.to_string(),
            found,
        }
    }
}

impl fmt::Display for PeerPolicy {
    /// `a server of dc1`, `a server or client of dc1`, `a gateway of any datacenter`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles: Vec<&str> = self.roles.iter().map(|role| role.as_str()).collect();
        let roles = match roles.as_slice() {
            [] => "nothing".to_owned(),
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        };
        match &self.datacenter {
            Some(dc) => write!(f, "a {roles} of {dc}"),
            None => write!(f, "a {roles} of any datacenter"),
        }
    }
}

/// Why a peer certificate was refused; bounded, for a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not signed by the federation's CA.
    UnknownCa,
    /// Past its end of validity.
    Expired,
    /// Before its start of validity.
    NotYetValid,
    /// Carries an identity, but of a role the endpoint does not accept.
    WrongRole,
    /// Carries an accepted role, but of another datacenter.
    WrongDatacenter,
    /// Carries no Isthmus identity under the federation's domain.
    NoIdentity,
    /// Anything else the chain check refused (bad encoding, wrong key usage, ...).
    Invalid,
}

impl RejectReason {
    /// Every reason, so metrics can start each at zero.
    pub const ALL: [RejectReason; 7] = [
        RejectReason::UnknownCa,
        RejectReason::Expired,
        RejectReason::NotYetValid,
        RejectReason::WrongRole,
        RejectReason::WrongDatacenter,
        RejectReason::NoIdentity,
        RejectReason::Invalid,
    ];

    /// A stable label value: `unknown_ca`, `expired`, `wrong_role`, ...
    pub fn as_label(self) -> &'static str {
        match self {
            RejectReason::UnknownCa => "unknown_ca",
            RejectReason::Expired => "expired",
            RejectReason::NotYetValid => "not_yet_valid",
            RejectReason::WrongRole => "wrong_role",
            RejectReason::WrongDatacenter => "wrong_dc",
            RejectReason::NoIdentity => "no_identity",
            RejectReason::Invalid => "invalid",
        }
    }
}

/// A refused peer certificate: which certificate, what was expected, what was found.
///
/// Its `Debug` is its `Display` text, because rustls shows a custom certificate error with
/// `Debug` in the handshake error that reaches logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why, as a bounded enum.
    pub reason: RejectReason,
    /// The certificate's subject and SANs.
    pub certificate: String,
    /// What the endpoint accepts ([`PeerPolicy`]'s text).
    pub expected: String,
    /// What the certificate turned out to be.
    pub found: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused peer certificate {}: expected {}, found {}",
            self.certificate, self.expected, self.found
        )
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Rejection {}

/// Called with every refused peer certificate, so that the caller can count refusals by
/// [`RejectReason::as_label`] and log them (the handshake error itself is only text).
pub type RejectionObserver = std::sync::Arc<dyn Fn(&Rejection) + Send + Sync>;

/// What the peer is told: only the kind of refusal, in TLS's own terms. The error text
/// travels in the QUIC close to whoever connected, stranger or not, so the names of this
/// federation's CA and of what the endpoint expects stay in this side's log (the
/// [`RejectionObserver`]).
impl From<Rejection> for rustls::Error {
    fn from(rejection: Rejection) -> rustls::Error {
        rustls::Error::InvalidCertificate(match rejection.reason {
            RejectReason::UnknownCa => CertificateError::UnknownIssuer,
            RejectReason::Expired => CertificateError::Expired,
            RejectReason::NotYetValid => CertificateError::NotValidYet,
            RejectReason::WrongRole
            | RejectReason::WrongDatacenter
            | RejectReason::NoIdentity
            | RejectReason::Invalid => CertificateError::ApplicationVerificationFailure,
        })
    }
}
