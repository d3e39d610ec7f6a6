//! openraft's own storage conformance suite, run against the redb log store and the state
//! machine.

use openraft::testing::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::state_machine::StateMachineStore;
use super::{StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let log = LogStore::open(&dir.path().join("log.redb"))
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        let state_machine = StateMachineStore::open(&dir.path().join("snapshot.bin"))
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(error) = Suite::test_all(Builder) {
        panic!("storage suite failed: {error}");
    }
}
