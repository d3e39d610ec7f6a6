//! `dc-agent`: the Isthmus agent and its operator CLI. Consul's flag spelling works
//! (`-config-file=F`) as does the GNU one (`--config-file F`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Isthmus agent and its operator CLI.
#[derive(Parser)]
#[command(name = "dc-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

/// Exit codes: 0 success, 1 failure, 2 bad command line.
fn main() -> ExitCode {
    let cli = Cli::parse_from(wire::flags::normalize_consul_flags(std::env::args()));
    match cli.command {
        Command::Validate { files, quiet } => {
            let mut failed = false;
            for file in &files {
                let checked =
                    dc_agent::config::load_file(file).and_then(|loaded| loaded.validate());
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
        Command::Keygen => match dc_agent::keygen::new_gossip_key() {
            Ok(key) => {
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(_) => {
                eprintln!("error: the system random number generator failed");
                ExitCode::FAILURE
            }
        },
    }
}
