//! `catalog services | nodes | datacenters`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use wire::api::CatalogNode;

use super::{check, client, fail};

/// Prints rows as aligned columns (two spaces apart), as Consul's tables.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `catalog services [-tags]`.
pub fn services(addr: &str, with_tags: bool, datacenter: Option<&str>) -> ExitCode {
    let path = super::in_datacenter("/v1/catalog/services", datacenter);
    let response = match check(client(addr).get(&path), addr) {
        Ok(response) => response,
        Err(e) => return fail(e),
    };
    let services: BTreeMap<String, Vec<String>> = match response.json() {
        Ok(services) => services,
        Err(e) => return fail(e),
    };
    if with_tags {
        let rows: Vec<Vec<String>> = services
            .iter()
            .map(|(name, tags)| vec![name.clone(), tags.join(",")])
            .collect();
        print!("{}", table(&rows));
    } else {
        services.keys().for_each(|name| println!("{name}"));
    }
    ExitCode::SUCCESS
}

/// What `catalog nodes` lists and how.
#[derive(Debug, Clone, Default)]
pub struct NodesOptions {
    /// `-service=NAME`: only nodes with an instance of it.
    pub service: Option<String>,
    /// `-detailed`: tagged addresses and metadata too.
    pub detailed: bool,
    /// `-near=NODE`: sorted by estimated round trip from NODE.
    pub near: Option<String>,
    /// `-datacenter`.
    pub datacenter: Option<String>,
    /// `-node-meta=key:value`, repeatable.
    pub node_meta: Vec<String>,
    /// `-filter`.
    pub filter: Option<String>,
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", crate::client::encode_key(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn map_text(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `catalog nodes [-service=NAME] [-detailed] [-near=NODE]`.
pub fn nodes(addr: &str, options: &NodesOptions) -> ExitCode {
    let mut pairs: Vec<(&str, Option<&str>)> = vec![
        ("dc", options.datacenter.as_deref()),
        ("near", options.near.as_deref()),
        ("filter", options.filter.as_deref()),
    ];
    pairs.extend(
        options
            .node_meta
            .iter()
            .map(|m| ("node-meta", Some(m.as_str()))),
    );
    let q = query(&pairs);
    let nodes: Vec<CatalogNode> = match &options.service {
        Some(service) => {
            let path = format!(
                "/v1/catalog/service/{}{q}",
                crate::client::encode_key(service)
            );
            let response = match check(client(addr).get(&path), addr) {
                Ok(response) => response,
                Err(e) => return fail(format!("Error listing nodes: {e}")),
            };
            let instances: Vec<serde_json::Value> = match response.json() {
                Ok(instances) => instances,
                Err(e) => return fail(e),
            };
            let mut nodes: Vec<CatalogNode> = Vec::new();
            for instance in instances {
                let Ok(node) = serde_json::from_value::<CatalogNode>(serde_json::json!({
                    "ID": instance["ID"], "Node": instance["Node"], "Address": instance["Address"],
                    "Datacenter": instance["Datacenter"], "TaggedAddresses": instance["TaggedAddresses"],
                    "Meta": instance["NodeMeta"], "CreateIndex": 0, "ModifyIndex": 0,
                })) else {
                    continue;
                };
                if !nodes.iter().any(|n| n.node == node.node) {
                    nodes.push(node);
                }
            }
            nodes
        }
        None => {
            let path = format!("/v1/catalog/nodes{q}");
            let response = match check(client(addr).get(&path), addr) {
                Ok(response) => response,
                Err(e) => return fail(format!("Error listing nodes: {e}")),
            };
            match response.json() {
                Ok(nodes) => nodes,
                Err(e) => return fail(e),
            }
        }
    };
    if nodes.is_empty() {
        eprintln!("No nodes match the given query - try expanding your search.");
        return ExitCode::SUCCESS;
    }
    let mut header = vec!["Node", "ID", "Address", "DC"];
    if options.detailed {
        header.extend(["TaggedAddresses", "Meta"]);
    }
    let mut rows = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    for n in &nodes {
        let id = if options.detailed {
            n.id.clone()
        } else {
            n.id.chars().take(8).collect()
        };
        let mut row = vec![n.node.clone(), id, n.address.clone(), n.datacenter.clone()];
        if options.detailed {
            row.push(map_text(&n.tagged_addresses));
            row.push(map_text(&n.meta));
        }
        rows.push(row);
    }
    print!("{}", table(&rows));
    ExitCode::SUCCESS
}

/// `catalog services -node=NODE [-tags]`: the services of one node.
pub fn node_services(
    addr: &str,
    node: &str,
    with_tags: bool,
    datacenter: Option<&str>,
) -> ExitCode {
    let path = format!(
        "/v1/catalog/node/{}{}",
        crate::client::encode_key(node),
        query(&[("dc", datacenter)])
    );
    let response = match check(client(addr).get(&path), addr) {
        Ok(response) => response,
        Err(e) => return fail(format!("Error listing services for node: {e}")),
    };
    let answer: serde_json::Value = match response.json() {
        Ok(answer) => answer,
        Err(e) => return fail(e),
    };
    let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(all) = answer["Services"].as_object() {
        for service in all.values() {
            let name = service["Service"].as_str().unwrap_or_default().to_owned();
            let tags = service["Tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            services.insert(name, tags);
        }
    }
    if services.is_empty() {
        eprintln!("No services match the given query - try expanding your search.");
        return ExitCode::SUCCESS;
    }
    if with_tags {
        let rows: Vec<Vec<String>> = services
            .iter()
            .map(|(name, tags)| vec![name.clone(), tags.join(",")])
            .collect();
        print!("{}", table(&rows));
    } else {
        services.keys().for_each(|name| println!("{name}"));
    }
    ExitCode::SUCCESS
}

/// `catalog datacenters`.
pub fn datacenters(addr: &str) -> ExitCode {
    let response = match check(client(addr).get("/v1/catalog/datacenters"), addr) {
        Ok(response) => response,
        Err(e) => return fail(e),
    };
    match response.json::<Vec<String>>() {
        Ok(dcs) => {
            dcs.iter().for_each(|dc| println!("{dc}"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `rtt -wan [DC]`: the round trip from the agent's datacenter to `dc` (or to every other
/// one), as measured on the gateways' WAN links.
pub fn rtt(addr: &str, dc: Option<&str>) -> ExitCode {
    let response = match check(client(addr).get("/v1/isthmus/datacenters"), addr) {
        Ok(response) => response,
        Err(e) => return fail(e),
    };
    let rows: Vec<serde_json::Value> = match response.json() {
        Ok(rows) => rows,
        Err(e) => return fail(format!("Error decoding the datacenters: {e}")),
    };
    let Some(local) = rows
        .first()
        .and_then(|r| r["Datacenter"].as_str())
        .map(str::to_owned)
    else {
        return fail("Error: the agent listed no datacenter");
    };
    let mut printed = 0;
    for row in rows.iter().skip(1) {
        let name = row["Datacenter"].as_str().unwrap_or_default();
        if dc.is_some_and(|dc| dc != name) {
            continue;
        }
        printed += 1;
        match row["RTTMicros"].as_u64() {
            Some(micros) => println!(
                "Estimated {local} <-> {name} rtt: {:.3} ms (measured on the gateways' WAN links)",
                micros as f64 / 1000.0
            ),
            None => println!("{local} <-> {name}: no WAN link up, no measurement"),
        }
    }
    if printed == 0 {
        return fail(match dc {
            Some(dc) => format!("Error: no datacenter {dc:?} known to the gateways"),
            None => "Error: no other datacenter known to the gateways".to_owned(),
        });
    }
    ExitCode::SUCCESS
}

/// Prints the round trip between two nodes estimated from their network coordinates, as
/// `consul rtt` does; with one node, the other is the agent asked.
pub fn rtt_nodes(addr: &str, wan: bool, nodes: &[String]) -> ExitCode {
    let coordinates = match node_coordinates(addr, wan) {
        Ok(coordinates) => coordinates,
        Err(e) => return fail(e),
    };
    let (first, second) = match nodes {
        // As `consul rtt`: the node given first, the agent asked second.
        [one] => match own_name(addr, wan) {
            Ok(own) => (one.clone(), own),
            Err(e) => return fail(e),
        },
        [one, two, ..] => (one.clone(), two.clone()),
        [] => return fail("Error: a node name is required"),
    };
    let find = |name: &str| {
        coordinates
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| format!("Error: no coordinate known for node {name:?}"))
    };
    let (a, b) = match (find(&first), find(&second)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    println!(
        "Estimated {first} <-> {second} rtt: {:.3} ms (using {} coordinates)",
        a.distance_to(&b) * 1000.0,
        if wan { "WAN" } else { "LAN" }
    );
    ExitCode::SUCCESS
}

type Coordinate = crate::gossip::coordinate::Coordinate;

/// Every node's coordinate: LAN names, or `node.dc` names on the WAN.
fn node_coordinates(addr: &str, wan: bool) -> Result<Vec<(String, Coordinate)>, String> {
    let path = if wan {
        "/v1/coordinate/datacenters"
    } else {
        "/v1/coordinate/nodes"
    };
    let response = check(client(addr).get(path), addr)?;
    let rows: Vec<serde_json::Value> = response
        .json()
        .map_err(|e| format!("Error decoding the coordinates: {e}"))?;
    let parse = |entry: &serde_json::Value| -> Option<Coordinate> {
        serde_json::from_value(entry["Coord"].clone()).ok()
    };
    let mut all = Vec::new();
    for row in &rows {
        if wan {
            let dc = row["Datacenter"].as_str().unwrap_or_default();
            for entry in row["Coordinates"].as_array().into_iter().flatten() {
                if let (Some(node), Some(coordinate)) = (entry["Node"].as_str(), parse(entry)) {
                    all.push((format!("{node}.{dc}"), coordinate));
                }
            }
        } else if let (Some(node), Some(coordinate)) = (row["Node"].as_str(), parse(row)) {
            all.push((node.to_owned(), coordinate));
        }
    }
    Ok(all)
}

/// The agent's own node name (`node.dc` on the WAN).
fn own_name(addr: &str, wan: bool) -> Result<String, String> {
    let response = check(client(addr).get("/v1/agent/self"), addr)?;
    let own: serde_json::Value = response
        .json()
        .map_err(|e| format!("Error decoding the agent's configuration: {e}"))?;
    let node = own["Config"]["NodeName"].as_str().unwrap_or_default();
    let dc = own["Config"]["Datacenter"].as_str().unwrap_or_default();
    Ok(if wan {
        format!("{node}.{dc}")
    } else {
        node.to_owned()
    })
}
