//! `topology`: check and render an Isthmus federation declared in one TOML file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ring::rand::SecureRandom as _;
use topology::diagnostic::Severity;
use topology::model::{CaSource, GossipKeySource};
use topology::render::{self, Sources};
use topology::Topology;

mod launch;
mod provision;

/// Declare an Isthmus federation in one TOML file; check it and render every node's config.
#[derive(Parser)]
#[command(name = "topology", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a topology file and print a summary of datacenters, nodes, addresses and ports.
    Check {
        /// The topology file.
        file: PathBuf,
    },
    /// Write every node's config, certificates, gossip key, systemd unit and a prometheus.yml.
    Render {
        /// The topology file.
        file: PathBuf,
        /// Output directory (default: the file's `state_dir`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Render what is missing, start every server on this machine and wait for each
    /// datacenter's leader. In the foreground, Ctrl-C stops everything.
    Up {
        /// The topology file.
        file: PathBuf,
        /// Return once every datacenter has a leader, leaving the agents running.
        #[arg(long)]
        detach: bool,
    },
    /// Show each datacenter's leader, term, servers and health (exit 1 unless healthy).
    Status {
        /// The topology file.
        file: PathBuf,
    },
    /// Stop every agent gracefully; all data is kept.
    Down {
        /// The topology file.
        file: PathBuf,
    },
}

/// Exit codes: 0 success, 1 the file or the render was refused, 2 bad command line.
fn main() -> ExitCode {
    let cli = Cli::parse_from(wire::flags::normalize_consul_flags(std::env::args()));
    // Output cut short (`status | head -3`) ends the command quietly; `up`, which holds the
    // federation's processes, keeps Rust's default and stays up.
    if !matches!(cli.command, Command::Up { .. }) {
        // SAFETY: sets a signal disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Check { file } => check(&file),
        Command::Render { file, out } => render_command(&file, out.as_deref()),
        Command::Up { file, detach } => with_topology(&file, |topology, out| {
            render_command(&file, Some(out))?;
            launch::up(topology, out, detach)
        }),
        Command::Status { file } => with_topology(&file, launch::status),
        Command::Down { file } => with_topology(&file, launch::down),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads and validates the file, printing every diagnostic; `None` when it has errors.
fn load(file: &Path) -> Result<Option<Topology>> {
    let source = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("federation");
    let shown = file.display().to_string();
    match topology::parse(&source, stem) {
        Ok((topology, warnings)) => {
            for warning in &warnings {
                eprintln!("{}", warning.render(&shown, &source).trim_end());
            }
            Ok(Some(topology))
        }
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{}", diagnostic.render(&shown, &source).trim_end());
            }
            let n_errors = diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            eprintln!("{shown}: {n_errors} error(s); nothing was changed");
            Ok(None)
        }
    }
}

/// Loads the file and runs `action` with its state directory.
fn with_topology(
    file: &Path,
    action: impl FnOnce(&Topology, &Path) -> Result<ExitCode>,
) -> Result<ExitCode> {
    let Some(topology) = load(file)? else {
        return Ok(ExitCode::FAILURE);
    };
    let out = from_file_dir(file, &topology.state_dir);
    action(&topology, &out)
}

fn check(file: &Path) -> Result<ExitCode> {
    let Some(topology) = load(file)? else {
        return Ok(ExitCode::FAILURE);
    };
    print!(
        "{}",
        topology::summary::summary(&file.display().to_string(), &topology)
    );
    Ok(ExitCode::SUCCESS)
}

/// Relative paths in a topology file are relative to the file's directory
/// (`examples/` + `../.isthmus/x` is shown as `.isthmus/x`).
fn from_file_dir(file: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    let joined = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join(path),
        _ => path.to_owned(),
    };
    let mut normal = PathBuf::new();
    for component in joined.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(
                    normal.components().next_back(),
                    Some(std::path::Component::Normal(_))
                ) =>
            {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    if normal.as_os_str().is_empty() {
        normal.push(".");
    }
    normal
}

fn render_command(file: &Path, out: Option<&Path>) -> Result<ExitCode> {
    let Some(topology) = load(file)? else {
        return Ok(ExitCode::FAILURE);
    };
    let out = out.map_or_else(|| from_file_dir(file, &topology.state_dir), Path::to_owned);
    let mut sources = Sources::default();
    if let CaSource::Dir(dir) = &topology.ca {
        let dir = from_file_dir(file, dir);
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path)
                .with_context(|| format!("reading {} (named by tls.ca_dir)", path.display()))
        };
        sources.ca = Some((read("ca.pem")?, read("ca-key.pem")?));
    }
    if let GossipKeySource::File(path) = &topology.gossip_key {
        let path = from_file_dir(file, path);
        sources.gossip_key_file = Some(fs::read_to_string(&path).with_context(|| {
            format!(
                "reading the gossip key {} (named by gossip.key_file)",
                path.display()
            )
        })?);
    }
    let existing = |relative: &Path| fs::read_to_string(out.join(relative)).ok();
    let plan = render::plan(
        &topology,
        &sources,
        &existing,
        &fresh_gossip_key()?,
        time::OffsetDateTime::now_utc(),
    )
    .with_context(|| format!("rendering into {}", out.display()))?;
    plan.write_to(&out)?;
    for note in &plan.notes {
        println!("{note}");
    }
    let n_nodes: usize = topology.datacenters.iter().map(|dc| dc.nodes.len()).sum();
    println!(
        "rendered {} files for {n_nodes} nodes into {}",
        plan.files.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// 32 random bytes in base64, as `consul keygen` prints.
fn fresh_gossip_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    Ok(wire::gossip_key::encode(&bytes))
}
