//! The readable summary `topology check` prints.

use std::fmt::Write as _;

use wire::Role;

use crate::model::{CaSource, Datacenter, GossipKeySource, Node, Topology};

/// Renders the federation: datacenters, nodes, addresses, ports and services.
pub fn summary(file_name: &str, topology: &Topology) -> String {
    let mut out = String::new();
    let all_nodes = || topology.datacenters.iter().flat_map(|dc| dc.nodes.iter());
    let n_agents = all_nodes().filter(|n| n.role != Role::Gateway).count();
    let n_gateways = all_nodes().filter(|n| n.role == Role::Gateway).count();
    let _ = writeln!(
        out,
        "{file_name}: {} datacenter(s), {n_agents} agent(s), {n_gateways} gateway(s); domain `{}`, primary datacenter {}",
        topology.datacenters.len(),
        topology.domain,
        topology.primary_datacenter
    );
    let _ = writeln!(out, "state directory: {}", topology.state_dir.display());
    let gossip = match &topology.gossip_key {
        GossipKeySource::Generate => "generated at the first render, then kept".to_owned(),
        GossipKeySource::Inline(_) => "given in the file".to_owned(),
        GossipKeySource::File(path) => format!("read from {}", path.display()),
    };
    let ca = match &topology.ca {
        CaSource::Generate => "generated at the first render, then kept".to_owned(),
        CaSource::Dir(path) => format!("from {}", path.display()),
    };
    let _ = writeln!(out, "gossip key: {gossip}");
    let _ = writeln!(
        out,
        "CA: {ca}; node certificates valid {} days",
        topology.cert_days
    );
    if let Some(acl) = &topology.acl {
        let _ = writeln!(
            out,
            "ACLs: on, default policy {}; `up` bootstraps in {} and gives every agent its token (management token in acl/management.token)",
            acl.default_policy, topology.primary_datacenter
        );
    }
    for dc in &topology.datacenters {
        let primary = if dc.name == topology.primary_datacenter {
            " (primary)"
        } else {
            ""
        };
        let _ = writeln!(out, "\n{}{primary}", dc.name);
        let rows: Vec<[String; 4]> = dc
            .nodes
            .iter()
            .map(|node| {
                [
                    node.name.clone(),
                    node.role.to_string(),
                    node.address.to_string(),
                    ports_text(node),
                ]
            })
            .collect();
        let header = [
            "NODE".to_owned(),
            "ROLE".to_owned(),
            "ADDRESS".to_owned(),
            "PORTS".to_owned(),
        ];
        let widths: Vec<usize> = (0..3)
            .map(|i| {
                rows.iter()
                    .chain([&header])
                    .map(|row| row[i].len())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in [&header].into_iter().chain(rows.iter()) {
            let _ = writeln!(
                out,
                "  {:w0$}  {:w1$}  {:w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
        }
        write_services(&mut out, dc);
    }
    out
}

/// The services of one datacenter, with their checks, a line each.
fn write_services(out: &mut String, dc: &Datacenter) {
    if dc.services.is_empty() {
        return;
    }
    let _ = writeln!(out, "  services:");
    for service in &dc.services {
        let def = &service.definition;
        let mut line = format!("    {}", def.name);
        if let Some(id) = &def.id {
            let _ = write!(line, " (id {id})");
        }
        let _ = write!(line, " on {}", service.node);
        if let Some(port) = def.port {
            let _ = write!(line, ", port {port}");
        }
        if !def.tags.is_empty() {
            let _ = write!(line, ", tags {}", def.tags.join(","));
        }
        for check in def.check.iter().chain(def.checks.iter()) {
            let kind = if let Some(url) = &check.http {
                format!("http {url}")
            } else if let Some(target) = &check.tcp {
                format!("tcp {target}")
            } else if !check.args.is_empty() {
                format!("script {}", check.args.join(" "))
            } else if let Some(ttl) = &check.ttl {
                format!("ttl {ttl}")
            } else {
                "check".to_owned()
            };
            let every = check
                .interval
                .map(|i| format!(" every {i}"))
                .unwrap_or_default();
            let _ = write!(line, "; check {kind}{every}");
        }
        let _ = writeln!(out, "{line}");
    }
}

fn ports_text(node: &Node) -> String {
    let p = node.ports;
    match node.role {
        Role::Server => format!(
            "server {}/udp, serf_lan {}/udp, http {}/tcp, dns {}/udp+tcp",
            p.server, p.serf_lan, p.http, p.dns
        ),
        Role::Client => format!(
            "serf_lan {}/udp, http {}/tcp, dns {}/udp+tcp",
            p.serf_lan, p.http, p.dns
        ),
        Role::Gateway => format!("quic {}/udp, metrics {}/tcp", p.gateway, p.metrics),
    }
}
