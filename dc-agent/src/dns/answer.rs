//! Deciding a DNS answer from the catalog, as Consul answers: healthy instances only
//! (critical and maintenance left out; warning too with `only_passing`), shuffled, SRV with
//! the node (or the service address) as target and its address in the additional section,
//! node TXT records from node metadata, NXDOMAIN with the domain's SOA. An address that is a
//! host name (an external node registered as `db.example.com`) is a CNAME; identical address
//! records are given once; the domain's apex answers SOA and NS (the servers, as
//! `<node>.node.<dc>.<domain>`); `in-addr.arpa`/`ip6.arpa` names answer PTR with the nodes
//! at that address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wire::records::HealthStatus;

use super::names::{parse, NameError, Query};

/// A service instance as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Node name.
    pub node: String,
    /// Node address.
    pub node_address: String,
    /// Service address (empty: the node's).
    pub service_address: String,
    /// Port.
    pub port: u16,
    /// Tags.
    pub tags: Vec<String>,
    /// Worst status of the node's and the instance's checks.
    pub status: HealthStatus,
}

/// A node as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Address.
    pub address: String,
    /// Metadata, served as TXT.
    pub meta: BTreeMap<String, String>,
}

/// What the answer reads.
pub trait CatalogView {
    /// Every instance of a service.
    fn instances(&self, service: &str) -> Vec<Instance>;
    /// A node.
    fn node(&self, name: &str) -> Option<NodeInfo>;
    /// The nodes at an address (for PTR), or `None` when this view cannot tell (it holds
    /// only the names asked for); the query then goes to the recursors.
    fn nodes_at(&self, _address: IpAddr) -> Option<Vec<String>> {
        None
    }
    /// The servers (nodes with the `consul` service) and their addresses, for NS.
    fn servers(&self) -> Vec<(String, String)> {
        self.instances("consul")
            .into_iter()
            .filter(|i| i.status != HealthStatus::Critical)
            .map(|i| (i.node, i.node_address))
            .collect()
    }
}

/// A view seen through an ACL token (the agent's `tokens.default`, as Consul's DNS): only
/// the services and nodes it may read; with no token resolved yet, nothing.
pub struct Filtered<'a> {
    /// The view.
    pub inner: &'a dyn CatalogView,
    /// What the token may read (none: nothing).
    pub auth: Option<&'a acl::Authorizer>,
}

impl Filtered<'_> {
    fn may_read(&self, resource: acl::Resource, name: &str) -> bool {
        self.auth
            .is_some_and(|auth| auth.allows(resource, name, acl::Need::Read))
    }
}

impl CatalogView for Filtered<'_> {
    fn instances(&self, service: &str) -> Vec<Instance> {
        if !self.may_read(acl::Resource::Service, service) {
            return Vec::new();
        }
        self.inner
            .instances(service)
            .into_iter()
            .filter(|i| self.may_read(acl::Resource::Node, &i.node))
            .collect()
    }

    fn node(&self, name: &str) -> Option<NodeInfo> {
        if !self.may_read(acl::Resource::Node, name) {
            return None;
        }
        self.inner.node(name)
    }

    fn nodes_at(&self, address: IpAddr) -> Option<Vec<String>> {
        self.inner.nodes_at(address).map(|nodes| {
            nodes
                .into_iter()
                .filter(|n| self.may_read(acl::Resource::Node, n))
                .collect()
        })
    }
}

impl CatalogView for crate::state::Catalog {
    fn instances(&self, service: &str) -> Vec<Instance> {
        // DNS names are case-insensitive; catalog names keep their case. Most are lower
        // case already: look the exact name up first.
        let exact = self.instances(service, &[]).next().is_some();
        let names = if exact {
            Default::default()
        } else {
            self.service_names()
        };
        let service = if exact {
            service
        } else {
            let Some(service) = names
                .keys()
                .find(|name| name.eq_ignore_ascii_case(service))
                .copied()
            else {
                return Vec::new();
            };
            service
        };
        self.service_health(service, &[])
            .into_iter()
            .map(|health| Instance {
                node: health.node.name.clone(),
                node_address: health.node.address.clone(),
                service_address: health.service.address.clone(),
                port: health.service.port,
                tags: health.service.tags.clone(),
                status: health.aggregate(),
            })
            .collect()
    }

    fn nodes_at(&self, address: IpAddr) -> Option<Vec<String>> {
        Some(
            self.nodes()
                .filter(|node| node.address.parse::<IpAddr>().ok() == Some(address))
                .map(|node| node.name.clone())
                .collect(),
        )
    }

    fn node(&self, name: &str) -> Option<NodeInfo> {
        let node = self.node(name).or_else(|| {
            self.nodes()
                .find(|node| node.name.eq_ignore_ascii_case(name))
        })?;
        Some(NodeInfo {
            address: node.address.clone(),
            meta: node.meta.clone(),
        })
    }
}

/// The record types the answer distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Service location.
    Srv,
    /// Text.
    Txt,
    /// Everything.
    Any,
    /// Name servers.
    Ns,
    /// Start of authority.
    Soa,
    /// Reverse lookup.
    Ptr,
    /// Any other type (answered with no records).
    Other,
}

/// Settings of the DNS interface (Consul's `dns_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The domain (`consul`).
    pub domain: String,
    /// This agent's datacenter.
    pub datacenter: String,
    /// TTL of service records by service name (lower case): an exact name, a prefix
    /// ending in `*`, or `*` for the rest (Consul's default: 0).
    pub service_ttl: std::collections::BTreeMap<String, u32>,
    /// TTL of node records (default 0).
    pub node_ttl: u32,
    /// Leave out instances with warnings too.
    pub only_passing: bool,
    /// Most instances per answer (`a_record_limit`), if any.
    pub max_records: Option<usize>,
}

impl Settings {
    /// The TTL of `service`'s records: its own entry, else the longest matching `prefix*`,
    /// else `*`, else 0 (Consul's rule).
    pub fn service_ttl(&self, service: &str) -> u32 {
        let service = service.to_ascii_lowercase();
        if let Some(ttl) = self.service_ttl.get(&service) {
            return *ttl;
        }
        self.service_ttl
            .iter()
            .filter_map(|(pattern, ttl)| {
                let prefix = pattern.strip_suffix('*')?;
                service.starts_with(prefix).then_some((prefix.len(), *ttl))
            })
            .max_by_key(|(len, _)| *len)
            .map_or(0, |(_, ttl)| ttl)
    }
}

/// The response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// Answered (possibly with no records).
    NoError,
    /// The name does not exist.
    NxDomain,
    /// The answer cannot be had (another datacenter without a path, for now).
    ServFail,
    /// Not ours to answer (outside the domain, no recursors).
    Refused,
}

/// Record data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// IPv4.
    A(Ipv4Addr),
    /// IPv6.
    Aaaa(Ipv6Addr),
    /// Service location.
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host name (absolute).
        target: String,
    },
    /// Text strings.
    Txt(Vec<String>),
    /// An alias (an address that is a host name).
    Cname(String),
    /// A name server.
    Ns(String),
    /// A reverse-lookup name.
    Ptr(String),
    /// Start of authority.
    Soa {
        /// Primary name server.
        mname: String,
        /// Responsible mailbox.
        rname: String,
        /// Serial.
        serial: u32,
        /// Refresh.
        refresh: u32,
        /// Retry.
        retry: u32,
        /// Expire.
        expire: u32,
        /// Negative-caching TTL.
        minimum: u32,
    },
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name (absolute, lowercase).
    pub name: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// Data.
    pub data: RData,
}

/// A decided answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: Rcode,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the SOA of a negative answer).
    pub authority: Vec<Record>,
    /// Additional section (addresses of SRV targets).
    pub additionals: Vec<Record>,
    /// Ask the recursors first, when there are any (a reverse name the catalog does not
    /// know, as Consul); this answer stands otherwise.
    pub recurse_first: bool,
}

/// Decides the answer to `qname`/`qtype`. `seed` shuffles instances; `serial` is the SOA
/// serial (Consul uses the time).
pub fn answer(
    qname: &str,
    qtype: QueryType,
    settings: &Settings,
    view: &dyn CatalogView,
    seed: u64,
    serial: u32,
) -> Answer {
    let domain = format!(
        "{}.",
        settings.domain.trim_matches('.').to_ascii_lowercase()
    );
    let owner = format!("{}.", qname.trim_end_matches('.').to_ascii_lowercase());
    let soa = Record {
        name: domain.clone(),
        ttl: 0,
        data: RData::Soa {
            mname: format!("ns.{domain}"),
            rname: format!("hostmaster.{domain}"),
            serial,
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: 0,
        },
    };
    let asked = Asked {
        owner,
        domain,
        qtype,
        settings,
        view,
        soa,
    };
    // Reverse lookups: the nodes at that address.
    if let Some(address) = reverse_address(&asked.owner) {
        return asked.reverse(address);
    }
    // The apex: SOA and NS (the servers).
    if asked.owner == asked.domain {
        return asked.apex();
    }
    let query = match parse(qname, &settings.domain) {
        Ok(query) => query,
        Err(NameError::OutsideDomain(_)) => return asked.empty(Rcode::Refused),
        Err(NameError::Unknown(_)) => {
            // The domain and its kind labels exist (they have names under them): NODATA.
            let apex = ["service", "node", "addr"]
                .iter()
                .any(|kind| asked.owner == format!("{kind}.{}", asked.domain));
            return asked.negative(if apex {
                Rcode::NoError
            } else {
                Rcode::NxDomain
            });
        }
    };
    let local = |dc: &Option<String>| dc.as_deref().is_none_or(|dc| dc == settings.datacenter);
    match query {
        Query::Service { datacenter, .. }
        | Query::Node { datacenter, .. }
        | Query::Addr { datacenter, .. }
            if !local(&datacenter) =>
        {
            // Other datacenters are answered from their views (`dns::server`), not here.
            asked.negative(Rcode::ServFail)
        }
        Query::Addr { address, .. } => {
            let records =
                address_records(&asked.owner, &address.to_string(), qtype, settings.node_ttl);
            asked.with(records, Vec::new())
        }
        Query::Node { name, .. } => asked.node(&name),
        Query::Service { name, tag, .. } => asked.service(&name, tag.as_deref(), seed),
    }
}

/// One question and what answers it.
struct Asked<'a> {
    /// The name asked, lower case, with its final dot.
    owner: String,
    /// The domain, lower case, with its final dot.
    domain: String,
    qtype: QueryType,
    settings: &'a Settings,
    view: &'a dyn CatalogView,
    soa: Record,
}

impl Asked<'_> {
    fn empty(&self, rcode: Rcode) -> Answer {
        Answer {
            rcode,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            recurse_first: false,
        }
    }

    /// No such name (or no data): the rcode, with the SOA in the authority section.
    fn negative(&self, rcode: Rcode) -> Answer {
        let mut out = self.empty(rcode);
        out.authority.push(self.soa.clone());
        out
    }

    /// An answer with `answers` and `additionals`; with none, NODATA (the SOA).
    fn with(&self, answers: Vec<Record>, additionals: Vec<Record>) -> Answer {
        if answers.is_empty() {
            return self.negative(Rcode::NoError);
        }
        let mut out = self.empty(Rcode::NoError);
        out.answers = answers;
        out.additionals = additionals;
        out
    }

    fn node_target(&self, node: &str) -> String {
        format!(
            "{}.node.{}.{}",
            node.to_ascii_lowercase(),
            self.settings.datacenter,
            self.domain
        )
    }

    /// PTR: the nodes at `address`; unknown to the catalog, the recursors are asked first.
    fn reverse(&self, address: IpAddr) -> Answer {
        let Some(nodes) = self.view.nodes_at(address) else {
            return self.empty(Rcode::Refused);
        };
        if nodes.is_empty() {
            let mut out = self.negative(Rcode::NxDomain);
            out.recurse_first = true;
            return out;
        }
        let mut answers = Vec::new();
        if matches!(self.qtype, QueryType::Ptr | QueryType::Any) {
            for node in nodes {
                answers.push(Record {
                    name: self.owner.clone(),
                    ttl: self.settings.node_ttl,
                    data: RData::Ptr(self.node_target(&node)),
                });
            }
        }
        self.with(answers, Vec::new())
    }

    /// The domain itself: SOA, and NS naming the servers.
    fn apex(&self) -> Answer {
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        if matches!(self.qtype, QueryType::Soa | QueryType::Any) {
            answers.push(self.soa.clone());
        }
        if matches!(self.qtype, QueryType::Ns | QueryType::Any) {
            for (node, address) in self.view.servers() {
                if wire::validate_dns_label(&node.to_ascii_lowercase()).is_err() {
                    continue;
                }
                let target = self.node_target(&node);
                answers.push(Record {
                    name: self.domain.clone(),
                    ttl: 0,
                    data: RData::Ns(target.clone()),
                });
                additionals.extend(address_records(&target, &address, QueryType::Any, 0));
            }
        }
        self.with(answers, additionals)
    }

    /// `NODE.node[.DC].consul`: its address, and its metadata as TXT.
    fn node(&self, name: &str) -> Answer {
        let Some(node) = self.view.node(name) else {
            return self.negative(Rcode::NxDomain);
        };
        let ttl = self.settings.node_ttl;
        let mut answers = Vec::new();
        if matches!(self.qtype, QueryType::A | QueryType::Aaaa | QueryType::Any) {
            answers.extend(address_records(&self.owner, &node.address, self.qtype, ttl));
        }
        if matches!(self.qtype, QueryType::Txt | QueryType::Any) && !node.meta.is_empty() {
            let texts = node
                .meta
                .iter()
                .map(|(key, value)| match key.strip_prefix("rfc1035-") {
                    Some(_) => value.clone(),
                    None => format!("{key}={value}"),
                })
                .collect();
            answers.push(Record {
                name: self.owner.clone(),
                ttl,
                data: RData::Txt(texts),
            });
        }
        self.with(answers, Vec::new())
    }

    /// `[TAG.]NAME.service[.DC].consul`: the healthy instances, shuffled and capped.
    fn service(&self, name: &str, tag: Option<&str>, seed: u64) -> Answer {
        let settings = self.settings;
        let mut instances: Vec<Instance> = self
            .view
            .instances(name)
            .into_iter()
            .filter(|i| tag.is_none_or(|t| i.tags.iter().any(|it| it.eq_ignore_ascii_case(t))))
            .filter(|i| match i.status {
                HealthStatus::Passing => true,
                HealthStatus::Warning => !settings.only_passing,
                HealthStatus::Critical | HealthStatus::Maintenance => false,
            })
            .collect();
        if instances.is_empty() {
            return self.negative(Rcode::NxDomain);
        }
        shuffle(&mut instances, seed);
        if let Some(limit) = settings.max_records {
            instances.truncate(limit.max(1));
        }
        let ttl = settings.service_ttl(name);
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        for instance in &instances {
            let address = if instance.service_address.is_empty() {
                &instance.node_address
            } else {
                &instance.service_address
            };
            match self.qtype {
                QueryType::Srv => {
                    let is_host_name = address.parse::<IpAddr>().is_err();
                    let target = if is_host_name && !address.is_empty() {
                        // A host name is its own target (resolved by the client).
                        format!("{}.", address.trim_end_matches('.').to_ascii_lowercase())
                    } else if instance.service_address.is_empty()
                        || instance.service_address == instance.node_address
                    {
                        format!(
                            "{}.node.{}.{}",
                            instance.node, settings.datacenter, self.domain
                        )
                    } else {
                        format!(
                            "{}.addr.{}.{}",
                            hex_address(address),
                            settings.datacenter,
                            self.domain
                        )
                    };
                    answers.push(Record {
                        name: self.owner.clone(),
                        ttl,
                        data: RData::Srv {
                            priority: 1,
                            weight: 1,
                            port: instance.port,
                            target: target.clone(),
                        },
                    });
                    if !is_host_name {
                        additionals.extend(address_records(&target, address, QueryType::Any, ttl));
                    }
                }
                QueryType::A | QueryType::Aaaa | QueryType::Any => {
                    // Several instances on one node share its address: once each.
                    for record in address_records(&self.owner, address, self.qtype, ttl) {
                        if !answers.contains(&record) {
                            answers.push(record);
                        }
                    }
                }
                QueryType::Txt
                | QueryType::Ns
                | QueryType::Soa
                | QueryType::Ptr
                | QueryType::Other => {}
            }
        }
        self.with(answers, additionals)
    }
}

/// The address a reverse-lookup name stands for (`4.3.2.1.in-addr.arpa.`, or the 32 nibbles
/// of `ip6.arpa.`).
pub(crate) fn reverse_address(owner: &str) -> Option<IpAddr> {
    if let Some(rest) = owner.strip_suffix(".in-addr.arpa.") {
        let mut octets: Vec<u8> = rest
            .split('.')
            .map(|label| label.parse::<u8>().ok())
            .collect::<Option<Vec<u8>>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(IpAddr::from([octets[0], octets[1], octets[2], octets[3]]));
    }
    let rest = owner.strip_suffix(".ip6.arpa.")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|label| {
            u8::from_str_radix(label, 16)
                .ok()
                .filter(|_| label.len() == 1)
        })
        .collect::<Option<Vec<u8>>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles
        .iter()
        .rev()
        .collect::<Vec<_>>()
        .chunks(2)
        .enumerate()
    {
        bytes[i] = (pair[0] << 4) | pair[1];
    }
    Some(IpAddr::from(bytes))
}

/// A or AAAA records for an address, as far as `qtype` asks for them; a CNAME when the
/// address is a host name (an external node or service registered by name), as Consul.
fn address_records(owner: &str, address: &str, qtype: QueryType, ttl: u32) -> Vec<Record> {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) if matches!(qtype, QueryType::A | QueryType::Any) => {
            vec![Record {
                name: owner.to_owned(),
                ttl,
                data: RData::A(v4),
            }]
        }
        Ok(IpAddr::V6(v6)) if matches!(qtype, QueryType::Aaaa | QueryType::Any) => {
            vec![Record {
                name: owner.to_owned(),
                ttl,
                data: RData::Aaaa(v6),
            }]
        }
        Err(_)
            if !address.is_empty()
                && matches!(qtype, QueryType::A | QueryType::Aaaa | QueryType::Any)
                && address.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                }) =>
        {
            vec![Record {
                name: owner.to_owned(),
                ttl,
                data: RData::Cname(format!(
                    "{}.",
                    address.trim_end_matches('.').to_ascii_lowercase()
                )),
            }]
        }
        _ => Vec::new(),
    }
}

/// Consul's `.addr.` label: the address in hex (`0a000001` for 10.0.0.1).
fn hex_address(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.octets().iter().map(|b| format!("{b:02x}")).collect(),
        Ok(IpAddr::V6(v6)) => v6.octets().iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => address.to_owned(),
    }
}

/// Fisher-Yates with a xorshift generator seeded by the caller.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// A dig-like listing of an answer, for tests and logs.
pub fn render(answer: &Answer) -> String {
    let mut out = format!("status: {:?}\n", answer.rcode);
    for (section, records) in [
        ("ANSWER", &answer.answers),
        ("AUTHORITY", &answer.authority),
        ("ADDITIONAL", &answer.additionals),
    ] {
        if records.is_empty() {
            continue;
        }
        let _ = writeln!(out, ";; {section}");
        for record in records {
            let data = match &record.data {
                RData::A(ip) => format!("A {ip}"),
                RData::Aaaa(ip) => format!("AAAA {ip}"),
                RData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                } => format!("SRV {priority} {weight} {port} {target}"),
                RData::Cname(target) => format!("CNAME {target}"),
                RData::Ns(target) => format!("NS {target}"),
                RData::Ptr(target) => format!("PTR {target}"),
                RData::Txt(texts) => format!(
                    "TXT {}",
                    texts
                        .iter()
                        .map(|t| format!("{t:?}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                RData::Soa {
                    mname,
                    rname,
                    serial,
                    refresh,
                    retry,
                    expire,
                    minimum,
                } => {
                    format!("SOA {mname} {rname} {serial} {refresh} {retry} {expire} {minimum}")
                }
            };
            let _ = writeln!(out, "{} {} {data}", record.name, record.ttl);
        }
    }
    out
}
