//! Typed calls to the agent's own API router, for what the agent does by itself
//! (anti-entropy, the leader's membership reconcile): the bodies are `wire::api` types, not
//! JSON built by hand, and the paths live here only. The calls go through the same router as
//! users' requests (so they are forwarded to the leader, or from a client agent to a server,
//! exactly as those are).

use serde::de::DeserializeOwned;
use serde::Serialize;
use wire::api::{DeregisterRequest, HealthCheck, NodeServices, RegisterRequest};

use crate::rpc::messages::{HttpHandler, HttpRequest};

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
}
