//! The certificate authority: create one, load one, issue node certificates.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

use crate::{PkiError, Role};

/// When a certificate is valid. Passed in, so that callers (and tests) own the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First instant of validity.
    pub not_before: OffsetDateTime,
    /// Last instant of validity.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Valid from a minute before `now` (clock skew between nodes) for `days` days.
    pub fn days_from(now: OffsetDateTime, days: u32) -> Result<Validity, PkiError> {
        if days == 0 {
            return Err(PkiError::InvalidRequest(
                "--days must be at least 1".to_owned(),
            ));
        }
        Ok(Validity {
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::days(i64::from(days)),
        })
    }
}

/// A CA: its certificate and the key that signs node certificates.
pub struct CertificateAuthority {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

/// A node certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    /// The holder's role.
    pub role: Role,
    /// The holder's datacenter.
    pub datacenter: String,
    /// The federation's DNS domain (`consul`).
    pub domain: String,
    /// The holder's node name, added as `<node>.<role>.<dc>.<domain>`.
    pub node: Option<String>,
    /// Extra IP SANs (127.0.0.1 is always added, as Consul does).
    pub ips: Vec<IpAddr>,
    /// Extra DNS SANs (`localhost` is always added).
    pub dns_names: Vec<String>,
}

impl CertRequest {
    /// The SANs the certificate will carry, in order: the role identity, the node identity,
    /// `localhost`, the extra names, then IPs.
    pub fn subject_alt_names(&self) -> Vec<String> {
        let identity = format!("{}.{}.{}", self.role, self.datacenter, self.domain);
        let mut names = vec![identity.clone()];
        if let Some(node) = &self.node {
            names.push(format!("{node}.{identity}"));
        }
        names.push("localhost".to_owned());
        for name in &self.dns_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let mut ips = vec![loopback];
        for ip in &self.ips {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
        names.extend(ips.iter().map(IpAddr::to_string));
        names
    }

    fn validate(&self) -> Result<(), PkiError> {
        let label = |what: &str, value: &str| {
            wire::validate_dns_label(value).map_err(|e| {
                PkiError::InvalidRequest(format!("{what} {value:?} is not a DNS label: it {e}"))
            })
        };
        label("datacenter", &self.datacenter)?;
        if let Some(node) = &self.node {
            label("node name", node)?;
        }
        if self.domain.is_empty()
            || self
                .domain
                .split('.')
                .any(|part| label("domain", part).is_err())
        {
            return Err(PkiError::InvalidRequest(format!(
                "domain {:?} is not a DNS name of lowercase labels",
                self.domain
            )));
        }
        Ok(())
    }
}

/// A freshly issued certificate and its private key, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8). Write it with mode 0600.
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).map_err(|_| {
        PkiError::InvalidRequest("the system random number generator failed".to_owned())
    })?;
    bytes[0] &= 0x7f; // a positive INTEGER
    Ok(SerialNumber::from_slice(&bytes))
}

impl CertificateAuthority {
    /// Creates a new CA for `domain` with a fresh ECDSA P-256 key.
    pub fn create(domain: &str, validity: Validity) -> Result<CertificateAuthority, PkiError> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        let serial = random_serial()?;
        let short_id: String = serial
            .to_bytes()
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        // A unique CN, as Consul's `Consul Agent CA <serial>`: two CAs never look alike in errors.
        name.push(DnType::CommonName, format!("Isthmus Agent CA {short_id}"));
        name.push(DnType::OrganizationName, "Isthmus");
        name.push(DnType::OrganizationalUnitName, domain);
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(serial);
        let key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: "generating the CA key",
            source,
        })?;
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: "self-signing the CA",
                source,
            })?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let issuer = Issuer::new(params, key);
        Ok(CertificateAuthority {
            cert_pem,
            key_pem,
            issuer,
        })
    }

    /// Loads a CA from its certificate and key, as written by [`CertificateAuthority::create`]
    /// (or by `consul tls ca create`).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CertificateAuthority, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadPem {
            what: "CA key",
            detail: e.to_string(),
        })?;
        let info = crate::identity::inspect_pem(cert_pem.as_bytes())?;
        if !info.is_ca {
            return Err(PkiError::BadPem {
                what: "CA certificate",
                detail: format!("{} is not a CA certificate", info.subject),
            });
        }
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| PkiError::BadPem {
            what: "CA certificate",
            detail: e.to_string(),
        })?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM. Write it with mode 0600.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a node certificate usable for both sides of mutual TLS.
    pub fn issue(&self, request: &CertRequest, validity: Validity) -> Result<IssuedCert, PkiError> {
        request.validate()?;
        let sans = request.subject_alt_names();
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name.clone().try_into().map(SanType::DnsName).map_err(|_| {
                    PkiError::InvalidRequest(format!("{name:?} is not a valid DNS name"))
                }),
            })
            .collect::<Result<_, _>>()?;
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, sans[0].clone());
        params.distinguished_name = subject;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: "generating the node key",
            source,
        })?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Generate {
                what: "signing the node certificate",
                source,
            })?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
