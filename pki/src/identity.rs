//! Reading a certificate: its subject, SANs, validity and the Isthmus identity it carries.

use std::fmt;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::{PkiError, Role};

/// Who a certificate says its holder is: taken from a SAN `<role>.<dc>.<domain>`, with the
/// node name from `<node>.<role>.<dc>.<domain>` when present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The holder's role.
    pub role: Role,
    /// The holder's datacenter.
    pub datacenter: String,
    /// The domain the identity is under.
    pub domain: String,
    /// The holder's node name, when the certificate names one.
    pub node: Option<String>,
}

impl Identity {
    /// The SAN that carries this identity, `<role>.<dc>.<domain>`.
    pub fn role_name(&self) -> String {
        format!("{}.{}.{}", self.role, self.datacenter, self.domain)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} of {}", self.role, self.datacenter)?;
        if let Some(node) = &self.node {
            write!(f, " (node {node})")?;
        }
        Ok(())
    }
}

/// An instant as RFC 3339 (`2027-11-21T07:44:10Z`), for output and error messages.
pub fn format_time(instant: OffsetDateTime) -> String {
    instant
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| instant.to_string())
}

/// What `pki inspect` shows of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name, as `CN=...`.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// DNS and IP SANs, in certificate order.
    pub sans: Vec<String>,
    /// Whether this is a CA certificate.
    pub is_ca: bool,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Isthmus identities found in the SANs.
    pub identities: Vec<Identity>,
}

impl CertInfo {
    /// A one-line description for error messages: `"CN=..." (SANs: a, b)`.
    pub fn summary(&self) -> String {
        format!(
            "\"{}\" (SANs: {})",
            self.subject,
            if self.sans.is_empty() {
                "none".to_owned()
            } else {
                self.sans.join(", ")
            }
        )
    }
}

/// Reads the first certificate of a PEM input.
pub fn inspect_pem(pem: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, parsed_pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| PkiError::BadPem {
        what: "certificate",
        detail: format!("no PEM certificate found ({e})"),
    })?;
    if parsed_pem.label != "CERTIFICATE" {
        return Err(PkiError::BadPem {
            what: "certificate",
            detail: format!(
                "found a PEM block of type {:?}, expected CERTIFICATE",
                parsed_pem.label
            ),
        });
    }
    inspect_der(&parsed_pem.contents)
}

/// Reads a DER certificate.
pub fn inspect_der(der: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Parse {
        what: "certificate",
        detail: e.to_string(),
    })?;
    Ok(info_of(&cert))
}

fn info_of(cert: &X509Certificate<'_>) -> CertInfo {
    let mut sans = Vec::new();
    if let Ok(Some(extension)) = cert.subject_alternative_name() {
        for name in &extension.value.general_names {
            match name {
                GeneralName::DNSName(dns) => sans.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        sans.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string().replace(':', ""),
        identities: identities_in(&sans),
        sans,
        is_ca: cert.is_ca(),
        not_before,
        not_after,
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// Finds `<role>.<dc>.<domain>` SANs, attaching `<node>.<role>.<dc>.<domain>` node names.
fn identities_in(sans: &[String]) -> Vec<Identity> {
    let mut identities: Vec<Identity> = Vec::new();
    let mut node_names: Vec<(String, String)> = Vec::new(); // (role name, node)
    for san in sans {
        let labels: Vec<&str> = san.split('.').collect();
        for start in 0..=1 {
            if labels.len() < start + 3 {
                continue;
            }
            let Ok(role) = labels[start].parse::<Role>() else {
                continue;
            };
            let datacenter = labels[start + 1].to_owned();
            let domain = labels[start + 2..].join(".");
            if start == 0 {
                let identity = Identity {
                    role,
                    datacenter,
                    domain,
                    node: None,
                };
                if !identities.contains(&identity) {
                    identities.push(identity);
                }
            } else {
                node_names.push((labels[1..].join("."), labels[0].to_owned()));
            }
            break;
        }
    }
    for identity in &mut identities {
        let role_name = identity.role_name();
        identity.node = node_names
            .iter()
            .find(|(name, _)| *name == role_name)
            .map(|(_, node)| node.clone());
    }
    identities
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_identities_in_sans() {
        let sans: Vec<String> = [
            "server.dc1.consul",
            "s1.server.dc1.consul",
            "localhost",
            "gateway.dc2.example.com",
            "web.service.consul",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let found: Vec<String> = identities_in(&sans)
            .iter()
            .map(|i| format!("{i} under {}", i.domain))
            .collect();
        expect_test::expect![[
            r#"["a server of dc1 (node s1) under consul", "a gateway of dc2 under example.com"]"#
        ]]
        .assert_eq(&format!("{found:?}"));
    }
}
