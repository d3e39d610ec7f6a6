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

/// How the CLI talks TLS to an agent's HTTPS port: Consul's `-ca-file`, `-ca-path`,
/// `-client-cert`, `-client-key`, `-tls-server-name`, and their `CONSUL_*` variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM file of the CA that signed the agent's certificate (`CONSUL_CACERT`).
    pub ca_file: Option<std::path::PathBuf>,
    /// A directory of such PEM files (`CONSUL_CAPATH`).
    pub ca_path: Option<std::path::PathBuf>,
    /// This client's certificate, for agents with `verify_incoming` (`CONSUL_CLIENT_CERT`).
    pub client_cert: Option<std::path::PathBuf>,
    /// Its key (`CONSUL_CLIENT_KEY`).
    pub client_key: Option<std::path::PathBuf>,
    /// The name to check the agent's certificate against instead of the address's host
    /// (`CONSUL_TLS_SERVER_NAME`).
    pub server_name: Option<String>,
    /// `CONSUL_HTTP_SSL=true`: an address without a scheme is `https://`.
    pub https: bool,
    /// `CONSUL_HTTP_SSL_VERIFY=false`: do not check the agent's certificate.
    pub insecure: bool,
}

impl ClientTls {
    /// The settings the `CONSUL_*` environment variables give.
    pub fn from_env() -> ClientTls {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let flag = |name: &str| var(name).and_then(|v| parse_go_bool(&v));
        ClientTls {
            ca_file: var("CONSUL_CACERT").map(Into::into),
            ca_path: var("CONSUL_CAPATH").map(Into::into),
            client_cert: var("CONSUL_CLIENT_CERT").map(Into::into),
            client_key: var("CONSUL_CLIENT_KEY").map(Into::into),
            server_name: var("CONSUL_TLS_SERVER_NAME"),
            https: flag("CONSUL_HTTP_SSL").unwrap_or(false),
            insecure: flag("CONSUL_HTTP_SSL_VERIFY") == Some(false),
        }
    }

    fn root_certs(&self) -> Result<Option<Vec<ureq::tls::Certificate<'static>>>, String> {
        let mut files = Vec::new();
        if let Some(file) = &self.ca_file {
            files.push(file.clone());
        }
        if let Some(dir) = &self.ca_path {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| format!("reading the CA directory {}: {e}", dir.display()))?;
            let mut found: Vec<_> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            files.extend(found);
        }
        if files.is_empty() {
            return Ok(None);
        }
        let mut certs = Vec::new();
        for file in files {
            let pem = std::fs::read(&file)
                .map_err(|e| format!("reading the CA file {}: {e}", file.display()))?;
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
                    certs.push(cert);
                }
            }
        }
        if certs.is_empty() {
            return Err("no PEM certificate in the CA file(s)".to_owned());
        }
        Ok(Some(certs))
    }

    fn client_cert(&self) -> Result<Option<ureq::tls::ClientCert>, String> {
        let (cert, key) = match (&self.client_cert, &self.client_key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => return Err("-client-cert and -client-key go together".to_owned()),
        };
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
        };
        let cert_pem = read(cert)?;
        let chain: Vec<_> = ureq::tls::parse_pem(&cert_pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if chain.is_empty() {
            return Err(format!("no PEM certificate in {}", cert.display()));
        }
        let key = ureq::tls::PrivateKey::from_pem(&read(key)?)
            .map_err(|e| format!("no private key in {}: {e}", key.display()))?;
        Ok(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)))
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Connects a URL whose host is the TLS server name to the agent's real address.
#[derive(Debug)]
struct PinnedResolver {
    host: String,
    addrs: Vec<std::net::SocketAddr>,
}

impl ureq::unversioned::resolver::Resolver for PinnedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        if uri.host() != Some(self.host.as_str()) {
            return ureq::unversioned::resolver::DefaultResolver::default()
                .resolve(uri, config, timeout);
        }
        // ureq keeps at most 16 addresses.
        let mut out = self.empty();
        for addr in self.addrs.iter().take(16) {
            out.push(*addr);
        }
        if self.addrs.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

/// Percent-encodes a KV key for a URL path (keeping `/`).
pub fn encode_key(key: &str) -> String {
    wire::percent::key_path(key)
}

impl ApiClient {
    /// A client of the agent at `addr` (`host:port` or `http://host:port`).
    pub fn new(addr: &str, timeout: Duration) -> ApiClient {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        ApiClient {
            agent: ureq::Agent::new_with_config(Self::config(Some(timeout), None)),
            base: base.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// A client of the agent at `addr` with `tls`: `https://` when the address says so or
    /// `CONSUL_HTTP_SSL` does.
    /// Without a timeout (`None`), requests wait as long as the agent answers (a stream).
    pub fn with_tls(
        addr: &str,
        timeout: impl Into<Option<Duration>>,
        tls: &ClientTls,
    ) -> Result<ApiClient, String> {
        let timeout = timeout.into();
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_owned()
        } else if tls.https {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        };
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") {
            return Ok(ApiClient {
                agent: ureq::Agent::new_with_config(Self::config(timeout, None)),
                base,
                token: None,
            });
        }
        let mut builder = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .disable_verification(tls.insecure)
            .client_cert(tls.client_cert()?);
        if let Some(roots) = tls.root_certs()? {
            builder = builder.root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
        }
        let config = Self::config(timeout, Some(builder.build()));
        let Some(name) = tls.server_name.as_deref().filter(|n| !n.is_empty()) else {
            return Ok(ApiClient {
                agent: ureq::Agent::new_with_config(config),
                base,
                token: None,
            });
        };
        // Check the certificate against `name`: the URL names it, and the resolver sends
        // the connection to the address given.
        let uri: ureq::http::Uri = base
            .parse()
            .map_err(|e| format!("bad agent address {base:?}: {e}"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("bad agent address {base:?}"))?;
        let port = authority.port_u16().unwrap_or(443);
        let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(
            authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']'),
            port,
        ))
        .map_err(|e| format!("resolving {}: {e}", authority.host()))?
        .collect();
        let resolver = PinnedResolver {
            host: name.to_owned(),
            addrs,
        };
        Ok(ApiClient {
            agent: ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::new(),
                resolver,
            ),
            base: format!("https://{name}:{port}{}", uri.path().trim_end_matches('/')),
            token: None,
        })
    }

    fn config(
        timeout: Option<Duration>,
        tls: Option<ureq::tls::TlsConfig>,
    ) -> ureq::config::Config {
        let builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(timeout);
        match tls {
            Some(tls) => builder.tls_config(tls).build(),
            None => builder.build(),
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

    /// GET `path` and hand back the status and the body as it arrives (`monitor`).
    pub fn stream(&self, path: &str) -> Result<(u16, Box<dyn std::io::Read + Send>), String> {
        let response = self
            .token(self.agent.get(self.url(path)))
            .call()
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        Ok((status, Box::new(response.into_body().into_reader())))
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
