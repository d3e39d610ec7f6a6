//! `pki`: make and inspect Isthmus certificates, as `consul tls` does.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use pki::{CertRequest, CertificateAuthority, Role, Validity};
use time::OffsetDateTime;

/// Make and inspect the certificates of an Isthmus federation.
#[derive(Parser)]
#[command(name = "pki", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Issue node certificates.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Show a certificate's subject, SANs, role, datacenter and expiry.
    Inspect {
        /// A PEM certificate file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create a CA: writes ca.pem and ca-key.pem (mode 0600) into --out.
    Create {
        /// The federation's DNS domain.
        #[arg(long, default_value = "consul")]
        domain: String,
        /// Days of validity.
        #[arg(long, default_value_t = 1825)]
        days: u32,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Issue a certificate for a server, client agent or gateway.
    Create(CertCreate),
}

#[derive(Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("role").required(true).multiple(false).args(["server", "client", "gateway"])))]
struct CertCreate {
    /// A server certificate: server.<dc>.<domain> and <node>.server.<dc>.<domain>.
    #[arg(long)]
    server: bool,
    /// A client agent certificate: client.<dc>.<domain>.
    #[arg(long)]
    client: bool,
    /// A gateway certificate: gateway.<dc>.<domain>.
    #[arg(long)]
    gateway: bool,
    /// Datacenter of the holder.
    #[arg(long)]
    dc: String,
    /// Node name of the holder, added as <node>.<role>.<dc>.<domain>.
    #[arg(long)]
    node: Option<String>,
    /// Extra IP SAN (repeatable); 127.0.0.1 is always included.
    #[arg(long = "ip")]
    ips: Vec<IpAddr>,
    /// Extra DNS SAN (repeatable); localhost is always included.
    #[arg(long = "dns")]
    dns_names: Vec<String>,
    /// The federation's DNS domain.
    #[arg(long, default_value = "consul")]
    domain: String,
    /// Days of validity.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Directory holding ca.pem and ca-key.pem.
    #[arg(long)]
    ca: PathBuf,
    /// Directory to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    // Output cut short (`pki inspect ... | head -1`) ends the command quietly.
    // SAFETY: sets a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse_from(wire::flags::normalize_consul_flags(std::env::args()));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    match cli.command {
        Command::Ca {
            command: CaCommand::Create { domain, days, out },
        } => {
            let ca = CertificateAuthority::create(&domain, Validity::days_from(now, days)?)?;
            let cert_path = out.join("ca.pem");
            let key_path = out.join("ca-key.pem");
            for path in [&cert_path, &key_path] {
                if path.exists() {
                    bail!("{} already exists; a CA is never replaced silently: remove it or choose another --out", path.display());
                }
            }
            fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            write_file(&cert_path, ca.cert_pem(), 0o644)?;
            write_file(&key_path, ca.key_pem(), 0o600)?;
            println!("==> Saved {}", cert_path.display());
            println!("==> Saved {}", key_path.display());
        }
        Command::Cert {
            command: CertCommand::Create(args),
        } => create_cert(args, now)?,
        Command::Inspect { file } => {
            let pem = fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let info =
                pki::inspect_pem(&pem).with_context(|| format!("reading {}", file.display()))?;
            print!("{}", render_inspect(&info, now));
        }
    }
    Ok(())
}

fn create_cert(args: CertCreate, now: OffsetDateTime) -> Result<()> {
    let role = if args.server {
        Role::Server
    } else if args.client {
        Role::Client
    } else {
        Role::Gateway
    };
    let ca_cert_path = args.ca.join("ca.pem");
    let ca_key_path = args.ca.join("ca-key.pem");
    let ca_cert = fs::read_to_string(&ca_cert_path).with_context(|| {
        format!(
            "reading CA certificate {} (create one with `pki ca create --out {}`)",
            ca_cert_path.display(),
            args.ca.display()
        )
    })?;
    let ca_key = fs::read_to_string(&ca_key_path)
        .with_context(|| format!("reading CA key {}", ca_key_path.display()))?;
    let ca = CertificateAuthority::from_pem(&ca_cert, &ca_key)
        .with_context(|| format!("loading the CA from {}", args.ca.display()))?;
    let request = CertRequest {
        role,
        datacenter: args.dc.clone(),
        domain: args.domain.clone(),
        node: args.node,
        ips: args.ips,
        dns_names: args.dns_names,
    };
    let issued = ca.issue(&request, Validity::days_from(now, args.days)?)?;
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let prefix = format!("{}-{}-{}", args.dc, role, args.domain);
    let index = (0..)
        .find(|n| !args.out.join(format!("{prefix}-{n}.pem")).exists())
        .unwrap_or(0);
    let cert_path = args.out.join(format!("{prefix}-{index}.pem"));
    let key_path = args.out.join(format!("{prefix}-{index}-key.pem"));
    write_file(&cert_path, &issued.cert_pem, 0o644)?;
    write_file(&key_path, &issued.key_pem, 0o600)?;
    println!(
        "==> Using {} and {}",
        ca_cert_path.display(),
        ca_key_path.display()
    );
    println!("==> Saved {}", cert_path.display());
    println!("==> Saved {}", key_path.display());
    Ok(())
}

fn render_inspect(info: &pki::CertInfo, now: OffsetDateTime) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| out.push_str(&format!("{label:<12} {value}\n"));
    line("Subject:", &info.subject);
    line("Issuer:", &info.issuer);
    line("Serial:", &info.serial);
    line("CA:", if info.is_ca { "yes" } else { "no" });
    match info.identities.as_slice() {
        [] => line(
            "Role:",
            if info.is_ca {
                "certificate authority"
            } else {
                "none (no <role>.<dc>.<domain> SAN)"
            },
        ),
        identities => {
            for identity in identities {
                line("Role:", identity.role.as_str());
                line("Datacenter:", &identity.datacenter);
                line("Domain:", &identity.domain);
                if let Some(node) = &identity.node {
                    line("Node:", node);
                }
            }
        }
    }
    line(
        "SANs:",
        &if info.sans.is_empty() {
            "none".to_owned()
        } else {
            info.sans.join(", ")
        },
    );
    line("Not before:", &pki::format_time(info.not_before));
    let remaining = info.not_after - now;
    let expiry = if remaining.is_negative() {
        format!(
            "{} (EXPIRED {} days ago)",
            pki::format_time(info.not_after),
            days_rounded(-remaining)
        )
    } else {
        format!(
            "{} (in {} days)",
            pki::format_time(info.not_after),
            days_rounded(remaining)
        )
    };
    line("Not after:", &expiry);
    out
}

/// Whole days, rounded to the nearest: a 365-day certificate shows "in 365 days" when new.
fn days_rounded(span: time::Duration) -> i64 {
    (span.whole_seconds() + 43_200) / 86_400
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}
