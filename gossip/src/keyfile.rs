//! The keyring file, `<data_dir>/serf/local.keyring` as Consul keeps it: a JSON array of the
//! installed keys (base64), the primary first. Written at first start from `encrypt` and
//! after every keyring operation, so a restarted agent keeps rotated keys; once it exists,
//! `encrypt` is only checked against it.

use std::io;
use std::path::{Path, PathBuf};

/// Where an agent keeps its keyring.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("serf").join("local.keyring")
}

/// The keys in the file, or None when there is no file.
pub fn load(path: &Path) -> Result<Option<Vec<String>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading the keyring {}: {e}", path.display())),
    };
    let keys: Vec<String> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "the keyring {} is not a JSON list of keys: {e} (line {}, column {}); fix or remove it",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    if keys.is_empty() {
        return Err(format!(
            "the keyring {} lists no key; remove it to start again from `encrypt`",
            path.display()
        ));
    }
    Ok(Some(keys))
}

/// Writes the keys (primary first), readable by the agent's user only.
pub fn save(path: &Path, keys: &[String]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temporary = path.with_extension("keyring.tmp");
    let body = serde_json::to_vec(keys).map_err(io::Error::other)?;
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary)?;
        file.write_all(&body)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A keyring operation (`dc-agent keyring`, `/v1/operator/keyring`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyOp {
    /// Report the installed keys.
    List,
    /// Install a key for opening packets.
    Install(String),
    /// Make an installed key the primary.
    Use(String),
    /// Remove an installed key other than the primary.
    Remove(String),
}

/// The keyring both gossip pools of an agent seal and open with, changed in place by
/// keyring operations and written to its file after each change.
#[derive(Clone)]
pub struct SharedKeyring {
    ring: std::sync::Arc<parking_lot::RwLock<super::keyring::Keyring>>,
    file: Option<PathBuf>,
    verify: Verify,
}

/// Consul's `encrypt_verify_incoming` and `encrypt_verify_outgoing` (both on by default):
/// with either off, encryption can be turned on in a running datacenter by rolling
/// restarts (first accept and send plaintext, then send sealed, then refuse plaintext).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verify {
    /// Refuse packets that are not sealed with an installed key.
    pub incoming: bool,
    /// Seal what is sent.
    pub outgoing: bool,
}

impl Default for Verify {
    fn default() -> Verify {
        Verify {
            incoming: true,
            outgoing: true,
        }
    }
}

impl SharedKeyring {
    /// A keyring kept in `file` (none: in memory only).
    pub fn new(ring: super::keyring::Keyring, file: Option<PathBuf>) -> SharedKeyring {
        SharedKeyring {
            ring: std::sync::Arc::new(parking_lot::RwLock::new(ring)),
            file,
            verify: Verify::default(),
        }
    }

    /// The same keyring with `verify` settings.
    pub fn with_verify(mut self, verify: Verify) -> SharedKeyring {
        self.verify = verify;
        self
    }

    /// Whether packets are sealed, and unsealed ones refused.
    pub fn verify(&self) -> Verify {
        self.verify
    }

    /// The keyring, to seal and open with.
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, super::keyring::Keyring> {
        self.ring.read()
    }

    /// The installed keys, the primary first.
    pub fn keys(&self) -> Vec<String> {
        self.read().list()
    }

    /// Applies `op` and writes the file when it changed something, under the lock, so
    /// that memory and file never disagree: a change the file does not take is undone.
    /// Removing a key that is not installed is not an error (operations are repeated).
    pub fn apply(&self, op: &KeyOp) -> Result<(), String> {
        use super::keyring::KeyringError;
        let mut ring = self.ring.write();
        let before = ring.clone();
        let result = match op {
            KeyOp::List => Ok(()),
            KeyOp::Install(key) => ring.install(key),
            KeyOp::Use(key) => ring.use_key(key),
            KeyOp::Remove(key) => match ring.remove(key) {
                Err(KeyringError::NotInstalled) => Ok(()),
                other => other,
            },
        };
        result.map_err(|e| e.to_string())?;
        let after = ring.list();
        if after == before.list() {
            return Ok(());
        }
        if let Some(file) = &self.file {
            if let Err(e) = save(file, &after) {
                *ring = before;
                return Err(format!(
                    "writing the keyring {}: {e}; nothing changed",
                    file.display()
                ));
            }
        }
        Ok(())
    }
}

/// The agent's keyring at start: the keyring file in `data_dir` once there is one (keys
/// rotated since start survive a restart; an `encrypt` that is not in it is warned about and
/// the file wins, as Consul's), else `encrypt` (`configured`), written to the file. `None`:
/// gossip is not encrypted.
pub fn open(data_dir: &Path, configured: Option<&[u8]>) -> anyhow::Result<Option<SharedKeyring>> {
    use anyhow::Context;
    let keyfile = path(data_dir);
    let configured = configured.map(wire::gossip_key::encode);
    let keys = match load(&keyfile).map_err(|e| anyhow::anyhow!(e))? {
        Some(keys) => {
            if configured.as_ref().is_some_and(|c| !keys.contains(c)) {
                tracing::warn!(keyring = %keyfile.display(), "`encrypt` is not in the keyring file; the keyring file, with the keys rotated since, is used (as Consul)");
            }
            keys
        }
        None => match configured {
            Some(key) => {
                let keys = vec![key];
                save(&keyfile, &keys)
                    .with_context(|| format!("writing the keyring {}", keyfile.display()))?;
                keys
            }
            None => return Ok(None),
        },
    };
    Ok(Some(SharedKeyring::new(
        super::keyring::Keyring::new(&keys)?,
        Some(keyfile),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = path(dir.path());
        assert_eq!(load(&file), Ok(None));
        let keys = vec!["a".to_owned(), "b".to_owned()];
        save(&file, &keys).expect("save");
        assert_eq!(load(&file), Ok(Some(keys)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        std::fs::write(&file, "[\"a\",").expect("write");
        let error = load(&file).expect_err("a file that is not JSON");
        assert!(error.contains("not a JSON list of keys"), "{error}");
        std::fs::write(&file, "[]").expect("write");
        assert!(load(&file)
            .expect_err("a file without keys")
            .contains("lists no key"));
    }

    #[test]
    fn a_change_the_file_does_not_take_is_undone() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The keyring's directory is a plain file: every save fails.
        let blocker = dir.path().join("serf");
        std::fs::write(&blocker, b"not a directory").expect("write");
        let first = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=".to_owned();
        let second = "MGQ4YTg4YjE4ZGE0NGQ1NjZiZDA5MzQ2OWE0NWQ5MmE=".to_owned();
        let ring =
            super::super::keyring::Keyring::new(std::slice::from_ref(&first)).expect("keyring");
        let shared = SharedKeyring::new(ring, Some(path(dir.path())));
        let error = shared
            .apply(&KeyOp::Install(second.clone()))
            .expect_err("a second install of the same key");
        assert!(error.contains("nothing changed"), "{error}");
        assert_eq!(shared.keys(), std::slice::from_ref(&first));
        // Listing changes nothing and writes nothing.
        assert_eq!(shared.apply(&KeyOp::List), Ok(()));
        // In memory only, the same change goes through.
        let ring =
            super::super::keyring::Keyring::new(std::slice::from_ref(&first)).expect("keyring");
        let memory = SharedKeyring::new(ring, None);
        assert_eq!(memory.apply(&KeyOp::Install(second.clone())), Ok(()));
        assert_eq!(memory.apply(&KeyOp::Use(second.clone())), Ok(()));
        assert_eq!(memory.keys(), [second.clone(), first.clone()]);
        assert!(
            memory.apply(&KeyOp::Remove(second)).is_err(),
            "the primary stays"
        );
        assert_eq!(
            memory.apply(&KeyOp::Remove("never-installed".into())),
            Ok(())
        );
    }
}
