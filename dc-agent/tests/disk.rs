//! Disk faults with a real filesystem: a server whose data directory fills up. Writes are
//! refused with the system's own reason, the server stops with a clear error (Raft cannot go
//! on), and once there is room again it starts from its data with every acknowledged write.
//!
//! Needs root (it mounts a 24 MiB tmpfs); `scripts/test.sh` runs the suite as root in CI.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::flag_agent::FlagAgent;

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed ({status}): this test needs root, as CI runs it"
        );
        Tmpfs(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn server(logs: &Path, data: &Path) -> FlagAgent {
    FlagAgent::start(
        logs,
        "f1",
        "127.178.0.1",
        &[
            "-server",
            "-bootstrap-expect=1",
            "-node=f1",
            "-bind=127.178.0.1",
            "-client=127.178.0.1",
            &format!("-data-dir={}", data.display()),
        ],
    )
}

#[test]
fn a_full_disk_stops_the_server_clearly_and_it_resumes_once_there_is_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = Tmpfs::mount(&dir.path().join("disk"), "24m");
    let data = disk.0.join("data");
    let mut agent = server(dir.path(), &data);
    agent.wait_for_leader(Duration::from_secs(30));

    // Leave a few MiB, then write 100 KiB values until the disk is full.
    let filler = disk.0.join("filler");
    std::fs::write(&filler, vec![0u8; 19 * 1024 * 1024]).expect("filler");
    let value = "v".repeat(100 * 1024);
    let mut acknowledged = Vec::new();
    let mut refusal = None;
    for i in 0..400 {
        let key = format!("big/{i:03}");
        let answer = agent
            .client()
            .put(&format!("/v1/kv/{key}"), value.as_bytes());
        match answer {
            Ok(r) if r.status == 200 && r.text() == "true" => acknowledged.push(key),
            Ok(r) => {
                refusal = Some((r.status, r.text()));
                break;
            }
            Err(e) => {
                refusal = Some((0, e));
                break;
            }
        }
    }
    let (status, text) = refusal.expect("the disk filled up");
    assert_eq!(status, 500, "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(
        acknowledged.len() >= 5,
        "{} writes before it filled",
        acknowledged.len()
    );

    // Raft cannot go on: the agent stops, saying why, with a failing exit status.
    agent.wait_exit(
        Duration::from_secs(30),
        "the server did not stop on a full disk",
    );
    let exit = agent.exited().expect("exited");
    assert!(!exit.success(), "{exit}");
    assert!(
        agent.log().contains("Raft stopped on a fatal error")
            && agent.log().contains("No space left on device"),
        "{}",
        agent.log()
    );

    // Room again: it starts from its data, every acknowledged write there, and writes on.
    std::fs::remove_file(&filler).expect("free the disk");
    let agent = server(dir.path(), &data);
    agent.wait_for_leader(Duration::from_secs(30));
    for key in &acknowledged {
        let read = agent
            .client()
            .get(&format!("/v1/kv/{key}?raw"))
            .expect("read");
        assert_eq!(read.status, 200, "{key} lost");
        assert_eq!(read.body.len(), value.len(), "{key}");
    }
    let write = agent.client().put("/v1/kv/after", b"room").expect("write");
    assert_eq!((write.status, write.text().as_str()), (200, "true"));
}
