//! Typed calls to the agent's own API router, for what the agent does by itself
//! (anti-entropy, the leader's membership reconcile): the bodies are `wire::api` types, not
//! JSON built by hand, and the paths live here only. The calls go through the same router as
//! users' requests (so they are forwarded to the leader, or from a client agent to a server,
//! exactly as those are).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use wire::api::{
    CatalogNode, DeregisterRequest, HealthCheck, NodeServices, RegisterRequest, ServiceEntry,
};
use wire::percent::segment;

use crate::rpc::messages::{HttpHandler, HttpRequest, HttpResponse};

/// How a read is asked, as Consul's query parameters say it.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// `?dc=`: another datacenter's answer (through the gateways).
    pub dc: Option<String>,
    /// `?stale`: any server may answer.
    pub stale: bool,
    /// `?index=`: a blocking query, answered once the result's index passes this one.
    pub index: u64,
    /// `?wait=`: how long a blocking query may wait (with `index` only).
    pub wait: Duration,
    /// `?filter=`: a filter expression.
    pub filter: Option<String>,
}

impl ReadOptions {
    /// The query string (without `?`), its values percent-encoded.
    fn query(&self) -> String {
        let mut query = Vec::new();
        if let Some(dc) = &self.dc {
            query.push(format!("dc={}", segment(dc)));
        }
        if self.stale {
            query.push("stale".to_owned());
        }
        if self.index > 0 {
            query.push(format!("index={}", self.index));
            query.push(format!("wait={}ms", self.wait.as_millis()));
        }
        if let Some(filter) = &self.filter {
            query.push(format!("filter={}", segment(filter)));
        }
        query.join("&")
    }
}

/// A read's answer with the query meta that came with it.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    /// `X-Consul-Index`.
    pub index: u64,
    /// `X-Consul-LastContact`: how long since the answering server heard from its leader.
    pub last_contact: Duration,
    /// The body, decoded.
    pub value: T,
}

/// The body of `PUT /v1/coordinate/update`, as Consul's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CoordinateUpdate<'a> {
    node: &'a str,
    segment: &'a str,
    coord: &'a wire::records::Coordinate,
}

/// A numeric response header.
fn header(response: &HttpResponse, name: &str) -> Option<u64> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The local API, typed.
#[derive(Clone)]
pub struct LocalApi {
    handler: HttpHandler,
}

impl LocalApi {
    /// Calls through `handler` (the API router).
    pub fn new(handler: HttpHandler) -> LocalApi {
        LocalApi { handler }
    }

    async fn put<B: Serialize>(&self, uri: &str, body: &B) -> Result<(), String> {
        let body = serde_json::to_vec(body).map_err(|e| format!("{uri}: {e}"))?;
        let response = (self.handler)(HttpRequest {
            method: "PUT".to_owned(),
            uri: uri.to_owned(),
            headers: vec![("content-type".to_owned(), b"application/json".to_vec())],
            body,
        })
        .await;
        if response.status == 200 {
            Ok(())
        } else {
            Err(format!(
                "{uri} answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body).trim()
            ))
        }
    }

    async fn get<T: DeserializeOwned>(&self, uri: String) -> Result<T, String> {
        let response = crate::rpc::messages::get(&self.handler, uri.clone()).await?;
        serde_json::from_slice(&response.body).map_err(|e| format!("{uri}: {e}"))
    }

    /// `PUT /v1/catalog/register`.
    pub async fn catalog_register(&self, request: &RegisterRequest) -> Result<(), String> {
        self.put("/v1/catalog/register", request).await
    }

    /// `PUT /v1/catalog/deregister`.
    pub async fn catalog_deregister(&self, request: &DeregisterRequest) -> Result<(), String> {
        self.put("/v1/catalog/deregister", request).await
    }

    /// `GET /v1/catalog/node/NODE`: the node and its services, if the catalog has it.
    pub async fn catalog_node(&self, node: &str) -> Result<Option<NodeServices>, String> {
        self.get(format!("/v1/catalog/node/{}", wire::percent::segment(node)))
            .await
    }

    /// `GET /v1/health/node/NODE`: the node's checks.
    pub async fn health_node(&self, node: &str) -> Result<Vec<HealthCheck>, String> {
        self.get(format!("/v1/health/node/{}", wire::percent::segment(node)))
            .await
    }

    /// `GET /v1/isthmus/acl/replicate?dc=PRIMARY`: the primary's ACL tables once its ACL
    /// index passes `index` (a blocking query of at most `wait`), presented with `token`.
    pub async fn acl_replica(
        &self,
        primary: &str,
        index: u64,
        wait: std::time::Duration,
        token: Option<&str>,
        with_tokens: bool,
    ) -> Result<crate::server::acl_replication::ReplicaAnswer, String> {
        let mut uri = format!(
            "/v1/isthmus/acl/replicate?dc={}&index={index}&wait={}s&stale",
            wire::percent::segment(primary),
            wait.as_secs()
        );
        if with_tokens {
            uri.push_str("&tokens=true");
        }
        let headers = token
            .map(|t| vec![("x-consul-token".to_owned(), t.as_bytes().to_vec())])
            .unwrap_or_default();
        let response = (self.handler)(HttpRequest {
            method: "GET".to_owned(),
            uri: uri.clone(),
            headers,
            body: Vec::new(),
        })
        .await;
        if response.status != 200 {
            return Err(format!(
                "the primary ({primary}) answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body).trim()
            ));
        }
        serde_json::from_slice(&response.body).map_err(|e| format!("{uri}: {e}"))
    }

    /// `PUT /v1/coordinate/update`: this node's LAN coordinate.
    pub async fn coordinate_update(
        &self,
        node: &str,
        coordinate: &wire::records::Coordinate,
    ) -> Result<(), String> {
        let update = CoordinateUpdate {
            node,
            segment: "",
            coord: coordinate,
        };
        self.put("/v1/coordinate/update", &update).await
    }

    /// A GET of `path` with `options`, decoded with its query meta.
    async fn read<T: DeserializeOwned>(
        &self,
        path: &str,
        options: &ReadOptions,
    ) -> Result<Answer<T>, String> {
        let query = options.query();
        let uri = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        let response = crate::rpc::messages::get(&self.handler, uri.clone()).await?;
        let value = serde_json::from_slice(&response.body).map_err(|e| format!("{uri}: {e}"))?;
        Ok(Answer {
            index: header(&response, "x-consul-index").unwrap_or(0),
            last_contact: Duration::from_millis(
                header(&response, "x-consul-lastcontact").unwrap_or(0),
            ),
            value,
        })
    }

    /// `GET /v1/health/service/NAME`: every instance with its node and checks.
    pub async fn health_service_read(
        &self,
        name: &str,
        options: &ReadOptions,
    ) -> Result<Answer<Vec<ServiceEntry>>, String> {
        self.read(&format!("/v1/health/service/{}", segment(name)), options)
            .await
    }

    /// `GET /v1/catalog/node/NODE`: the node and its services (`None`: no such node).
    pub async fn catalog_node_read(
        &self,
        node: &str,
        options: &ReadOptions,
    ) -> Result<Answer<Option<NodeServices>>, String> {
        self.read(&format!("/v1/catalog/node/{}", segment(node)), options)
            .await
    }

    /// `GET /v1/catalog/nodes`.
    pub async fn catalog_nodes(
        &self,
        options: &ReadOptions,
    ) -> Result<Answer<Vec<CatalogNode>>, String> {
        self.read("/v1/catalog/nodes", options).await
    }

    /// `GET /v1/catalog/services`: each service's name and tags.
    pub async fn catalog_services(
        &self,
        options: &ReadOptions,
    ) -> Result<Answer<BTreeMap<String, Vec<String>>>, String> {
        self.read("/v1/catalog/services", options).await
    }
}
