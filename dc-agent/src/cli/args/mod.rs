//! The operator CLI's command line, as clap reads it: every verb, its flags and their help.
//! Consul's spelling (`-flag=value`) is turned into clap's by `wire::flags` first; the
//! agent's own flags (`dc-agent agent ...`) are `assemble::flags`', not these.

// Clap turns doc comments into help text: the wrappers and subcommand enums below have none
// on purpose, so that the help reads as it did.
#![allow(missing_docs)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The Isthmus agent and its operator CLI.
#[derive(Parser)]
#[command(name = "dc-agent", version, about)]
pub struct Cli {
    /// Address of the agent's HTTP API (default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500).
    #[arg(long, global = true)]
    pub http_addr: Option<String>,
    /// ACL token sent with every request (default: CONSUL_HTTP_TOKEN).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// File holding the ACL token (default: CONSUL_HTTP_TOKEN_FILE).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// CA certificate to check the agent's HTTPS certificate with (default: CONSUL_CACERT).
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Directory of CA certificates (default: CONSUL_CAPATH).
    #[arg(long, global = true)]
    pub ca_path: Option<PathBuf>,
    /// Client certificate, for agents with `verify_incoming` (default: CONSUL_CLIENT_CERT).
    #[arg(long, global = true)]
    pub client_cert: Option<PathBuf>,
    /// Client key (default: CONSUL_CLIENT_KEY).
    #[arg(long, global = true)]
    pub client_key: Option<PathBuf>,
    /// Name to check the agent's certificate against (default: CONSUL_TLS_SERVER_NAME).
    #[arg(long, global = true)]
    pub tls_server_name: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run an agent, from every flag of `consul agent` and Consul's config files (JSON and
    /// HCL); `dc-agent agent -help` lists the flags.
    Agent {
        /// `consul agent`'s flags.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Check agent config files and directories, as `consul validate` does: what the agent
    /// would start with is valid.
    Validate {
        /// Config files (JSON or HCL) and directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// `json` or `hcl`, for every file whatever its extension.
        #[arg(long)]
        config_format: Option<String>,
        /// Print nothing on success.
        #[arg(long)]
        quiet: bool,
    },
    /// Print the version, as `consul version`.
    Version,
    /// Run a command while holding a lock (or, with `-n` above 1, a semaphore slot) at a
    /// KV prefix, as `consul lock`: the command is stopped when the lock is lost.
    Lock(LockArgs),
    /// Watch a key, a prefix, services, nodes, a service's health, checks or events; print
    /// the answer once, or run a handler each time it changes, as `consul watch`.
    Watch(WatchArgs),
    /// Run a command on the agents of a datacenter, as `consul exec` (agents run it only
    /// with `disable_remote_exec = false`).
    Exec(ExecArgs),
    /// Render files from the catalog and KV and keep them current, as consul-template
    /// (`-template "in.ctmpl:out.conf[:command]"`).
    Template(TemplateArgs),
    /// Fire a user event to the agents of a datacenter, as `consul event`.
    Event {
        /// The event's name.
        #[arg(long)]
        name: Option<String>,
        /// Only nodes whose name matches this regular expression.
        #[arg(long)]
        node: Option<String>,
        /// Only agents with a service matching this regular expression.
        #[arg(long)]
        service: Option<String>,
        /// Only those services with a tag matching this (needs -service).
        #[arg(long)]
        tag: Option<String>,
        /// The datacenter to fire it in (default: the agent's).
        #[arg(long)]
        datacenter: Option<String>,
        /// The payload.
        payload: Option<String>,
    },
    /// Save, restore or inspect a snapshot of the datacenter's state.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Gather what the agent knows into one archive, as `consul debug`.
    Debug {
        /// How long to capture for (`2m`).
        #[arg(long, default_value = "2m")]
        duration: String,
        /// How often to sample metrics (`30s`).
        #[arg(long, default_value = "30s")]
        interval: String,
        /// Where to write (default `consul-debug-<time>`).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Make a `.tar` archive (default) rather than leave the directory.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
        archive: bool,
    },
    /// Stream the agent's log lines, as `consul monitor`.
    Monitor {
        /// `trace`, `debug`, `info` (default), `warn` or `err`.
        #[arg(long)]
        log_level: Option<String>,
        /// Lines as JSON.
        #[arg(long)]
        log_json: bool,
    },
    /// Node or service maintenance mode: list it, or `-enable`/`-disable` it.
    Maint {
        /// Turn maintenance on.
        #[arg(long)]
        enable: bool,
        /// Turn maintenance off.
        #[arg(long)]
        disable: bool,
        /// A service instance ID instead of the node.
        #[arg(long)]
        service: Option<String>,
        /// Why (shown in the check's notes).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Register or deregister the agent's services, as `consul services`.
    Services {
        #[command(subcommand)]
        command: ServicesCommand,
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
        /// Replace the key in one checked step: generate, install everywhere, check, make
        /// primary, check, remove the old one (stops at a safe point on failure).
        #[arg(long)]
        rotate: bool,
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
    /// Manage ACLs: bootstrap, tokens and policies, as `consul acl`.
    Acl {
        #[command(subcommand)]
        command: AclCommand,
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
        /// Consul's `-prune` (forget the node at once); accepted, the node shows as left.
        #[arg(long)]
        prune: bool,
        /// The node name.
        node: String,
    },
    /// Ask the agent to join the pool through these agents (`host` or `host:port`).
    Join {
        /// Consul's `-wan`: servers of other datacenters are joined through the gateways.
        #[arg(long)]
        wan: bool,
        /// Gossip addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Save the state to FILE.
    Save {
        /// Let any server answer.
        #[arg(long)]
        stale: bool,
        /// The file.
        file: PathBuf,
    },
    /// Replace the datacenter's state with FILE's, through Raft.
    Restore {
        /// The file.
        file: PathBuf,
    },
    /// Print what FILE holds.
    Inspect {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ServicesCommand {
    /// Register a service from flags or from definition files (JSON or HCL).
    Register {
        /// Service name.
        #[arg(long)]
        name: Option<String>,
        /// Instance ID (default: the name).
        #[arg(long)]
        id: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Address, when not the node's.
        #[arg(long)]
        address: Option<String>,
        /// Port.
        #[arg(long)]
        port: Option<u16>,
        /// Metadata `key=value` (repeatable).
        #[arg(long)]
        meta: Vec<String>,
        /// Service definition files.
        files: Vec<PathBuf>,
    },
    /// Deregister a service by ID or by its definition files.
    Deregister {
        /// Instance ID.
        #[arg(long)]
        id: Option<String>,
        /// Service definition files.
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum KvCommand {
    /// Print every key under a prefix as JSON (`kv import` takes it back).
    Export {
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Write the keys of a `kv export`: DATA, `@file`, or `-` (stdin, the default).
    Import {
        /// The data.
        data: Option<String>,
        /// Put this in front of every key.
        #[arg(long, default_value = "")]
        prefix: String,
    },
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
        /// Take the key's lock with -session (writing the value too).
        #[arg(long)]
        acquire: bool,
        /// Release the key's lock held by -session (writing the value too).
        #[arg(long)]
        release: bool,
        /// The session for -acquire and -release.
        #[arg(long)]
        session: Option<String>,
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
pub enum CatalogCommand {
    /// Service names.
    Services {
        /// Show tags.
        #[arg(long)]
        tags: bool,
        /// Only the services of this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Nodes.
    Nodes {
        /// Only nodes running this service.
        #[arg(long)]
        service: Option<String>,
        /// Tagged addresses and metadata too.
        #[arg(long)]
        detailed: bool,
        /// Sort by estimated round trip from this node (`_agent`: the agent asked).
        #[arg(long)]
        near: Option<String>,
        /// Only nodes with this metadata, `key:value` (repeatable).
        #[arg(long)]
        node_meta: Vec<String>,
        /// A filter expression, as `?filter=`.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Datacenters.
    Datacenters,
}

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Raft tools.
    Raft {
        #[command(subcommand)]
        command: RaftCommand,
    },
    /// Usage: service instances per datacenter.
    Usage {
        #[command(subcommand)]
        command: UsageCommand,
    },
    /// Autopilot: its configuration and the servers' health.
    Autopilot {
        #[command(subcommand)]
        command: AutopilotCommand,
    },
    /// The federation of datacenters.
    Federation {
        #[command(subcommand)]
        command: FederationCommand,
    },
}

#[derive(Subcommand)]
pub enum UsageCommand {
    /// Service instances per datacenter.
    Instances,
}

#[derive(Subcommand)]
pub enum AutopilotCommand {
    /// Print the configuration.
    GetConfig,
    /// Change the configuration (flags left out keep their values).
    SetConfig {
        /// Remove failed servers from Raft.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        cleanup_dead_servers: Option<bool>,
        /// Most log entries a healthy server may trail by.
        #[arg(long)]
        max_trailing_logs: Option<u64>,
        /// Fewest voters dead-server cleanup leaves.
        #[arg(long)]
        min_quorum: Option<u32>,
        /// Longest a healthy server may go without the leader (`200ms`).
        #[arg(long)]
        last_contact_threshold: Option<String>,
        /// How long a new server must be healthy to count as stable (`10s`).
        #[arg(long)]
        server_stabilization_time: Option<String>,
        /// Consul Enterprise: kept, not used.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        disable_upgrade_migration: Option<bool>,
        /// Consul Enterprise: kept, not used.
        #[arg(long)]
        redundancy_zone_tag: Option<String>,
        /// Consul Enterprise: kept, not used.
        #[arg(long)]
        upgrade_version_tag: Option<String>,
    },
    /// Print the servers' health as the leader sees it.
    State,
}

#[derive(Subcommand)]
pub enum FederationCommand {
    /// Remove a datacenter for good (its servers and gateways stopped first): its servers
    /// become left in the WAN pool and it disappears from every datacenter list.
    RemoveDc {
        /// The datacenter.
        datacenter: String,
    },
}

#[derive(Subcommand)]
pub enum RaftCommand {
    /// The Raft peers and their roles.
    ListPeers {
        /// Let any server answer.
        #[arg(long)]
        stale: bool,
    },
    /// Remove a server from the Raft configuration (a dead server that cannot leave).
    RemovePeer {
        /// The server's ID (as `list-peers` shows it).
        #[arg(long)]
        id: Option<String>,
        /// The server's Raft address, `IP:port`.
        #[arg(long)]
        address: Option<String>,
    },
    /// Hand Raft leadership to another server (the most up-to-date voter without `-id`).
    TransferLeader {
        /// The ID of the server to lead (as `list-peers` shows it).
        #[arg(long)]
        id: Option<String>,
    },
}

/// `lock`'s flags and arguments.
#[derive(clap::Args)]
pub struct LockArgs {
    /// How many may hold it at once (1: a lock; more: a semaphore).
    #[arg(short = 'n', long = "n", default_value_t = 1)]
    pub n: u32,
    /// The session's name (default: one made from the command).
    #[arg(long)]
    pub name: Option<String>,
    /// Exit 2 when the command fails (by default its failure is not passed on).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub child_exit_code: bool,
    /// Errors to ride out while watching the lock, 1 s apart (0: none).
    #[arg(long, default_value_t = 3)]
    pub monitor_retry: u32,
    /// Run the command through $SHELL (or /bin/sh).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub shell: bool,
    /// Give the command this process's stdin.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub pass_stdin: bool,
    /// Give up acquiring after this long (`500ms`, `1m`; default: wait for ever).
    #[arg(long)]
    pub timeout: Option<String>,
    /// The same as -timeout (Consul's older name).
    #[arg(long = "try")]
    pub try_for: Option<String>,
    /// Say what happens.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub verbose: bool,
    /// The datacenter of the lock (default: the agent's).
    #[arg(long)]
    pub datacenter: Option<String>,
    /// The KV prefix, then the command and its arguments.
    #[arg(required = true, num_args = 2.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub prefix_and_command: Vec<String>,
}

/// `watch`'s flags and handler.
#[derive(clap::Args)]
pub struct WatchArgs {
    /// key, keyprefix, services, nodes, service, checks or event.
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// The key (`-type=key`).
    #[arg(long)]
    pub key: Option<String>,
    /// The prefix (`-type=keyprefix`).
    #[arg(long)]
    pub prefix: Option<String>,
    /// The service (`-type=service`, `-type=checks`).
    #[arg(long)]
    pub service: Option<String>,
    /// Tags the service must have (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only passing instances (`-type=service`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub passingonly: bool,
    /// Checks in this state (`-type=checks`).
    #[arg(long)]
    pub state: Option<String>,
    /// The event's name (`-type=event`).
    #[arg(long)]
    pub name: Option<String>,
    /// The datacenter to watch (default: the agent's).
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Run the handler through $SHELL (or /bin/sh).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub shell: bool,
    /// The handler and its arguments (none: print the answer once).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub handler: Vec<String>,
}

/// `template`'s flags, as consul-template's.
#[derive(clap::Args)]
pub struct TemplateArgs {
    /// "source:destination[:command]" (repeatable).
    #[arg(long)]
    pub template: Vec<String>,
    /// A consul-template configuration file, HCL or JSON (repeatable).
    #[arg(long)]
    pub config: Vec<PathBuf>,
    /// Render each template once all its answers are in, then exit.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub once: bool,
    /// Print to stdout instead of writing files.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub dry: bool,
    /// Wait for changes to stop: min[:max] (max defaults to 4 x min).
    #[arg(long)]
    pub wait: Option<String>,
    /// The agent to ask (default: -http-addr).
    #[arg(long)]
    pub consul_addr: Option<String>,
    /// How old an answer any server may give (0: only the leader answers; default 2s).
    #[arg(long)]
    pub max_stale: Option<String>,
    /// trace, debug, info, warn or err (default: info).
    #[arg(long)]
    pub log_level: Option<String>,
}

/// `exec`'s flags and command.
#[derive(clap::Args)]
pub struct ExecArgs {
    /// Only nodes whose name matches this regular expression.
    #[arg(long)]
    pub node: Option<String>,
    /// Only agents with a service matching this regular expression.
    #[arg(long)]
    pub service: Option<String>,
    /// Only those services with a tag matching this (needs -service).
    #[arg(long)]
    pub tag: Option<String>,
    /// How long to wait for news before it is done.
    #[arg(long, default_value = "2s")]
    pub wait: String,
    /// How long to let the job replicate before announcing it.
    #[arg(long = "wait-repl", default_value = "200ms")]
    pub wait_repl: String,
    /// The KV prefix of jobs.
    #[arg(long, default_value = "_rexec")]
    pub prefix: String,
    /// Run the command through the agents' shell.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub shell: bool,
    /// The datacenter to run it in (default: the agent's).
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Say more.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub verbose: bool,
    /// The command.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

mod acl;
pub use acl::*;
