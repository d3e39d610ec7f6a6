//! `dc-agent`: the Isthmus agent and its operator CLI. Consul's flag spelling works
//! (`-config-file=F`, `-cas -modify-index=716`) as does the GNU one (`--config-file F`).
//! Exit codes: 0 success, 1 failure, 2 bad command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dc_agent::cli;
use dc_agent::cli::args::*;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The agent's flags are Consul's, parsed as Go's `flag` package does (every one of
    // `consul agent`'s), not by clap.
    if args.get(1).is_some_and(|a| a == "agent") {
        return agent(&args[2..]);
    }
    // A CLI whose output is cut short (`| head`) ends quietly, as Consul's.
    dc_agent::cli::exit_quietly_on_broken_pipe();
    let cli = Cli::parse_from(wire::flags::normalize_consul_flags(args));
    let addr = match connection(&cli) {
        Ok(addr) => addr,
        Err(code) => return code,
    };
    match cli.command {
        Command::Agent { args } => agent(&args),
        Command::Validate {
            paths,
            config_format,
            quiet,
        } => validate(&paths, config_format.as_deref(), quiet),
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
        } => kv(&addr, command, datacenter),
        Command::Catalog {
            command,
            datacenter,
        } => catalog(&addr, command, datacenter),
        Command::Operator { command } => operator(&addr, command),
        Command::Acl { command } => cli::acl_dispatch::run(&addr, command),
        Command::Template(args) => cli::template::run(&addr, args.into()),
        Command::Keyring { rotate: true, .. } => cli::keyring::rotate(&addr),
        Command::Keyring {
            list,
            install,
            use_key,
            remove,
            local_only,
            rotate: false,
        } => cli::keyring::keyring(&addr, list, install, use_key, remove, local_only),
        Command::Info => cli::info::info(&addr),
        Command::Snapshot { command } => match command {
            SnapshotCommand::Save { stale, file } => cli::snapshot::save(&addr, &file, stale),
            SnapshotCommand::Restore { file } => cli::snapshot::restore(&addr, &file),
            SnapshotCommand::Inspect { file } => cli::snapshot::inspect(&file),
        },
        Command::Debug {
            duration,
            interval,
            output,
            archive,
        } => debug(&addr, &duration, &interval, output, archive),
        Command::Monitor {
            log_level,
            log_json,
        } => cli::info::monitor(&addr, log_level.as_deref(), log_json),
        Command::Version => version(),
        Command::Lock(args) => lock(&addr, args),
        Command::Watch(args) => watch(&addr, args),
        Command::Exec(args) => exec(&addr, args),
        Command::Event {
            name,
            node,
            service,
            tag,
            datacenter,
            payload,
        } => {
            let options = cli::event::EventOptions {
                name,
                node,
                service,
                tag,
                datacenter,
            };
            cli::event::fire(&addr, &options, payload.as_deref())
        }
        Command::Maint {
            enable,
            disable,
            service,
            reason,
        } => cli::maint::maint(
            &addr,
            &cli::maint::MaintOptions {
                enable,
                disable,
                service,
                reason,
            },
        ),
        Command::Services { command } => services(&addr, command),
        Command::Leave => cli::info::leave(&addr),
        Command::Reload => cli::info::reload(&addr),
        Command::Members {
            detailed,
            wan,
            status,
        } => cli::members::members(&addr, detailed, wan, status.as_deref()),
        Command::Join { wan: true, .. } => cli::fail(
            "Isthmus servers join other datacenters through their gateways, not by address: list the gateways under isthmus.gateways (see `members -wan`)",
        ),
        Command::Join {
            wan: false,
            addresses,
        } => cli::members::join(&addr, &addresses),
        Command::ForceLeave { wan, prune, node } => {
            cli::members::force_leave(&addr, &node, wan, prune)
        }
        Command::Rtt { wan, targets } => rtt(&addr, wan, &targets),
    }
}

/// `catalog services|nodes|datacenters`.
fn catalog(addr: &str, command: CatalogCommand, datacenter: Option<String>) -> ExitCode {
    match command {
        CatalogCommand::Services {
            tags,
            node: Some(node),
        } => cli::catalog::node_services(addr, &node, tags, datacenter.as_deref()),
        CatalogCommand::Services { tags, node: None } => {
            cli::catalog::services(addr, tags, datacenter.as_deref())
        }
        CatalogCommand::Nodes {
            service,
            detailed,
            near,
            node_meta,
            filter,
        } => cli::catalog::nodes(
            addr,
            &cli::catalog::NodesOptions {
                service,
                detailed,
                near,
                datacenter,
                node_meta,
                filter,
            },
        ),
        CatalogCommand::Datacenters => cli::catalog::datacenters(addr),
    }
}

/// `debug`: durations in Go's spelling.
fn debug(
    addr: &str,
    duration: &str,
    interval: &str,
    output: Option<PathBuf>,
    archive: bool,
) -> ExitCode {
    match (
        duration.parse::<wire::GoDuration>(),
        interval.parse::<wire::GoDuration>(),
    ) {
        (Ok(duration), Ok(interval)) => cli::debug::debug(
            addr,
            &cli::debug::DebugOptions {
                duration: duration.0,
                interval: interval.0,
                output,
                archive,
            },
        ),
        _ => cli::fail("-duration and -interval take durations such as 30s or 2m"),
    }
}

/// `lock`: the flags read, then [`cli::lock::lock`].
fn lock(addr: &str, args: LockArgs) -> ExitCode {
    let timeout = match args
        .timeout
        .or(args.try_for)
        .map(|t| t.parse::<wire::GoDuration>())
    {
        None => None,
        Some(Ok(t)) => Some(t.0),
        Some(Err(e)) => return cli::fail(format!("Invalid -timeout: {e}")),
    };
    let options = cli::lock::LockOptions {
        limit: args.n,
        name: args.name,
        child_exit_code: args.child_exit_code,
        monitor_retry: args.monitor_retry,
        shell: args.shell,
        pass_stdin: args.pass_stdin,
        timeout,
        verbose: args.verbose,
        datacenter: args.datacenter,
    };
    match args.prefix_and_command.split_first() {
        Some((prefix, command)) => cli::lock::lock(addr, prefix, command, &options),
        None => cli::fail("Error! Missing prefix"),
    }
}

/// `watch`: prints the answer once, or runs the handler on every change until a signal.
fn watch(addr: &str, args: WatchArgs) -> ExitCode {
    let spec = dc_agent::watch::WatchSpec {
        kind: args.kind.unwrap_or_default(),
        key: args.key.unwrap_or_default(),
        prefix: args.prefix.unwrap_or_default(),
        service: args.service.unwrap_or_default(),
        tags: args.tag,
        passing_only: args.passingonly,
        state: args.state.unwrap_or_default(),
        name: args.name.unwrap_or_default(),
        datacenter: args.datacenter.unwrap_or_default(),
    };
    if let Err(e) = spec.path() {
        return cli::fail(e);
    }
    let handler = if args.handler.is_empty() {
        dc_agent::watch::Handler::Print
    } else {
        dc_agent::watch::Handler::Script {
            args: args.handler,
            shell: args.shell,
        }
    };
    let client = cli::client_with_timeout(addr, Some(std::time::Duration::from_secs(90)));
    let stop = std::sync::atomic::AtomicBool::new(false);
    match dc_agent::watch::run(&client, &spec, &handler, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::fail(format!("Error querying Consul agent: {e}")),
    }
}

/// `rtt [-wan] NODE [NODE]`, `rtt -wan [DC]`.
fn rtt(addr: &str, wan: bool, targets: &[String]) -> ExitCode {
    match targets {
        [] if wan => cli::catalog::rtt(addr, None),
        [dc] if wan && !dc.contains('.') => cli::catalog::rtt(addr, Some(dc)),
        [] => cli::fail("Error: a node name is required (`rtt NODE [NODE]`)"),
        nodes => cli::catalog::rtt_nodes(addr, wan, nodes),
    }
}

/// `exec`: the durations read, then [`cli::exec::exec`].
fn exec(addr: &str, args: ExecArgs) -> ExitCode {
    let (Ok(wait), Ok(wait_repl)) = (
        args.wait.parse::<wire::GoDuration>(),
        args.wait_repl.parse::<wire::GoDuration>(),
    ) else {
        return cli::fail("-wait and -wait-repl take durations such as 2s or 200ms");
    };
    if args.tag.is_some() && args.service.is_none() {
        return cli::fail("Cannot provide tag filter without service filter.");
    }
    let options = cli::exec::ExecOptions {
        node: args.node,
        service: args.service,
        tag: args.tag,
        wait: wait.0,
        wait_repl: wait_repl.0,
        prefix: args.prefix,
        shell: args.shell,
        datacenter: args.datacenter,
        verbose: args.verbose,
    };
    cli::exec::exec(addr, &args.command, &options)
}

/// `version`, in Consul's layout.
fn version() -> ExitCode {
    println!("Isthmus v{} (dc-agent)", env!("CARGO_PKG_VERSION"));
    println!(
        "Revision {}",
        option_env!("ISTHMUS_REVISION").unwrap_or("unknown")
    );
    println!("Build Date unknown");
    println!("Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 when speaking to compatible agents)");
    ExitCode::SUCCESS
}

/// `services register|deregister`.
fn services(addr: &str, command: ServicesCommand) -> ExitCode {
    match command {
        ServicesCommand::Register {
            name,
            id,
            tags,
            address,
            port,
            meta,
            files,
        } => cli::services::register(
            addr,
            &cli::services::ServiceFlags {
                name,
                id,
                tags,
                address,
                port,
                meta,
            },
            &files,
        ),
        ServicesCommand::Deregister { id, files } => {
            cli::services::deregister(addr, id.as_deref(), &files)
        }
    }
}

/// The agent address, token and TLS settings every verb uses (`-http-addr`, `-token`,
/// `-ca-file`, ..., and their `CONSUL_*` variables; flags win, as Consul's).
fn connection(cli: &Cli) -> Result<String, ExitCode> {
    let token = match (&cli.token, &cli.token_file) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(file)) => match std::fs::read_to_string(file) {
            Ok(token) => Some(token.trim().to_owned()),
            Err(e) => {
                return Err(cli::fail(format!(
                    "reading the token file {}: {e}",
                    file.display()
                )))
            }
        },
        (None, None) => std::env::var("CONSUL_HTTP_TOKEN").ok().or_else(|| {
            std::env::var("CONSUL_HTTP_TOKEN_FILE")
                .ok()
                .and_then(|file| std::fs::read_to_string(file).ok())
                .map(|token| token.trim().to_owned())
        }),
    };
    if let Some(token) = token {
        cli::set_token(token);
    }
    let addr = cli
        .http_addr
        .clone()
        .unwrap_or_else(dc_agent::client::default_http_addr);
    // Flags win over the environment, as Consul's.
    let env = dc_agent::client::ClientTls::from_env();
    let tls = dc_agent::client::ClientTls {
        ca_file: cli.ca_file.clone().or(env.ca_file),
        ca_path: cli.ca_path.clone().or(env.ca_path),
        client_cert: cli.client_cert.clone().or(env.client_cert),
        client_key: cli.client_key.clone().or(env.client_key),
        server_name: cli.tls_server_name.clone().or(env.server_name),
        ..env
    };
    cli::check_tls(&addr, tls).map_err(cli::fail)?;
    Ok(addr)
}

/// `kv ...`.
fn kv(addr: &str, command: KvCommand, datacenter: Option<String>) -> ExitCode {
    match command {
        KvCommand::Get {
            key,
            detailed,
            recurse,
            keys,
            separator,
            stale,
        } => cli::kv::get(
            addr,
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
            acquire,
            release,
            session,
        } => {
            let lock = match (acquire, release, session) {
                (false, false, _) => None,
                (true, true, _) => {
                    return cli::fail("Error! Cannot specify both -acquire and -release")
                }
                (_, _, None) => {
                    return cli::fail(
                        "Error! Missing -session (required with -acquire and -release)",
                    )
                }
                (acquire, _, Some(session)) => Some((acquire, session)),
            };
            match cas_index(cas, modify_index) {
                Ok(cas) => cli::kv::put(
                    addr,
                    &key,
                    value.as_deref(),
                    cli::kv::PutOptions { cas, flags, lock },
                    datacenter.as_deref(),
                ),
                Err(code) => code,
            }
        }
        KvCommand::Export { prefix } => cli::kv::export(addr, &prefix, datacenter.as_deref()),
        KvCommand::Import { data, prefix } => {
            cli::kv::import(addr, data.as_deref(), &prefix, datacenter.as_deref())
        }
        KvCommand::Delete {
            key,
            recurse,
            cas,
            modify_index,
        } => match cas_index(cas, modify_index) {
            Ok(cas) => cli::kv::delete(addr, &key, recurse, cas, datacenter.as_deref()),
            Err(code) => code,
        },
    }
}

/// `operator ...`.
fn operator(addr: &str, command: OperatorCommand) -> ExitCode {
    match command {
        OperatorCommand::Raft {
            command: RaftCommand::ListPeers { stale },
        } => cli::operator::list_peers(addr, stale),
        OperatorCommand::Raft {
            command: RaftCommand::RemovePeer { id, address },
        } => cli::operator::remove_peer(addr, id.as_deref(), address.as_deref()),
        OperatorCommand::Raft {
            command: RaftCommand::TransferLeader { id },
        } => cli::operator::transfer_leader(addr, id.as_deref()),
        OperatorCommand::Autopilot {
            command: AutopilotCommand::GetConfig,
        } => cli::operator::autopilot_get(addr),
        OperatorCommand::Usage {
            command: UsageCommand::Instances,
        } => cli::operator::usage_instances(addr),
        OperatorCommand::Autopilot {
            command: AutopilotCommand::State,
        } => cli::operator::autopilot_state(addr),
        OperatorCommand::Autopilot {
            command:
                AutopilotCommand::SetConfig {
                    cleanup_dead_servers,
                    max_trailing_logs,
                    min_quorum,
                    last_contact_threshold,
                    server_stabilization_time,
                    disable_upgrade_migration,
                    redundancy_zone_tag,
                    upgrade_version_tag,
                },
        } => cli::operator::autopilot_set(
            addr,
            &cli::operator::AutopilotFlags {
                cleanup_dead_servers,
                max_trailing_logs,
                min_quorum,
                last_contact_threshold,
                server_stabilization_time,
                disable_upgrade_migration,
                redundancy_zone_tag,
                upgrade_version_tag,
            },
        ),
        OperatorCommand::Federation {
            command: FederationCommand::RemoveDc { datacenter },
        } => cli::operator::remove_dc(addr, &datacenter),
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

fn validate(paths: &[PathBuf], config_format: Option<&str>, quiet: bool) -> ExitCode {
    let format = match config_format
        .map(dc_agent::assemble::Format::parse)
        .transpose()
    {
        Ok(format) => format,
        Err(e) => return cli::fail(e),
    };
    let mut sources = dc_agent::assemble::Sources {
        format,
        ..Default::default()
    };
    for path in paths {
        if path.is_dir() {
            sources.dirs.push(path.clone());
        } else {
            sources.files.push(path.clone());
        }
    }
    let checked = dc_agent::config::load_sources(&sources).and_then(|(loaded, warnings)| {
        loaded
            .validate()
            .map(|validated| (warnings, validated.warnings))
    });
    match checked {
        Ok((warnings, more)) => {
            for warning in warnings.iter().chain(&more) {
                eprintln!("==> {warning}");
            }
            if !quiet {
                println!("Configuration is valid!");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("Config validation failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the configuration from its sources, `-dev` defaults filled in.
fn load_config(
    sources: &dc_agent::assemble::Sources,
    dev: bool,
) -> Result<(wire::agent_config::AgentConfig, Vec<String>, String), String> {
    let (loaded, warnings) = dc_agent::config::load_sources(sources).map_err(|e| e.to_string())?;
    let mut config = loaded.config;
    if dev {
        dc_agent::run::apply_dev_defaults(&mut config);
    }
    Ok((config, warnings, loaded.path.display().to_string()))
}

fn agent(args: &[String]) -> ExitCode {
    let parsed = match dc_agent::assemble::flags::parse(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if parsed.help {
        cli::exit_quietly_on_broken_pipe();
        print!("{}", dc_agent::assemble::flags::usage());
        return ExitCode::SUCCESS;
    }
    let dev = parsed.dev;
    let (config, warnings, origin) = match load_config(&parsed.sources, dev) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("==> {e}");
            return ExitCode::from(1);
        }
    };
    let reload: dc_agent::run::ConfigSource = {
        let sources = parsed.sources.clone();
        std::sync::Arc::new(move || load_config(&sources, dev).map(|(config, _, _)| config))
    };
    let level = config
        .log_level
        .clone()
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},openraft=error,hickory_server=warn"))
    });
    // A log that cannot be written (its pipe closed) is dropped, never fatal and never a
    // reason to stop answering signals. `/v1/agent/monitor` gets its own copy, down to
    // debug for Isthmus itself, whatever the log's level.
    let logs = dc_agent::monitor::LogStream::new();
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let monitor_filter = tracing_subscriber::EnvFilter::new(
            "info,dc_agent=trace,openraft=warn,hickory_server=warn",
        );
        let _ = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .log_internal_errors(false)
                    .with_filter(filter),
            )
            .with(logs.layer().with_filter(monitor_filter))
            .try_init();
    }
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let pid_file = config.pid_file.clone().map(PathBuf::from);
    if let Some(path) = &pid_file {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Err(e) = std::fs::create_dir_all(parent) {
                return cli::fail(format!(
                    "creating the PID file's directory {}: {e}",
                    parent.display()
                ));
            }
        }
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
        dev,
        origin,
        reload,
        logs,
    }));
    // Background threads (the log writer, blocking tasks) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Some(path) = &pid_file {
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
