//! `dc-agent`: the Isthmus agent and its operator CLI. Consul's flag spelling works
//! (`-config-file=F`, `-cas -modify-index=716`) as does the GNU one (`--config-file F`).
//! Exit codes: 0 success, 1 failure, 2 bad command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dc_agent::cli;
use serde_json::{json, Map, Value};

/// The Isthmus agent and its operator CLI.
#[derive(Parser)]
#[command(name = "dc-agent", version, about)]
struct Cli {
    /// Address of the agent's HTTP API (default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500).
    #[arg(long, global = true)]
    http_addr: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an agent, from Consul's flags and JSON config files.
    Agent(Box<AgentFlags>),
    /// Check agent config files, as `consul validate` does.
    Validate {
        /// Config files (JSON, Consul's agent format).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print nothing on success.
        #[arg(long)]
        quiet: bool,
    },
    /// Print a new gossip encryption key (32 random bytes, base64), as `consul keygen` does.
    Keygen,
    /// Manage the gossip keyring of every agent (`-list`, `-install`, `-use`, `-remove`),
    /// as `consul keyring` does.
    Keyring {
        /// List the installed keys and how many agents hold each.
        #[arg(long)]
        list: bool,
        /// Install a key on every agent (for opening packets).
        #[arg(long)]
        install: Option<String>,
        /// Make an installed key the one every agent seals with.
        #[arg(long = "use")]
        use_key: Option<String>,
        /// Remove a key from every agent (not the one in use).
        #[arg(long)]
        remove: Option<String>,
        /// Only this datacenter's agents, not the WAN pool or other datacenters.
        #[arg(long)]
        local_only: bool,
    },
    /// Read and write the KV store.
    Kv {
        /// The datacenter to ask (default: the agent's); `-datacenter=dc2`.
        #[arg(long, global = true)]
        datacenter: Option<String>,
        #[command(subcommand)]
        command: KvCommand,
    },
    /// List the catalog.
    Catalog {
        /// The datacenter to ask (default: the agent's); `-datacenter=dc2`.
        #[arg(long, global = true)]
        datacenter: Option<String>,
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Operator tools.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Print the agent's statistics.
    Info,
    /// Leave the cluster gracefully and stop the agent.
    Leave,
    /// Re-read the agent's config files (services and checks), as SIGHUP does.
    Reload,
    /// The LAN gossip pool's members; with `-wan`, the WAN pool of every datacenter's
    /// servers (asked of a server).
    Members {
        /// Show every tag.
        #[arg(long)]
        detailed: bool,
        /// The WAN pool instead of the LAN pool.
        #[arg(long)]
        wan: bool,
        /// Only members with this status (`alive`, `failed`, `left`; `|` for several).
        #[arg(long)]
        status: Option<String>,
    },
    /// Estimated round trip between two nodes from their network coordinates
    /// (`rtt n1 n2`, `rtt -wan s1.dc1 s2.dc2`; with one node, from the agent asked), or
    /// from this datacenter to another as the gateways' WAN links measure it
    /// (`rtt -wan dc2`; `rtt -wan` for every datacenter).
    Rtt {
        /// WAN coordinates (`node.dc` names) or datacenters.
        #[arg(long)]
        wan: bool,
        /// One or two node names, or a datacenter.
        #[arg(num_args = 0..=2)]
        targets: Vec<String>,
    },
    /// Mark a failed member as left, so it is removed from the catalog.
    ForceLeave {
        /// The WAN pool (`node.dc`) instead of the LAN pool.
        #[arg(long)]
        wan: bool,
        /// The node name.
        node: String,
    },
    /// Ask the agent to join the pool through these agents (`host` or `host:port`).
    Join {
        /// Gossip addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
}

#[derive(Args)]
struct AgentFlags {
    /// Run as a server.
    #[arg(long)]
    server: bool,
    /// Number of servers to wait for before bootstrapping.
    #[arg(long)]
    bootstrap_expect: Option<u32>,
    /// Bootstrap alone (same as -bootstrap-expect=1).
    #[arg(long)]
    bootstrap: bool,
    /// Node name.
    #[arg(long)]
    node: Option<String>,
    /// Address for cluster traffic.
    #[arg(long)]
    bind: Option<String>,
    /// Address for HTTP and DNS.
    #[arg(long)]
    client: Option<String>,
    /// Address to advertise.
    #[arg(long)]
    advertise: Option<String>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Directory of JSON config files (repeatable).
    #[arg(long)]
    config_dir: Vec<PathBuf>,
    /// A JSON config file (repeatable).
    #[arg(long, alias = "config")]
    config_file: Vec<PathBuf>,
    /// Datacenter.
    #[arg(long)]
    datacenter: Option<String>,
    /// DNS domain.
    #[arg(long)]
    domain: Option<String>,
    /// Upstream DNS server for names outside the domain, `IP` or `IP:port` (repeatable).
    #[arg(long)]
    recursor: Vec<String>,
    /// Server to join at start, retried (repeatable).
    #[arg(long)]
    retry_join: Vec<String>,
    /// Deprecated alias of -retry-join.
    #[arg(long)]
    join: Vec<String>,
    /// Gossip encryption key.
    #[arg(long)]
    encrypt: Option<String>,
    /// Log level.
    #[arg(long)]
    log_level: Option<String>,
    /// HTTP port.
    #[arg(long)]
    http_port: Option<u16>,
    /// DNS port.
    #[arg(long)]
    dns_port: Option<u16>,
    /// Server (Raft/RPC) port.
    #[arg(long)]
    server_port: Option<u16>,
    /// LAN gossip port.
    #[arg(long)]
    serf_lan_port: Option<u16>,
    /// Node metadata `key:value` (repeatable).
    #[arg(long)]
    node_meta: Vec<String>,
    /// Allow script checks.
    #[arg(long)]
    enable_script_checks: bool,
    /// Development mode: one server, temporary data, on 127.0.0.1.
    #[arg(long)]
    dev: bool,
    /// Consul's web UI (not available in Isthmus yet; accepted with a warning).
    #[arg(long)]
    ui: bool,
    /// Write the agent's PID to this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KvCommand {
    /// Read a key, or keys under a prefix.
    Get {
        /// The key or prefix.
        #[arg(default_value = "")]
        key: String,
        /// Print every field.
        #[arg(long)]
        detailed: bool,
        /// Every key under the prefix.
        #[arg(long)]
        recurse: bool,
        /// Keys only.
        #[arg(long)]
        keys: bool,
        /// Separator for -keys.
        #[arg(long)]
        separator: Option<String>,
        /// Let any server answer.
        #[arg(long)]
        stale: bool,
    },
    /// Write a key. VALUE `-` reads stdin, `@file` reads a file.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Option<String>,
        /// Write only if the key's modify index is -modify-index (0: only if absent).
        #[arg(long)]
        cas: bool,
        /// The index for -cas.
        #[arg(long)]
        modify_index: Option<u64>,
        /// Client flags.
        #[arg(long)]
        flags: Option<u64>,
    },
    /// Delete a key, or every key under a prefix.
    Delete {
        /// The key or prefix.
        key: String,
        /// Every key under the prefix.
        #[arg(long)]
        recurse: bool,
        /// Delete only if the key's modify index is -modify-index.
        #[arg(long)]
        cas: bool,
        /// The index for -cas.
        #[arg(long)]
        modify_index: Option<u64>,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Service names.
    Services {
        /// Show tags.
        #[arg(long)]
        tags: bool,
    },
    /// Nodes.
    Nodes,
    /// Datacenters.
    Datacenters,
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Raft tools.
    Raft {
        #[command(subcommand)]
        command: RaftCommand,
    },
    /// The federation of datacenters.
    Federation {
        #[command(subcommand)]
        command: FederationCommand,
    },
}

#[derive(Subcommand)]
enum FederationCommand {
    /// Remove a datacenter for good (its servers and gateways stopped first): its servers
    /// become left in the WAN pool and it disappears from every datacenter list.
    RemoveDc {
        /// The datacenter.
        datacenter: String,
    },
}

#[derive(Subcommand)]
enum RaftCommand {
    /// The Raft peers and their roles.
    ListPeers {
        /// Let any server answer.
        #[arg(long)]
        stale: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(wire::flags::normalize_consul_flags(std::env::args()));
    let addr = cli
        .http_addr
        .clone()
        .unwrap_or_else(dc_agent::client::default_http_addr);
    match cli.command {
        Command::Agent(flags) => agent(*flags),
        Command::Validate { files, quiet } => validate(&files, quiet),
        Command::Keygen => match dc_agent::keygen::new_gossip_key() {
            Ok(key) => {
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(_) => cli::fail("the system random number generator failed"),
        },
        Command::Kv {
            command,
            datacenter,
        } => match command {
            KvCommand::Get {
                key,
                detailed,
                recurse,
                keys,
                separator,
                stale,
            } => cli::kv::get(
                &addr,
                &key,
                &cli::kv::GetOptions {
                    detailed,
                    recurse,
                    keys,
                    separator,
                    stale,
                    datacenter,
                },
            ),
            KvCommand::Put {
                key,
                value,
                cas,
                modify_index,
                flags,
            } => match cas_index(cas, modify_index) {
                Ok(cas) => cli::kv::put(
                    &addr,
                    &key,
                    value.as_deref(),
                    cas,
                    flags,
                    datacenter.as_deref(),
                ),
                Err(code) => code,
            },
            KvCommand::Delete {
                key,
                recurse,
                cas,
                modify_index,
            } => match cas_index(cas, modify_index) {
                Ok(cas) => cli::kv::delete(&addr, &key, recurse, cas, datacenter.as_deref()),
                Err(code) => code,
            },
        },
        Command::Catalog {
            command,
            datacenter,
        } => match command {
            CatalogCommand::Services { tags } => {
                cli::catalog::services(&addr, tags, datacenter.as_deref())
            }
            CatalogCommand::Nodes => cli::catalog::nodes(&addr, datacenter.as_deref()),
            CatalogCommand::Datacenters => cli::catalog::datacenters(&addr),
        },
        Command::Operator {
            command:
                OperatorCommand::Raft {
                    command: RaftCommand::ListPeers { stale },
                },
        } => cli::operator::list_peers(&addr, stale),
        Command::Operator {
            command:
                OperatorCommand::Federation {
                    command: FederationCommand::RemoveDc { datacenter },
                },
        } => cli::operator::remove_dc(&addr, &datacenter),
        Command::Keyring {
            list,
            install,
            use_key,
            remove,
            local_only,
        } => cli::keyring::keyring(&addr, list, install, use_key, remove, local_only),
        Command::Info => cli::info::info(&addr),
        Command::Leave => cli::info::leave(&addr),
        Command::Reload => cli::info::reload(&addr),
        Command::Members {
            detailed,
            wan,
            status,
        } => cli::members::members(&addr, detailed, wan, status.as_deref()),
        Command::Join { addresses } => cli::members::join(&addr, &addresses),
        Command::ForceLeave { wan, node } => cli::members::force_leave(&addr, &node, wan),
        Command::Rtt { wan, targets } => match targets.as_slice() {
            [] if wan => cli::catalog::rtt(&addr, None),
            [dc] if wan && !dc.contains('.') => cli::catalog::rtt(&addr, Some(dc)),
            [] => cli::fail("Error: a node name is required (`rtt NODE [NODE]`)"),
            nodes => cli::catalog::rtt_nodes(&addr, wan, nodes),
        },
    }
}

fn cas_index(cas: bool, modify_index: Option<u64>) -> Result<Option<u64>, ExitCode> {
    match (cas, modify_index) {
        (true, Some(index)) => Ok(Some(index)),
        (true, None) => Err(cli::fail("Must specify -modify-index with -cas")),
        (false, Some(_)) => Err(cli::fail("Cannot specify -modify-index without -cas")),
        (false, None) => Ok(None),
    }
}

fn validate(files: &[PathBuf], quiet: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        let checked = dc_agent::config::load_file(file).and_then(|loaded| loaded.validate());
        if let Err(error) = checked {
            eprintln!("Config validation failed: {error}");
            failed = true;
        }
    }
    if failed {
        return ExitCode::FAILURE;
    }
    if !quiet {
        println!("Configuration is valid!");
    }
    ExitCode::SUCCESS
}

/// Flags become one more config layer, on top of the files.
fn flags_layer(flags: &AgentFlags) -> Result<Map<String, Value>, String> {
    let mut layer = Map::new();
    let mut set = |key: &str, value: Value| {
        layer.insert(key.to_owned(), value);
    };
    if flags.server {
        set("server", json!(true));
    }
    if flags.bootstrap {
        set("bootstrap_expect", json!(1));
    }
    if let Some(n) = flags.bootstrap_expect {
        set("bootstrap_expect", json!(n));
    }
    for (key, value) in [
        ("node_name", &flags.node),
        ("bind_addr", &flags.bind),
        ("client_addr", &flags.client),
        ("advertise_addr", &flags.advertise),
        ("datacenter", &flags.datacenter),
        ("domain", &flags.domain),
        ("encrypt", &flags.encrypt),
        ("log_level", &flags.log_level),
    ] {
        if let Some(value) = value {
            set(key, json!(value));
        }
    }
    if let Some(dir) = &flags.data_dir {
        set("data_dir", json!(dir.display().to_string()));
    }
    if !flags.recursor.is_empty() {
        set("recursors", json!(flags.recursor));
    }
    let joins: Vec<&String> = flags.retry_join.iter().chain(flags.join.iter()).collect();
    if !joins.is_empty() {
        set("retry_join", json!(joins));
    }
    let mut ports = Map::new();
    for (key, value) in [
        ("http", flags.http_port),
        ("dns", flags.dns_port),
        ("server", flags.server_port),
        ("serf_lan", flags.serf_lan_port),
    ] {
        if let Some(port) = value {
            ports.insert(key.to_owned(), json!(port));
        }
    }
    if !ports.is_empty() {
        set("ports", Value::Object(ports));
    }
    if !flags.node_meta.is_empty() {
        let mut meta = Map::new();
        for entry in &flags.node_meta {
            let (key, value) = entry
                .split_once(':')
                .ok_or_else(|| format!("-node-meta {entry:?} must be key:value"))?;
            meta.insert(key.to_owned(), json!(value));
        }
        set("node_meta", Value::Object(meta));
    }
    if flags.enable_script_checks {
        set("enable_script_checks", json!(true));
    }
    Ok(layer)
}

/// Reads the configuration: config dirs and files in order, then the flags layer.
fn load_config(
    dirs: &[PathBuf],
    files: &[PathBuf],
    flags: &Map<String, Value>,
    dev: bool,
) -> Result<(wire::agent_config::AgentConfig, Vec<String>, String), String> {
    let mut merged = Map::new();
    let mut origins = Vec::new();
    let mut all_files = Vec::new();
    for dir in dirs {
        all_files.extend(dc_agent::assemble::dir_files(dir).map_err(|e| e.to_string())?);
    }
    all_files.extend(files.iter().cloned());
    for file in &all_files {
        let layer = dc_agent::assemble::read_file(file).map_err(|e| e.to_string())?;
        dc_agent::assemble::merge(&mut merged, layer);
        origins.push(file.display().to_string());
    }
    dc_agent::assemble::merge(&mut merged, flags.clone());
    origins.push("command-line flags".to_owned());
    let origin = origins.join(", ");
    let assembled = dc_agent::assemble::finish(merged, &origin).map_err(|e| e.to_string())?;
    let mut config = assembled.config;
    if dev {
        dc_agent::run::apply_dev_defaults(&mut config);
    }
    Ok((config, assembled.warnings, origin))
}

fn agent(flags: AgentFlags) -> ExitCode {
    let layer = match flags_layer(&flags) {
        Ok(layer) => layer,
        Err(e) => return cli::fail(e),
    };
    let (config, warnings, origin) =
        match load_config(&flags.config_dir, &flags.config_file, &layer, flags.dev) {
            Ok(loaded) => loaded,
            Err(e) => return cli::fail(e),
        };
    let reload: dc_agent::run::ConfigSource = {
        let (dirs, files, dev) = (
            flags.config_dir.clone(),
            flags.config_file.clone(),
            flags.dev,
        );
        std::sync::Arc::new(move || {
            load_config(&dirs, &files, &layer, dev).map(|(config, _, _)| config)
        })
    };
    let level = config
        .log_level
        .clone()
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},openraft=error,hickory_server=warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    if flags.ui {
        tracing::warn!("-ui: Consul's web UI is not available in Isthmus yet");
    }
    if let Some(path) = &flags.pid_file {
        if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
            return cli::fail(format!("writing the PID file {}: {e}", path.display()));
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return cli::fail(format!("starting the runtime: {e}")),
    };
    let result = runtime.block_on(dc_agent::run::run(dc_agent::run::RunOptions {
        config,
        dev: flags.dev,
        origin,
        reload,
    }));
    if let Some(path) = &flags.pid_file {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("==> Error starting agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
