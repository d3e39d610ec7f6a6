//! The checks `parse` runs: every rule of the file, each problem a diagnostic with its
//! place in the file.

use super::*;

pub(super) struct Checker {
    pub(super) diagnostics: Vec<Diagnostic>,
}

const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// Agent config keys that the topology itself sets; `extra` may not override them.
const MANAGED_KEYS: [&str; 14] = [
    "datacenter",
    "primary_datacenter",
    "domain",
    "node_name",
    "server",
    "bootstrap_expect",
    "bind_addr",
    "client_addr",
    "ports",
    "retry_join",
    "data_dir",
    "encrypt",
    "tls",
    "isthmus",
];

fn span_of<T>(spanned: &Spanned<T>) -> Option<Range<usize>> {
    Some(spanned.span())
}

impl Checker {
    fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::error(span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    fn warning(
        &mut self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::warning(span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    fn help(diagnostic: &mut Diagnostic, help: impl Into<String>) {
        diagnostic.help = Some(help.into());
    }

    fn dns_label(&mut self, what: &str, value: &Spanned<String>) -> bool {
        match validate_dns_label(value.get_ref()) {
            Ok(()) => true,
            Err(e) => {
                let suggestion: String = value
                    .get_ref()
                    .to_lowercase()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                let suggestion = suggestion.trim_matches('-').to_owned();
                let d = self.error(
                    span_of(value),
                    format!("{what} `{}` is not a DNS label: it {e}", value.get_ref()),
                );
                let help = if validate_dns_label(&suggestion).is_ok() {
                    format!("{what}s appear in DNS names and certificates; try `{suggestion}`")
                } else {
                    format!("{what}s appear in DNS names and certificates: use 1 to 63 of a-z, 0-9 and '-'")
                };
                Self::help(d, help);
                false
            }
        }
    }

    pub(super) fn topology(&mut self, raw: RawTopology, file_stem: &str) -> Option<Topology> {
        let domain = match &raw.domain {
            Some(domain) => {
                let valid = !domain.get_ref().is_empty()
                    && domain
                        .get_ref()
                        .split('.')
                        .all(|label| validate_dns_label(label).is_ok());
                if !valid {
                    let d = self.error(
                        span_of(domain),
                        format!("domain `{}` is not a DNS name", domain.get_ref()),
                    );
                    Self::help(d, "use lowercase labels separated by dots, such as `consul` or `isthmus.internal`");
                }
                domain.get_ref().clone()
            }
            None => "consul".to_owned(),
        };

        let gossip_key = self.gossip(raw.gossip.as_ref());
        let (ca, ca_days, cert_days) = self.tls(raw.tls.as_ref());
        let acl = self.acl(raw.acl.as_ref());
        let defaults = raw.defaults.unwrap_or_default();
        let default_log_level = self
            .log_level(defaults.log_level.as_ref())
            .unwrap_or_else(|| "info".to_owned());
        let default_extra = self.extra(defaults.extra.as_ref());

        if raw.datacenters.is_empty() {
            let d = self.error(None, "the file declares no datacenter");
            Self::help(
                d,
                "add one:\n\n[[datacenters]]\nname = \"dc1\"\nservers = 3\n",
            );
            return None;
        }
        if raw.datacenters.len() > 255 {
            self.error(
                None,
                format!(
                    "{} datacenters declared; at most 255 fit the loopback layout",
                    raw.datacenters.len()
                ),
            );
        }

        let multi_dc = raw.datacenters.len() > 1;
        let mut datacenters = Vec::new();
        let mut seen_dc: HashMap<String, Range<usize>> = HashMap::new();
        for (position, raw_dc) in raw.datacenters.iter().enumerate() {
            let name = &raw_dc.get_ref().name;
            if self.dns_label("datacenter name", name) {
                if let Some(first) = seen_dc.get(name.get_ref()) {
                    let d = self.error(
                        span_of(name),
                        format!("duplicate datacenter `{}`", name.get_ref()),
                    );
                    d.related = Some((first.clone(), "first declared here".to_owned()));
                    Self::help(d, "datacenter names must be unique in the federation");
                    continue;
                }
                seen_dc.insert(name.get_ref().clone(), name.span());
            }
            let index = u8::try_from(position + 1).unwrap_or(u8::MAX);
            let defaults = NodeDefaults {
                log_level: &default_log_level,
                ports: defaults.ports,
                extra: &default_extra,
            };
            if let Some(dc) = self.datacenter(raw_dc, index, multi_dc, &defaults) {
                datacenters.push(dc);
            }
        }

        let primary_datacenter = match &raw.primary_datacenter {
            Some(primary) => {
                if !datacenters.iter().any(|dc| dc.name == *primary.get_ref()) {
                    let names: Vec<&str> = datacenters.iter().map(|dc| dc.name.as_str()).collect();
                    let d = self.error(
                        span_of(primary),
                        format!("primary datacenter `{}` is not declared", primary.get_ref()),
                    );
                    let help = match nearest(primary.get_ref(), &names) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!("declared datacenters: {}", names.join(", ")),
                    };
                    Self::help(d, help);
                }
                primary.get_ref().clone()
            }
            None => datacenters
                .first()
                .map(|dc| dc.name.clone())
                .unwrap_or_default(),
        };

        let https = raw.tls.as_ref().and_then(|t| t.https).unwrap_or(false);
        self.duplicate_listeners(&datacenters, https);

        Some(Topology {
            domain,
            primary_datacenter,
            state_dir: raw
                .state_dir
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".isthmus").join(file_stem)),
            gossip_key,
            ca,
            ca_days,
            cert_days,
            https,
            acl,
            datacenters,
        })
    }

    fn acl(&mut self, raw: Option<&crate::schema::RawAcl>) -> Option<TopologyAcl> {
        let raw = raw?;
        let policy = match &raw.default_policy {
            None => "deny".to_owned(),
            Some(policy) if ["allow", "deny"].contains(&policy.get_ref().as_str()) => {
                policy.get_ref().clone()
            }
            Some(policy) => {
                let d = self.error(
                    span_of(policy),
                    format!("default_policy `{}` is not allow or deny", policy.get_ref()),
                );
                Self::help(d, "write `default_policy = \"deny\"` (or \"allow\")");
                "deny".to_owned()
            }
        };
        let enabled = raw.enabled.as_ref().is_some_and(|e| *e.get_ref());
        if !enabled && raw.default_policy.is_some() {
            let span = raw.default_policy.as_ref().and_then(span_of);
            let d = self.warning(
                span,
                "`[acl]` sets a default_policy but not `enabled = true`: ACLs stay off",
            );
            Self::help(d, "add `enabled = true` to `[acl]`");
        }
        enabled.then_some(TopologyAcl {
            default_policy: policy,
        })
    }

    fn gossip(&mut self, raw: Option<&crate::schema::RawGossip>) -> GossipKeySource {
        let Some(raw) = raw else {
            return GossipKeySource::Generate;
        };
        match (&raw.key, &raw.key_file) {
            (Some(key), Some(file)) => {
                let d = self.error(span_of(file), "`key` and `key_file` are both set");
                d.related = Some((key.span(), "`key` is set here".to_owned()));
                Self::help(
                    d,
                    "keep one: `key = \"generate\"`, `key = \"<base64>\"` or `key_file = \"path\"`",
                );
                GossipKeySource::Generate
            }
            (Some(key), None) if key.get_ref() == "generate" => GossipKeySource::Generate,
            (Some(key), None) => {
                if let Err(message) = check_gossip_key(key.get_ref()) {
                    let d = self.error(span_of(key), message);
                    Self::help(d, "write `key = \"generate\"`, or paste the output of `dc-agent keygen` (32 random bytes, base64)");
                }
                GossipKeySource::Inline(key.get_ref().clone())
            }
            (None, Some(file)) => GossipKeySource::File(PathBuf::from(file.get_ref())),
            (None, None) => GossipKeySource::Generate,
        }
    }

    fn tls(&mut self, raw: Option<&crate::schema::RawTls>) -> (CaSource, u32, u32) {
        let Some(raw) = raw else {
            return (CaSource::Generate, 1825, 365);
        };
        let days = |checker: &mut Checker, value: &Option<Spanned<u32>>, default: u32| match value {
            Some(days) if *days.get_ref() == 0 => {
                let d = checker.error(span_of(days), "a validity of 0 days");
                Self::help(d, "give at least 1 day");
                default
            }
            Some(days) => *days.get_ref(),
            None => default,
        };
        let ca_days = days(self, &raw.ca_days, 1825);
        let cert_days = days(self, &raw.cert_days, 365);
        let source = match (&raw.ca, &raw.ca_dir) {
            (Some(ca), Some(dir)) => {
                let d = self.error(span_of(dir), "`ca` and `ca_dir` are both set");
                d.related = Some((ca.span(), "`ca` is set here".to_owned()));
                Self::help(d, "keep one: `ca = \"generate\"` or `ca_dir = \"path\"`");
                CaSource::Generate
            }
            (Some(ca), None) if ca.get_ref() == "generate" => CaSource::Generate,
            (Some(ca), None) => {
                let d = self.error(
                    span_of(ca),
                    format!("`ca = \"{}\"` is not understood", ca.get_ref()),
                );
                Self::help(d, "write `ca = \"generate\"`, or `ca_dir = \"path\"` for a directory holding ca.pem and ca-key.pem");
                CaSource::Generate
            }
            (None, Some(dir)) => CaSource::Dir(PathBuf::from(dir.get_ref())),
            (None, None) => CaSource::Generate,
        };
        (source, ca_days, cert_days)
    }

    fn log_level(&mut self, raw: Option<&Spanned<String>>) -> Option<String> {
        let raw = raw?;
        if LOG_LEVELS.contains(&raw.get_ref().as_str()) {
            return Some(raw.get_ref().clone());
        }
        let d = self.error(
            span_of(raw),
            format!("unknown log level `{}`", raw.get_ref()),
        );
        let help = match nearest(raw.get_ref(), &LOG_LEVELS) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("use one of {}", LOG_LEVELS.join(", ")),
        };
        Self::help(d, help);
        None
    }

    fn extra(
        &mut self,
        raw: Option<&Spanned<toml::Table>>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let Some(raw) = raw else {
            return serde_json::Map::new();
        };
        let value = match serde_json::to_value(raw.get_ref()) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) | Err(_) => {
                let d = self.error(
                    span_of(raw),
                    "`extra` holds a value that has no JSON form (a TOML date?)",
                );
                Self::help(d, "write dates and times as strings");
                return serde_json::Map::new();
            }
        };
        for key in value.keys() {
            if MANAGED_KEYS.contains(&key.as_str()) {
                let d = self.error(
                    span_of(raw),
                    format!("`extra` sets `{key}`, which the topology manages"),
                );
                Self::help(
                    d,
                    match key.as_str() {
                        "ports" => {
                            "set ports with `ports = { http = 8500 }` beside `extra`".to_owned()
                        }
                        "encrypt" => "set the gossip key in [gossip]".to_owned(),
                        "tls" => "set TLS material in [tls]".to_owned(),
                        _ => format!("remove `{key}` from `extra`: the topology derives it"),
                    },
                );
            }
        }
        value
    }

    fn datacenter(
        &mut self,
        raw_dc: &Spanned<RawDatacenter>,
        index: u8,
        multi_dc: bool,
        defaults: &NodeDefaults<'_>,
    ) -> Option<Datacenter> {
        let raw = raw_dc.get_ref();
        let dc_name = raw.name.get_ref().clone();
        let mut nodes = Vec::new();
        let mut name_spans: HashMap<String, Range<usize>> = HashMap::new();

        let servers = self.node_set(
            &dc_name,
            index,
            Role::Server,
            raw.servers.as_ref(),
            1,
            &mut nodes,
            &mut name_spans,
        );
        self.server_count(raw, &dc_name, servers);
        let first_client = u8::try_from(servers + 1).unwrap_or(u8::MAX);
        let clients = self.node_set(
            &dc_name,
            index,
            Role::Client,
            raw.clients.as_ref(),
            first_client,
            &mut nodes,
            &mut name_spans,
        );
        if servers + clients > 99 {
            let span = raw
                .clients
                .as_ref()
                .map_or_else(|| raw.name.span(), Spanned::span);
            let d = self.error(Some(span), format!("datacenter `{dc_name}` has {} agents; the loopback layout places at most 99 (127.0.{index}.1-99)", servers + clients));
            Self::help(
                d,
                "list nodes with explicit addresses for larger datacenters",
            );
        }
        let gateways = self.node_set(
            &dc_name,
            index,
            Role::Gateway,
            raw.gateways.as_ref(),
            100,
            &mut nodes,
            &mut name_spans,
        );
        if multi_dc && gateways == 0 {
            let span = raw
                .gateways
                .as_ref()
                .map_or_else(|| raw.name.span(), Spanned::span);
            let d = self.error(
                Some(span),
                format!(
                    "datacenter `{dc_name}` has no gateway, so no other datacenter can reach it"
                ),
            );
            Self::help(
                d,
                "servers reach other datacenters only through gateways: add `gateways = 1`",
            );
        }

        self.node_settings(raw, &dc_name, defaults, &mut nodes, &name_spans);

        let services = self.services(&dc_name, &raw.services, &nodes);
        Some(Datacenter {
            name: dc_name,
            index,
            nodes,
            services,
        })
    }

    /// An error for no server, a warning for an even count.
    fn server_count(&mut self, raw: &RawDatacenter, dc_name: &str, servers: usize) {
        match servers {
            0 => {
                let span = raw
                    .servers
                    .as_ref()
                    .map_or_else(|| raw.name.span(), Spanned::span);
                let d = self.error(Some(span), format!("datacenter `{dc_name}` has no server"));
                Self::help(
                    d,
                    "every datacenter needs servers to hold its catalog and KV: add `servers = 3`",
                );
            }
            n if n % 2 == 0 => {
                let span = raw.servers.as_ref().map(Spanned::span);
                let d = self.warning(
                    span,
                    format!("datacenter `{dc_name}` has {n} servers, an even number"),
                );
                Self::help(
                    d,
                    format!(
                    "{n} servers tolerate {} failure(s), the same as {}; use an odd count (3 or 5)",
                    (n - 1) / 2,
                    n - 1
                ),
                );
            }
            _ => {}
        }
    }

    /// Per-node settings: the topology's defaults, then the datacenter's overrides (an
    /// override of an unknown node is an error naming the nearest one).
    fn node_settings(
        &mut self,
        raw: &RawDatacenter,
        dc_name: &str,
        defaults: &NodeDefaults<'_>,
        nodes: &mut [Node],
        name_spans: &HashMap<String, Range<usize>>,
    ) {
        let mut overrides: HashMap<&str, &RawNodeSettings> = HashMap::new();
        for (name, settings) in &raw.overrides {
            if name_spans.contains_key(name.get_ref()) {
                overrides.insert(name.get_ref(), settings.get_ref());
            } else {
                let names: Vec<&str> = nodes.iter().map(|n: &Node| n.name.as_str()).collect();
                let d = self.error(
                    span_of(name),
                    format!(
                        "override for unknown node `{}` in {dc_name}",
                        name.get_ref()
                    ),
                );
                Self::help(
                    d,
                    match nearest(name.get_ref(), &names) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!("nodes of {dc_name}: {}", names.join(", ")),
                    },
                );
            }
        }
        for node in nodes.iter_mut() {
            node.log_level = defaults.log_level.to_owned();
            if let Some(ports) = &defaults.ports {
                node.ports.apply(ports);
            }
            node.extra = defaults.extra.clone();
            if let Some(settings) = overrides.get(node.name.as_str()) {
                if let Some(level) = self.log_level(settings.log_level.as_ref()) {
                    node.log_level = level;
                }
                if let Some(ports) = &settings.ports {
                    node.ports.apply(ports);
                }
                for (key, value) in self.extra(settings.extra.as_ref()) {
                    node.extra.insert(key, value);
                }
            }
        }
    }

    /// Expands a node set into `nodes`; returns how many it declared.
    #[allow(clippy::too_many_arguments)]
    fn node_set(
        &mut self,
        dc: &str,
        dc_index: u8,
        role: Role,
        raw: Option<&Spanned<RawNodes>>,
        first_host: u8,
        nodes: &mut Vec<Node>,
        name_spans: &mut HashMap<String, Range<usize>>,
    ) -> usize {
        let Some(raw) = raw else { return 0 };
        let prefix = match role {
            Role::Server => "s",
            Role::Client => "c",
            Role::Gateway => "gw",
        };
        let blank = |name: String, address: IpAddr, declared_at: Range<usize>| Node {
            name,
            role,
            address,
            ports: NodePorts::default(),
            log_level: String::new(),
            extra: serde_json::Map::new(),
            declared_at,
        };
        match raw.get_ref() {
            RawNodes::Count(count) => {
                let limit = if role == Role::Gateway { 155 } else { 99 };
                if *count < 0 || *count > limit {
                    let d = self.error(
                        span_of(raw),
                        format!("{count} {role}s: the count must be between 0 and {limit}"),
                    );
                    Self::help(
                        d,
                        "list nodes with explicit addresses for larger datacenters",
                    );
                    return 0;
                }
                let count = usize::try_from(*count).unwrap_or(0);
                for n in 1..=count {
                    let name = format!("{prefix}{n}");
                    let host = usize::from(first_host) + n - 1;
                    let host = u8::try_from(host).unwrap_or(u8::MAX);
                    if let Some(first) = name_spans.get(&name) {
                        let d = self.error(
                            span_of(raw),
                            format!("duplicate node name `{name}` in {dc}"),
                        );
                        d.related = Some((first.clone(), "also named here".to_owned()));
                        Self::help(
                            d,
                            "node names must be unique within a datacenter; rename the listed node",
                        );
                        continue;
                    }
                    name_spans.insert(name.clone(), raw.span());
                    nodes.push(blank(
                        name,
                        IpAddr::V4(Ipv4Addr::new(127, 0, dc_index, host)),
                        raw.span(),
                    ));
                }
                count
            }
            RawNodes::List(list) => {
                for node in list {
                    if !self.dns_label("node name", &node.name) {
                        continue;
                    }
                    if let Some(first) = name_spans.get(node.name.get_ref()) {
                        let d = self.error(
                            span_of(&node.name),
                            format!("duplicate node name `{}` in {dc}", node.name.get_ref()),
                        );
                        d.related = Some((first.clone(), "first declared here".to_owned()));
                        Self::help(d, "node names must be unique within a datacenter");
                        continue;
                    }
                    name_spans.insert(node.name.get_ref().clone(), node.name.span());
                    match node.address.get_ref().parse::<IpAddr>() {
                        Ok(address) => nodes.push(blank(
                            node.name.get_ref().clone(),
                            address,
                            node.name.span(),
                        )),
                        Err(_) => {
                            let d = self.error(
                                span_of(&node.address),
                                format!("`{}` is not an IP address", node.address.get_ref()),
                            );
                            Self::help(d, "write an IPv4 or IPv6 address, such as \"10.0.1.10\"; host names are not resolved");
                        }
                    }
                }
                list.len()
            }
        }
    }

    fn services(&mut self, dc: &str, raw: &[Spanned<RawService>], nodes: &[Node]) -> Vec<Service> {
        let mut services = Vec::new();
        let mut ids: HashMap<(String, String), Range<usize>> = HashMap::new();
        for raw_service in raw {
            let service = raw_service.get_ref();
            let name = service.name.get_ref();
            let node_name = service.node.get_ref();
            let Some(node) = nodes.iter().find(|n| n.name == *node_name) else {
                let names: Vec<&str> = nodes
                    .iter()
                    .filter(|n| n.role != Role::Gateway)
                    .map(|n| n.name.as_str())
                    .collect();
                let d = self.error(
                    span_of(&service.node),
                    format!("service `{name}` is placed on unknown node `{node_name}` in {dc}"),
                );
                Self::help(
                    d,
                    match nearest(node_name, &names) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!("agents of {dc}: {}", names.join(", ")),
                    },
                );
                continue;
            };
            if node.role == Role::Gateway {
                let d = self.error(
                    span_of(&service.node),
                    format!("service `{name}` is placed on gateway `{node_name}`"),
                );
                Self::help(d, "services run on servers or client agents; gateways only route between datacenters");
                continue;
            }
            if name.is_empty() {
                self.error(span_of(&service.name), "a service with an empty name");
                continue;
            }
            if validate_dns_label(name).is_err() {
                let d = self.warning(
                    span_of(&service.name),
                    format!("service name `{name}` is not a DNS label, so DNS cannot find it"),
                );
                Self::help(d, "use lowercase letters, digits and '-' to make it reachable as NAME.service.consul");
            }
            let id = service
                .id
                .as_ref()
                .map_or_else(|| name.clone(), |id| id.get_ref().clone());
            let id_span = service
                .id
                .as_ref()
                .map_or_else(|| service.name.span(), Spanned::span);
            if let Some(first) = ids.get(&(node_name.clone(), id.clone())) {
                let d = self.error(
                    Some(id_span),
                    format!("duplicate service ID `{id}` on node `{node_name}`"),
                );
                d.related = Some((first.clone(), "first used here".to_owned()));
                Self::help(d, "give each instance on a node its own `id`");
                continue;
            }
            ids.insert((node_name.clone(), id.clone()), id_span);
            let script_checks_enabled =
                node.extra.get("enable_script_checks") == Some(&serde_json::Value::Bool(true));
            for check in service.check.iter().chain(service.checks.iter()) {
                self.check_definition(check, node_name, script_checks_enabled);
            }
            services.push(Service {
                node: node_name.clone(),
                definition: wire::agent_config::ServiceDefinition {
                    id: service.id.as_ref().map(|id| id.get_ref().clone()),
                    name: name.clone(),
                    tags: service.tags.clone(),
                    address: service.address.clone(),
                    port: service.port,
                    meta: service.meta.clone(),
                    check: service.check.as_ref().map(|c| c.get_ref().clone()),
                    checks: service.checks.iter().map(|c| c.get_ref().clone()).collect(),
                },
            });
        }
        services
    }

    fn check_definition(
        &mut self,
        check: &Spanned<CheckDefinition>,
        node: &str,
        script_checks_enabled: bool,
    ) {
        let c = check.get_ref();
        let kinds: Vec<&str> = [
            (c.http.is_some(), "http"),
            (c.tcp.is_some(), "tcp"),
            (!c.args.is_empty(), "args"),
            (c.ttl.is_some(), "ttl"),
        ]
        .into_iter()
        .filter_map(|(present, kind)| present.then_some(kind))
        .collect();
        match kinds.as_slice() {
            [] => {
                let d = self.error(span_of(check), "a check without a kind");
                Self::help(d, "set one of `http = \"http://...\"`, `tcp = \"host:port\"`, `args = [\"cmd\"]` or `ttl = \"30s\"`");
            }
            [kind] => {
                if *kind != "ttl" && c.interval.is_none() {
                    let d = self.error(
                        span_of(check),
                        format!("a {kind} check without an `interval`"),
                    );
                    Self::help(d, "add `interval = \"10s\"`");
                }
                if *kind == "ttl" && c.interval.is_some() {
                    let d = self.error(span_of(check), "a ttl check with an `interval`");
                    Self::help(
                        d,
                        "a ttl check is updated through /v1/agent/check/pass; remove `interval`",
                    );
                }
                if *kind == "args" && !script_checks_enabled {
                    let d = self.error(
                        span_of(check),
                        format!("a script check on `{node}`, where script checks are disabled"),
                    );
                    Self::help(d, format!("enable them for that node: [datacenters.overrides.{node}] extra = {{ enable_script_checks = true }}"));
                }
            }
            many => {
                let d = self.error(
                    span_of(check),
                    format!("a check with several kinds: {}", many.join(", ")),
                );
                Self::help(
                    d,
                    "a check has exactly one kind; split it into `checks = [...]`",
                );
            }
        }
    }

    /// Two listeners on the same address, port and protocol cannot both bind. Reported once
    /// per pair of nodes, at the later one, listing every port they share.
    fn duplicate_listeners(&mut self, datacenters: &[Datacenter], https: bool) {
        let mut owners: HashMap<(IpAddr, Proto, u16), (&Datacenter, &Node)> = HashMap::new();
        for dc in datacenters {
            for node in &dc.nodes {
                let mut clashes: Vec<((&Datacenter, &Node), String)> = Vec::new();
                for (proto, port, what) in node.listeners(https) {
                    let proto_name = match proto {
                        Proto::Tcp => "tcp",
                        Proto::Udp => "udp",
                    };
                    match owners.get(&(node.address, proto, port)) {
                        Some(owner) => {
                            clashes.push((*owner, format!("{what} {port}/{proto_name}")))
                        }
                        None => {
                            owners.insert((node.address, proto, port), (dc, node));
                        }
                    }
                }
                let mut reported: Vec<(&str, &str)> = Vec::new();
                for ((other_dc, other), _) in &clashes {
                    if reported.contains(&(other_dc.name.as_str(), other.name.as_str())) {
                        continue;
                    }
                    reported.push((&other_dc.name, &other.name));
                    let ports: Vec<&str> = clashes
                        .iter()
                        .filter(|((d, n), _)| d.name == other_dc.name && n.name == other.name)
                        .map(|(_, port)| port.as_str())
                        .collect();
                    let d = self.error(
                        Some(node.declared_at.clone()),
                        format!(
                            "{}/{} and {}/{} both listen on {}: {}",
                            dc.name,
                            node.name,
                            other_dc.name,
                            other.name,
                            node.address,
                            ports.join(", ")
                        ),
                    );
                    d.related = Some((
                        other.declared_at.clone(),
                        format!("{}/{} is declared here", other_dc.name, other.name),
                    ));
                    Self::help(d, format!(
                        "give one of them another address, or other ports with [datacenters.overrides.{}] ports = {{ http = 8501, ... }}",
                        node.name
                    ));
                }
            }
        }
    }
}

struct NodeDefaults<'a> {
    log_level: &'a str,
    ports: Option<RawPorts>,
    extra: &'a serde_json::Map<String, serde_json::Value>,
}
