//! Services and checks registered through `/v1/agent`, kept in the data directory so an
//! agent that restarts registers them again (Consul's `services/` and `checks/`
//! directories). Each is stored as its JSON registration body, in a file named by the SHA-256
//! of its ID (any ID length fits a file name), written to a temporary file and renamed into
//! place. A service's checks are stored as checks of their own, so removing one sticks.

use std::io;
use std::path::{Path, PathBuf};

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A service registration (`AgentServiceRegistration`).
    Service,
    /// A check registration (`AgentCheckRegistration`).
    Check,
    /// A TTL check's last status (Consul's `checks/state/`): [`CheckStateRecord`].
    CheckState,
    /// Maintenance mode, of the node or a service: [`MaintenanceRecord`].
    Maintenance,
}

/// Maintenance mode turned on through `/v1/agent/maintenance` or
/// `/v1/agent/service/maintenance/<id>`, kept so a restarted agent is still in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MaintenanceRecord {
    /// The service in maintenance; empty for the node.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// The operator's reason.
    pub reason: String,
}

/// A TTL check's status as last set through `/v1/agent/check/pass|warn|fail`, kept so a
/// restarted agent reports it again until the TTL would have run out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckStateRecord {
    /// The check.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// `passing`, `warning` or `critical`.
    pub status: wire::records::HealthStatus,
    /// Its output.
    pub output: String,
    /// Unix milliseconds when the TTL runs out.
    pub expires_ms: u64,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::Check => "checks",
            Kind::CheckState => "check-state",
            Kind::Maintenance => "maintenance",
        }
    }
}

/// The directory of persisted registrations.
#[derive(Debug, Clone)]
pub struct Persisted {
    dir: PathBuf,
}

fn file_name(id: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, id.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Distinguishes the temporary files of concurrent saves.
static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Persisted {
    /// Registrations under `<data_dir>/agent/`.
    pub fn new(data_dir: &Path) -> Persisted {
        Persisted {
            dir: data_dir.join("agent"),
        }
    }

    fn path(&self, kind: Kind, id: &str) -> PathBuf {
        self.dir
            .join(kind.dir())
            .join(format!("{}.json", file_name(id)))
    }

    /// Stores `body` as the registration of `id`, replacing any earlier one.
    pub fn save(&self, kind: Kind, id: &str, body: &[u8]) -> io::Result<()> {
        let path = self.path(kind, id);
        let dir = self.dir.join(kind.dir());
        std::fs::create_dir_all(&dir)?;
        let save = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temporary = path.with_extension(format!("json.tmp{save}"));
        std::fs::write(&temporary, body)?;
        std::fs::File::open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(&dir)?.sync_all()
    }

    /// The stored record of `id`, if there is one.
    pub fn read(&self, kind: Kind, id: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(kind, id)).ok()
    }

    /// Forgets the registration of `id`, if there is one.
    pub fn remove(&self, kind: Kind, id: &str) {
        let path = self.path(kind, id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "could not remove a persisted registration; it will come back at restart");
            }
        }
    }

    /// Every stored registration of `kind`, in file-name order, as (file, body).
    pub fn load(&self, kind: Kind) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = self.dir.join(kind.dir());
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not read persisted registrations");
                return Vec::new();
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|path| match std::fs::read(&path) {
                Ok(body) => Some((path, body)),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "could not read a persisted registration");
                    None
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_registrations_load_back_and_removed_ones_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Persisted::new(dir.path());
        assert!(store.load(Kind::Service).is_empty());
        store
            .save(Kind::Service, "web/1", br#"{"Name":"web"}"#)
            .expect("save");
        let long = "x".repeat(1000);
        store
            .save(Kind::Service, &long, br#"{"Name":"long"}"#)
            .expect("a long ID fits a file name");
        store.remove(Kind::Service, &long);
        store
            .save(Kind::Service, "db", br#"{"Name":"db"}"#)
            .expect("save");
        store
            .save(Kind::Service, "web/1", br#"{"Name":"web","Port":80}"#)
            .expect("replace");
        store.save(Kind::Check, "db", b"{}").expect("save");
        let mut bodies: Vec<Vec<u8>> = store
            .load(Kind::Service)
            .into_iter()
            .map(|(_, body)| body)
            .collect();
        bodies.sort();
        assert_eq!(
            bodies,
            vec![
                br#"{"Name":"db"}"#.to_vec(),
                br#"{"Name":"web","Port":80}"#.to_vec()
            ]
        );
        store.remove(Kind::Service, "web/1");
        store.remove(Kind::Service, "never-there");
        assert_eq!(store.load(Kind::Service).len(), 1);
        assert_eq!(store.load(Kind::Check).len(), 1);
    }
}
