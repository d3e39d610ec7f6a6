//! The gateway's configuration (`gateway.toml`, written by `topology render`), checked once.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use wire::config_file::ConfigError;
use wire::gateway_config::{GatewayConfig, GATEWAY_CONFIG_VERSION};
use wire::Role;

/// A checked gateway configuration.
#[derive(Debug)]
pub struct ValidatedConfig {
    /// The file as written.
    pub config: GatewayConfig,
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Where other gateways dial this one (`advertise_addr`, else the listen address).
    pub advertise: SocketAddr,
    /// Metrics listen address.
    pub metrics_listen: SocketAddr,
    /// Local servers' Raft/RPC addresses.
    pub servers: Vec<SocketAddr>,
    /// Remote gateways: (datacenter, node, address).
    pub remote_gateways: Vec<(String, String, SocketAddr)>,
    /// Data directory, resolved against the file's directory.
    pub data_dir: PathBuf,
    /// TLS material; its certificate is a gateway of this datacenter.
    pub tls: pki::NodeTls,
}

/// Reads and checks a gateway config file.
pub fn load(path: &Path) -> Result<ValidatedConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let config: GatewayConfig = toml::from_str(&text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |span| {
            wire::config_file::line_col(&text, span.start)
        });
        ConfigError::Syntax {
            path: shown.clone(),
            line,
            column,
            message: e.message().trim_end().to_owned(),
        }
    })?;
    let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
    let resolve = |p: &str| {
        if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base_dir.join(p)
        }
    };
    let mut problems = Vec::new();
    if config.config_version != GATEWAY_CONFIG_VERSION {
        problems.push(format!(
            "config_version {} is not understood by this wan-gateway (it reads version {GATEWAY_CONFIG_VERSION}); re-render with the matching `topology`",
            config.config_version
        ));
    }
    let bind: Option<IpAddr> = config
        .bind_addr
        .parse()
        .map_err(|_| {
            problems.push(format!(
                "bind_addr {:?} is not an IP address",
                config.bind_addr
            ))
        })
        .ok();
    let bind = bind.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut socket = |what: &str, value: &str| -> Option<SocketAddr> {
        value
            .parse()
            .map_err(|_| problems.push(format!("{what} {value:?} is not an address:port")))
            .ok()
    };
    let servers: Vec<SocketAddr> = config
        .servers
        .iter()
        .filter_map(|s| socket("server", s))
        .collect();
    let remote_gateways = config
        .remote_gateways
        .iter()
        .filter_map(|g| {
            socket("remote gateway", &g.address)
                .map(|a| (g.datacenter.clone(), g.node_name.clone(), a))
        })
        .collect();
    let advertise = config
        .advertise_addr
        .as_deref()
        .and_then(|a| socket("advertise_addr", a));
    if config.servers.is_empty() {
        problems.push(
            "no servers listed; the gateway has nothing to route to in its own datacenter"
                .to_owned(),
        );
    }
    let tls = load_tls(&config, &resolve, &mut problems);
    match tls {
        Some(tls) if problems.is_empty() => Ok(ValidatedConfig {
            listen: SocketAddr::new(bind, config.port),
            advertise: advertise.unwrap_or(SocketAddr::new(bind, config.port)),
            metrics_listen: SocketAddr::new(bind, config.metrics_port),
            servers,
            remote_gateways,
            data_dir: resolve(&config.data_dir),
            tls,
            config,
        }),
        _ => Err(ConfigError::Invalid {
            path: shown,
            problems,
        }),
    }
}

/// The gateway's TLS material; its certificate must be a gateway's of this datacenter.
fn load_tls(
    config: &GatewayConfig,
    resolve: &dyn Fn(&str) -> PathBuf,
    problems: &mut Vec<String>,
) -> Option<pki::NodeTls> {
    let read = |name: &str, problems: &mut Vec<String>| {
        let file = resolve(name);
        std::fs::read(&file)
            .map_err(|e| problems.push(format!("reading {}: {e}", file.display())))
            .ok()
    };
    let ca = read(&config.tls.ca_file, problems);
    let cert = read(&config.tls.cert_file, problems);
    let key = read(&config.tls.key_file, problems);
    match (ca, cert, key) {
        (Some(ca), Some(cert), Some(key)) => match pki::NodeTls::from_pem(&ca, &cert, &key) {
            Ok(tls) => {
                let is_gateway_here = tls.own_certificate().identities.iter().any(|identity| {
                    identity.role == Role::Gateway
                        && identity.datacenter == config.datacenter
                        && identity.domain == config.domain
                });
                if !is_gateway_here {
                    problems.push(format!(
                        "{} is not a gateway certificate of {}; issue one with `pki cert create --gateway --dc {}`",
                        resolve(&config.tls.cert_file).display(),
                        config.datacenter,
                        config.datacenter
                    ));
                }
                Some(tls)
            }
            Err(e) => {
                problems.push(format!("loading TLS material: {e}"));
                None
            }
        },
        _ => None,
    }
}
