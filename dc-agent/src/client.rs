//! A small HTTP client of the `/v1` API, for the CLI (and tests).

use std::time::Duration;

/// Where the CLI finds the agent: `-http-addr`, else `CONSUL_HTTP_ADDR`, else 127.0.0.1:8500.
pub fn default_http_addr() -> String {
    std::env::var("CONSUL_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8500".to_owned())
}

/// A response.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// Status code.
    pub status: u16,
    /// Headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("unexpected answer ({e}): {}", self.text()))
    }
}

/// Talks to one agent.
#[derive(Clone)]
pub struct ApiClient {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// Percent-encodes a KV key for a URL path (keeping `/`).
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

impl ApiClient {
    /// A client of the agent at `addr` (`host:port` or `http://host:port`).
    pub fn new(addr: &str, timeout: Duration) -> ApiClient {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build();
        ApiClient {
            agent: ureq::Agent::new_with_config(config),
            base: base.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// Sends `X-Consul-Token: token` with every request (`-token`, `CONSUL_HTTP_TOKEN`).
    pub fn with_token(mut self, token: Option<String>) -> ApiClient {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ApiResponse, String> {
        let mut response = result.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        Ok(ApiResponse {
            status,
            headers,
            body,
        })
    }

    fn token<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("X-Consul-Token", token),
            None => request,
        }
    }

    /// GET `path` (with its query).
    pub fn get(&self, path: &str) -> Result<ApiResponse, String> {
        Self::finish(self.token(self.agent.get(self.url(path))).call())
    }

    /// PUT `body` to `path`.
    pub fn put(&self, path: &str, body: &[u8]) -> Result<ApiResponse, String> {
        Self::finish(self.token(self.agent.put(self.url(path))).send(body))
    }

    /// DELETE `path`.
    pub fn delete(&self, path: &str) -> Result<ApiResponse, String> {
        Self::finish(self.token(self.agent.delete(self.url(path))).call())
    }

    /// POST `body` to `path`.
    pub fn post(&self, path: &str, body: &[u8]) -> Result<ApiResponse, String> {
        Self::finish(self.token(self.agent.post(self.url(path))).send(body))
    }

    /// DELETE `path` with a body (Consul's keyring removal carries the key in its body).
    pub fn delete_with_body(&self, path: &str, body: &[u8]) -> Result<ApiResponse, String> {
        Self::finish(
            self.token(self.agent.delete(self.url(path)))
                .force_send_body()
                .send(body),
        )
    }
}
