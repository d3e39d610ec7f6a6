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

/// `catalog nodes`.
pub fn nodes(addr: &str, datacenter: Option<&str>) -> ExitCode {
    let path = super::in_datacenter("/v1/catalog/nodes", datacenter);
    let response = match check(client(addr).get(&path), addr) {
        Ok(response) => response,
        Err(e) => return fail(e),
    };
    let nodes: Vec<CatalogNode> = match response.json() {
        Ok(nodes) => nodes,
        Err(e) => return fail(e),
    };
    let mut rows = vec![vec![
        "Node".to_owned(),
        "Address".to_owned(),
        "DC".to_owned(),
    ]];
    rows.extend(
        nodes
            .iter()
            .map(|n| vec![n.node.clone(), n.address.clone(), n.datacenter.clone()]),
    );
    print!("{}", table(&rows));
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
