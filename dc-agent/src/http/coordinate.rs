//! `/v1/coordinate/*`: the agents' network coordinates, LAN and WAN.

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};

use super::acl::{mark_filtered, may_read, Token};
use super::catalog::read;
use super::kv::json;
use super::{Api, ApiError, Consistency};

/// `GET /v1/coordinate/datacenters`: the WAN coordinates of every datacenter's servers, as
/// this server's WAN pool knows them (Consul's shape; `rtt -wan NODE.DC` reads it).
pub async fn coordinate_datacenters(State(api): State<Api>) -> Result<Response, ApiError> {
    let coordinates = match (&api.wan, &api.backend) {
        (Some(wan), _) => wan.coordinates(),
        (None, super::Backend::Server(_)) => {
            return Err(ApiError::Internal(
                "this server is in no WAN pool: it has no gateway (isthmus.gateways)".to_owned(),
            ))
        }
        (None, super::Backend::Client(_)) => Vec::new(),
    };
    let mut by_dc: std::collections::BTreeMap<String, Vec<serde_json::Value>> =
        std::collections::BTreeMap::new();
    for c in coordinates {
        by_dc.entry(c.dc).or_default().push(serde_json::json!({
            "Node": c.node,
            "Coord": c.coordinate,
        }));
    }
    let rows: Vec<serde_json::Value> = by_dc
        .into_iter()
        .map(|(dc, coordinates)| {
            serde_json::json!({"Datacenter": dc, "AreaID": "wan", "Coordinates": coordinates})
        })
        .collect();
    Ok(json(&api, 1, Consistency::Stale, &rows))
}

fn node_coordinate_json(
    node: &str,
    c: &crate::gossip::coordinate::Coordinate,
) -> serde_json::Value {
    serde_json::json!({
        "Node": node,
        "Segment": "",
        "Partition": "default",
        "Coord": c,
    })
}

/// `GET /v1/coordinate/nodes`: the LAN coordinates of this datacenter's nodes, as their
/// agents last sent them (a blocking query on the coordinates' index).
pub async fn coordinate_nodes(
    State(api): State<Api>,
    uri: Uri,
    token: Token,
) -> Result<Response, ApiError> {
    let (index, (hidden, rows), consistency) = read(&api, &uri, |data| {
        let coordinates = &data.state.coordinates;
        let readable: Vec<_> = coordinates
            .by_node
            .iter()
            .filter(|(node, _)| may_read(&token, acl::Resource::Node, node))
            .map(|(node, c)| node_coordinate_json(node, c))
            .collect();
        (
            coordinates.index,
            (readable.len() != coordinates.by_node.len(), readable),
        )
    })
    .await?;
    Ok(mark_filtered(json(&api, index, consistency, &rows), hidden))
}

/// `GET /v1/coordinate/node/<node>`: one node's LAN coordinate (404 when unknown).
pub async fn coordinate_node(
    State(api): State<Api>,
    axum::extract::Path(node): axum::extract::Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (index, rows, consistency) = read(&api, &uri, |data| {
        let coordinates = &data.state.coordinates;
        (
            coordinates.index,
            coordinates
                .by_node
                .get(&node)
                .map(|c| vec![node_coordinate_json(&node, c)])
                .unwrap_or_default(),
        )
    })
    .await?;
    if rows.is_empty() {
        // Consul's 404 carries the index, so a client can block until one arrives.
        return Ok(super::kv::not_found(&api, index, consistency));
    }
    Ok(json(&api, index, consistency, &rows))
}

/// Longest node name a coordinate update may carry.
const MAX_NODE_NAME: usize = 256;

/// The body of `PUT /v1/coordinate/update`, as Consul's.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CoordinateUpdate {
    node: String,
    coord: crate::gossip::coordinate::Coordinate,
}

/// `PUT /v1/coordinate/update`: an agent's LAN coordinate, written with the next batch
/// (on the leader; followers forward it there).
pub async fn coordinate_update(
    State(api): State<Api>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let update: CoordinateUpdate = wire::gojson::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    if update.node.is_empty() {
        return Err(ApiError::BadRequest("Missing node name".to_owned()));
    }
    if update.node.len() > MAX_NODE_NAME {
        return Err(ApiError::BadRequest(format!(
            "Node name is {} bytes; at most {MAX_NODE_NAME} are allowed",
            update.node.len()
        )));
    }
    if !update.coord.is_valid() {
        return Err(ApiError::BadRequest(format!(
            "Coordinate for node {:?} is invalid: {} finite dimensions are expected",
            update.node,
            wire::records::COORDINATE_DIMENSIONS
        )));
    }
    // Only the catalog's nodes have coordinates (Consul's agents hold node:write for their
    // own node; without ACLs, this is what keeps arbitrary names out of the queue).
    let known = api
        .server()?
        .state
        .read(|data| data.state.catalog.node(&update.node).is_some())
        .unwrap_or(false);
    if !known {
        return Err(ApiError::BadRequest(format!(
            "Node {:?} is not in the catalog",
            update.node
        )));
    }
    let Some(queue) = &api.coordinates else {
        return Err(ApiError::Internal(
            "this agent takes no coordinate updates".to_owned(),
        ));
    };
    if !queue.push(update.node, update.coord) {
        return Err(ApiError::Internal(
            "too many coordinate updates waiting; try again later".to_owned(),
        ));
    }
    Ok(([("content-type", "application/json")], "true").into_response())
}
