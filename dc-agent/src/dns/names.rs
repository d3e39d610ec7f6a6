//! Query names Consul answers: `NAME.service[.DC].DOMAIN`, `TAG.NAME.service[.DC].DOMAIN`,
//! RFC 2782 `_NAME._TAG.service[.DC].DOMAIN` (tag `tcp`/`udp` means no tag),
//! `NAME.service.DC.dc.DOMAIN`, and `NODE.node[.DC].DOMAIN`. Case-insensitive; the trailing
//! dot is optional.

/// What a name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Instances of a service.
    Service {
        /// Service name.
        name: String,
        /// Only instances with this tag.
        tag: Option<String>,
        /// Datacenter (`None`: the agent's own).
        datacenter: Option<String>,
    },
    /// An address encoded in hex, as SRV targets of instances with their own address
    /// (`c0a80709.addr.dc1.consul`).
    Addr {
        /// The address.
        address: std::net::IpAddr,
        /// Datacenter (`None`: the agent's own).
        datacenter: Option<String>,
    },
    /// A node.
    Node {
        /// Node name.
        name: String,
        /// Datacenter (`None`: the agent's own).
        datacenter: Option<String>,
    },
}

impl Query {
    /// The datacenter the name spells out, if any.
    pub fn datacenter(&self) -> Option<&str> {
        match self {
            Query::Service { datacenter, .. }
            | Query::Node { datacenter, .. }
            | Query::Addr { datacenter, .. } => datacenter.as_deref(),
        }
    }
}

/// Why a name is not answered by this server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not under the domain: for the recursors (or REFUSED without any).
    #[error("{0} is outside the domain")]
    OutsideDomain(String),
    /// Under the domain but not a form Consul answers: NXDOMAIN.
    #[error("{0} is not a service or node name")]
    Unknown(String),
}

/// Parses `name` (for example `web.service.dc2.consul.`) under `domain` (`consul`).
pub fn parse(name: &str, domain: &str) -> Result<Query, NameError> {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    let domain = domain.trim_matches('.').to_ascii_lowercase();
    let Some(rest) = lower
        .strip_suffix(&domain)
        .filter(|r| r.is_empty() || r.ends_with('.'))
    else {
        return Err(NameError::OutsideDomain(name.to_owned()));
    };
    let rest = rest.trim_end_matches('.');
    let labels: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('.').collect()
    };
    let unknown = || NameError::Unknown(name.to_owned());
    // Find the kind label scanning from the end: `[..] kind [dc] [dc-keyword]`.
    // The kind nearest the end wins, as in Consul: `node.service.consul` is the service
    // `node`, not a node.
    let (kind_at, datacenter) = match labels.as_slice() {
        [.., kind] if is_kind(kind) => (labels.len() - 1, None),
        [.., kind, dc, "dc"] if is_kind(kind) => (labels.len() - 3, Some((*dc).to_owned())),
        [.., kind, dc] if is_kind(kind) => (labels.len() - 2, Some((*dc).to_owned())),
        _ => return Err(unknown()),
    };
    let before = &labels[..kind_at];
    match labels[kind_at] {
        "addr" => match before {
            [hex] => hex_address(hex)
                .map(|address| Query::Addr {
                    address,
                    datacenter,
                })
                .ok_or_else(unknown),
            _ => Err(unknown()),
        },
        "node" => match before {
            [node] => Ok(Query::Node {
                name: (*node).to_owned(),
                datacenter,
            }),
            _ => Err(unknown()),
        },
        _ => match before {
            [service] if !service.starts_with('_') => Ok(Query::Service {
                name: (*service).to_owned(),
                tag: None,
                datacenter,
            }),
            [tag, service] if !service.starts_with('_') => Ok(Query::Service {
                name: (*service).to_owned(),
                tag: Some((*tag).to_owned()),
                datacenter,
            }),
            [service, tag] if service.starts_with('_') && tag.starts_with('_') => {
                let tag = &tag[1..];
                let tag = if tag == "tcp" || tag == "udp" {
                    None
                } else {
                    Some(tag.to_owned())
                };
                Ok(Query::Service {
                    name: service[1..].to_owned(),
                    tag,
                    datacenter,
                })
            }
            _ => Err(unknown()),
        },
    }
}

fn is_kind(label: &str) -> bool {
    label == "service" || label == "node" || label == "addr"
}

/// Reads Consul's hex address label: 8 hex digits for IPv4, 32 for IPv6.
fn hex_address(label: &str) -> Option<std::net::IpAddr> {
    let bytes: Vec<u8> = (0..label.len())
        .step_by(2)
        .map(|i| {
            label
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<_>>()?;
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes.as_slice())
            .ok()
            .map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes.as_slice())
            .ok()
            .map(std::net::IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str) -> String {
        match parse(name, "consul") {
            Ok(query) => format!("{query:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn consul_name_forms() {
        let names = [
            "web.service.consul.",
            "WEB.Service.DC2.consul",
            "rails.web.service.consul",
            "_web._rails.service.dc1.consul.",
            "_web._tcp.service.consul",
            "web.service.dc2.dc.consul",
            "s1.node.consul.",
            "s1.node.dc2.consul",
            "node.service.consul",
            "c0a80709.addr.dc1.consul.",
            "zz.addr.consul",
            "consul.",
            "a.b.web.service.consul",
            "web.services.consul",
            "example.com.",
            "web.service.notconsul",
        ];
        let shown: Vec<String> = names
            .iter()
            .map(|n| format!("{n} -> {}", check(n)))
            .collect();
        expect_test::expect![[r#"
            web.service.consul. -> Service { name: "web", tag: None, datacenter: None }
            WEB.Service.DC2.consul -> Service { name: "web", tag: None, datacenter: Some("dc2") }
            rails.web.service.consul -> Service { name: "web", tag: Some("rails"), datacenter: None }
            _web._rails.service.dc1.consul. -> Service { name: "web", tag: Some("rails"), datacenter: Some("dc1") }
            _web._tcp.service.consul -> Service { name: "web", tag: None, datacenter: None }
            web.service.dc2.dc.consul -> Service { name: "web", tag: None, datacenter: Some("dc2") }
            s1.node.consul. -> Node { name: "s1", datacenter: None }
            s1.node.dc2.consul -> Node { name: "s1", datacenter: Some("dc2") }
            node.service.consul -> Service { name: "node", tag: None, datacenter: None }
            c0a80709.addr.dc1.consul. -> Addr { address: 192.168.7.9, datacenter: Some("dc1") }
            zz.addr.consul -> error: zz.addr.consul is not a service or node name
            consul. -> error: consul. is not a service or node name
            a.b.web.service.consul -> error: a.b.web.service.consul is not a service or node name
            web.services.consul -> error: web.services.consul is not a service or node name
            example.com. -> error: example.com. is outside the domain
            web.service.notconsul -> error: web.service.notconsul is outside the domain"#]]
        .assert_eq(&shown.join("\n"));
    }
}
