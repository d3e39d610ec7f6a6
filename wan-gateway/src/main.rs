//! `wan-gateway`: the Isthmus WAN gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Isthmus WAN gateway.
#[derive(Parser)]
#[command(name = "wan-gateway", version, about)]
struct Cli {
    /// Run with this config file (as `run --config FILE`).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The config file (`gateway.toml`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a gateway config file (`gateway.toml`) and the TLS material it names.
    Validate {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Exit codes: 0 success, 1 failure, 2 bad command line.
fn main() -> ExitCode {
    let cli = Cli::parse_from(wire::flags::normalize_consul_flags(std::env::args()));
    let command = match (cli.command, cli.config) {
        (Some(command), _) => command,
        (None, Some(config)) => Command::Run { config },
        (None, None) => {
            eprintln!(
                "wan-gateway: give a config file: `wan-gateway --config gateway.toml` (see --help)"
            );
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Run { config } => run(&config),
        Command::Validate { config } => match wan_gateway::config::load(&config) {
            Ok(validated) => {
                println!(
                    "Configuration is valid! gateway {} of {} on {}, {} local server(s), {} remote gateway(s)",
                    validated.config.node_name,
                    validated.config.datacenter,
                    validated.listen,
                    validated.servers.len(),
                    validated.remote_gateways.len()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("Config validation failed: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let config = match wan_gateway::config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("wan-gateway: {error}");
            return ExitCode::FAILURE;
        }
    };
    let level = config.config.log_level.clone();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .log_internal_errors(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("wan-gateway: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(wan_gateway::run::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wan-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
