//! The operator CLI: each verb talks to an agent's HTTP API and prints what Consul prints.
//! Exit codes: 0 success, 1 failure (as Consul), 2 bad command line.

pub mod acl;
pub mod acl_dispatch;
pub mod acl_role;
pub mod args;
pub mod catalog;
pub mod debug;
pub mod event;
pub mod exec;
pub mod info;
pub mod keyring;
pub mod kv;
pub mod lock;
pub mod maint;
pub mod members;
pub mod operator;
pub mod services;
pub mod snapshot;
pub mod template;

use std::process::ExitCode;

use crate::client::{ApiClient, ApiResponse};

/// Prints an error as Consul does and returns exit code 1.
/// Restores the default action of SIGPIPE, so that a CLI whose reader went away (`| head`)
/// ends quietly, as C tools and Consul's CLI do, instead of failing on its next write.
/// Not for the agent, which must outlive a closed log pipe.
pub fn exit_quietly_on_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: sets a signal disposition before any thread starts; no memory is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Prints an error as Consul's CLI does and returns the failure exit code.
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

/// The ACL token every request carries (`-token`, `-token-file`, `CONSUL_HTTP_TOKEN`,
/// `CONSUL_HTTP_TOKEN_FILE`), set once by `main`.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the token of every request this CLI makes.
pub fn set_token(token: String) {
    let _ = TOKEN.set(token);
}

/// The token set with [`set_token`], if any.
pub fn token() -> Option<String> {
    TOKEN.get().cloned()
}

/// The TLS settings of every request (`-ca-file`, ..., `CONSUL_HTTP_SSL`), set once by
/// `main` after [`check_tls`] accepted them.
static TLS: std::sync::OnceLock<crate::client::ClientTls> = std::sync::OnceLock::new();

/// Checks the TLS settings (files readable, PEM in them) and keeps them for [`client`].
pub fn check_tls(addr: &str, tls: crate::client::ClientTls) -> Result<(), String> {
    ApiClient::with_tls(addr, std::time::Duration::from_secs(60), &tls)?;
    let _ = TLS.set(tls);
    Ok(())
}

/// The client for `-http-addr`.
pub fn client(addr: &str) -> ApiClient {
    client_with_timeout(addr, Some(std::time::Duration::from_secs(60)))
}

/// The client for `-http-addr` with its own timeout (`None`: a stream that lasts).
pub fn client_with_timeout(addr: &str, timeout: Option<std::time::Duration>) -> ApiClient {
    let client = match TLS.get() {
        Some(tls) => ApiClient::with_tls(addr, timeout, tls).unwrap_or_else(|e| {
            // `check_tls` read the same files a moment ago.
            eprintln!("Error! {e}");
            std::process::exit(1)
        }),
        None => ApiClient::with_tls(addr, timeout, &crate::client::ClientTls::default())
            .unwrap_or_else(|_| ApiClient::new(addr, std::time::Duration::from_secs(60))),
    };
    client.with_token(TOKEN.get().cloned())
}

/// `path` asked of another datacenter (`-datacenter`), or of the agent's own.
pub fn in_datacenter(path: &str, datacenter: Option<&str>) -> String {
    match datacenter {
        Some(dc) => format!("{path}?dc={}", crate::client::encode_key(dc)),
        None => path.to_owned(),
    }
}
