//! `debug`: what an agent knows, gathered into one file to hand to whoever helps, as
//! `consul debug` does: the agent's configuration and members (`agent.json`,
//! `members.json`), the host (`host.json`), metrics every interval (`<n>/metrics.json`) and
//! the agent's log lines for the whole capture (`consul.log`). The result is a `.tar.gz`
//! archive, as Consul's, or a directory with `-archive=false`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{check, client, fail};

/// What `debug` captures and where it goes.
#[derive(Debug, Clone)]
pub struct DebugOptions {
    /// How long to capture for (`-duration`, default 2m).
    pub duration: Duration,
    /// How often to sample metrics (`-interval`, default 30s).
    pub interval: Duration,
    /// Where (`-output`; default `consul-debug-<unix time>`).
    pub output: Option<PathBuf>,
    /// Write a `.tar.gz` archive (default) or leave the directory.
    pub archive: bool,
}

fn write_json(dir: &Path, name: &str, body: &[u8]) -> Result<(), String> {
    let pretty = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_vec_pretty(&v).ok())
        .unwrap_or_else(|| body.to_vec());
    std::fs::write(dir.join(name), pretty).map_err(|e| format!("writing {name}: {e}"))
}

/// `debug [-duration=2m] [-interval=30s] [-output=PATH] [-archive=true]`.
pub fn debug(addr: &str, options: &DebugOptions) -> ExitCode {
    if options.interval.is_zero() || options.duration < options.interval {
        return fail("-duration must be at least -interval, and -interval more than 0");
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = options
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("consul-debug-{stamp}")));
    if dir.exists() {
        return fail(format!(
            "Output directory already exists: {}",
            dir.display()
        ));
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return fail(format!("Could not create output directory: {e}"));
    }
    let api = client(addr);
    for (name, path) in [
        ("agent.json", "/v1/agent/self"),
        ("members.json", "/v1/agent/members"),
        ("host.json", "/v1/agent/host"),
    ] {
        match check(api.get(path), addr) {
            Ok(response) => {
                if let Err(e) = write_json(&dir, name, &response.body) {
                    return fail(e);
                }
            }
            Err(e) => return fail(format!("Error querying the agent ({path}): {e}")),
        }
    }
    println!("==> Capturing static information...");
    println!("==> Beginning capture interval (0)");
    // The log for the whole capture, from a monitor stream read on its own thread.
    let log_path = dir.join("consul.log");
    let monitor_addr = addr.to_owned();
    let until = Instant::now() + options.duration;
    let logger = std::thread::spawn(move || capture_log(&monitor_addr, &log_path, until));
    let mut n = 0;
    let started = Instant::now();
    loop {
        let sample = dir.join(n.to_string());
        if let Err(e) = std::fs::create_dir_all(&sample) {
            return fail(format!("Could not create {}: {e}", sample.display()));
        }
        if let Ok(response) = check(api.get("/v1/agent/metrics"), addr) {
            let _ = write_json(&sample, "metrics.json", &response.body);
        }
        n += 1;
        let next = started + options.interval * n;
        if next > until {
            break;
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        println!("==> Beginning capture interval ({n})");
    }
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    let _ = logger.join();
    if !options.archive {
        println!("Saved debug directory: {}", dir.display());
        return ExitCode::SUCCESS;
    }
    let archive = dir.with_extension("tar.gz");
    match write_tar(&dir, &archive).and_then(|()| {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))
    }) {
        Ok(()) => {
            println!("Saved debug archive: {}", archive.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error creating the archive: {e}")),
    }
}

fn capture_log(addr: &str, path: &Path, until: Instant) {
    let left = until.saturating_duration_since(Instant::now());
    let client = super::client_with_timeout(addr, Some(left));
    let Ok((_, mut reader)) = client.stream("/v1/agent/monitor?loglevel=debug") else {
        return;
    };
    let Ok(mut file) = std::fs::File::create(path) else {
        return;
    };
    // Ends when the capture's time is up (the request's timeout) or the agent stops.
    let _ = std::io::copy(&mut reader, &mut file);
}

/// Writes `dir`'s files into a gzipped POSIX (ustar) archive, paths relative to `dir`'s
/// parent.
fn write_tar(dir: &Path, archive: &Path) -> Result<(), String> {
    use std::io::Write;
    let file = std::fs::File::create(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut out = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let root = dir.file_name().map(PathBuf::from).unwrap_or_default();
    let mut files = Vec::new();
    collect(dir, &root, &mut files).map_err(|e| e.to_string())?;
    files.sort();
    for (name, path) in files {
        let body = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let header = tar_header(&name, body.len() as u64)?;
        out.write_all(&header).map_err(|e| e.to_string())?;
        out.write_all(&body).map_err(|e| e.to_string())?;
        let padding = (512 - body.len() % 512) % 512;
        out.write_all(&vec![0; padding])
            .map_err(|e| e.to_string())?;
    }
    out.write_all(&[0; 1024]).map_err(|e| e.to_string())?;
    let file = out.finish().map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())
}

fn collect(dir: &Path, prefix: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = prefix.join(entry.file_name());
        if path.is_dir() {
            collect(&path, &name, out)?;
        } else {
            out.push((name.display().to_string(), path));
        }
    }
    Ok(())
}

fn tar_header(name: &str, size: u64) -> Result<[u8; 512], String> {
    let mut header = [0u8; 512];
    if name.len() > 100 {
        return Err(format!("{name}: path too long for the archive"));
    }
    header[..name.len()].copy_from_slice(name.as_bytes());
    let mut field = |at: usize, width: usize, text: String| {
        let bytes = text.as_bytes();
        let n = bytes.len().min(width - 1);
        header[at..at + n].copy_from_slice(&bytes[..n]);
    };
    field(100, 8, format!("{:07o}", 0o644));
    field(108, 8, format!("{:07o}", 0));
    field(116, 8, format!("{:07o}", 0));
    field(124, 12, format!("{size:011o}"));
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    field(136, 12, format!("{mtime:011o}"));
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
    Ok(header)
}
