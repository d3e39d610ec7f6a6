//! The operator CLI: each verb talks to an agent's HTTP API and prints what Consul prints.
//! Exit codes: 0 success, 1 failure (as Consul), 2 bad command line.

pub mod catalog;
pub mod info;
pub mod keyring;
pub mod kv;
pub mod members;
pub mod operator;

use std::process::ExitCode;

use crate::client::{ApiClient, ApiResponse};

/// Prints an error as Consul does and returns exit code 1.
pub fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("Error! {message}");
    ExitCode::FAILURE
}

/// Turns a transport failure or a non-2xx answer into an error message.
pub fn check(result: Result<ApiResponse, String>, addr: &str) -> Result<ApiResponse, String> {
    match result {
        Err(e) => Err(format!(
            "Could not reach the agent at {addr}: {e} (set -http-addr or CONSUL_HTTP_ADDR)"
        )),
        Ok(response) if response.status >= 400 && response.status != 404 => Err(format!(
            "Unexpected response code: {} ({})",
            response.status,
            response.text().trim()
        )),
        Ok(response) => Ok(response),
    }
}

/// The client for `-http-addr`.
pub fn client(addr: &str) -> ApiClient {
    ApiClient::new(addr, std::time::Duration::from_secs(60))
}

/// `path` asked of another datacenter (`-datacenter`), or of the agent's own.
pub fn in_datacenter(path: &str, datacenter: Option<&str>) -> String {
    match datacenter {
        Some(dc) => format!("{path}?dc={}", crate::client::encode_key(dc)),
        None => path.to_owned(),
    }
}
