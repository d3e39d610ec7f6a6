//! `wan-gateway`: the Isthmus WAN gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Isthmus WAN gateway.
#[derive(Parser)]
#[command(name = "wan-gateway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    match cli.command {
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
