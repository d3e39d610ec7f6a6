//! A datacenter's state: catalog, health and KV, as plain data structures (no tokio, no I/O).
//!
//! [`State::apply`] is the whole write path: the Raft state machine calls it with each
//! committed command and its log index, so every change is stamped with its Raft index.

pub mod catalog;
pub mod kv;
#[cfg(test)]
mod tests;

use wire::command::{Command, CommandResult};
use wire::snapshot::{StateSnapshot, SNAPSHOT_VERSION};

pub use catalog::{Catalog, Indexes, ServiceHealth};
pub use kv::Kv;

/// Catalog, health and KV of one datacenter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The KV store.
    pub kv: Kv,
    /// Nodes, services and checks.
    pub catalog: Catalog,
    /// Network coordinates of the catalog's nodes.
    pub coordinates: Coordinates,
    /// Autopilot's settings, once an operator set them (Consul's defaults until then).
    pub autopilot: Option<wire::records::AutopilotConfig>,
}

/// The LAN network coordinates of the catalog's nodes, as their agents send them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coordinates {
    /// By node name.
    pub by_node: std::collections::BTreeMap<String, wire::records::Coordinate>,
    /// Index of the last change (for blocking queries).
    pub index: u64,
}

impl State {
    /// Applies one committed command at Raft index `index`.
    pub fn apply(&mut self, index: u64, command: &Command) -> CommandResult {
        match command {
            Command::AutopilotSetConfig { config, cas } => {
                let current = self.autopilot.as_ref().map_or(0, |c| c.modify_index);
                if cas.is_some_and(|cas| cas != current) {
                    return CommandResult::Applied(false);
                }
                let mut config = config.clone();
                config.create_index = self.autopilot.as_ref().map_or(index, |c| c.create_index);
                config.modify_index = index;
                self.autopilot = Some(config);
                CommandResult::Applied(true)
            }
            Command::Restore(encoded) => {
                let mut snapshot = match StateSnapshot::decode(encoded) {
                    Ok(snapshot) => snapshot,
                    Err(e) => return CommandResult::Refused(format!("not a usable snapshot: {e}")),
                };
                // Indexes from another history (a snapshot of an older or rebuilt
                // datacenter) may be above this one's: none may pass the restore's, or
                // watchers would miss the changes that follow.
                let clamp = |i: &mut u64| *i = (*i).min(index);
                for entry in &mut snapshot.kv {
                    clamp(&mut entry.create_index);
                    clamp(&mut entry.modify_index);
                }
                for (_, deleted) in &mut snapshot.kv_tombstones {
                    clamp(deleted);
                }
                for node in &mut snapshot.nodes {
                    clamp(&mut node.create_index);
                    clamp(&mut node.modify_index);
                }
                for service in &mut snapshot.services {
                    clamp(&mut service.create_index);
                    clamp(&mut service.modify_index);
                }
                for check in &mut snapshot.checks {
                    clamp(&mut check.create_index);
                    clamp(&mut check.modify_index);
                }
                if let Some(autopilot) = &mut snapshot.autopilot {
                    clamp(&mut autopilot.create_index);
                    clamp(&mut autopilot.modify_index);
                }
                snapshot.kv_floor = index;
                snapshot.table_indexes = [index; 3];
                snapshot.node_indexes.values_mut().for_each(|i| *i = index);
                snapshot
                    .service_indexes
                    .values_mut()
                    .for_each(|i| *i = index);
                snapshot.coordinates_index = index;
                // A node or service the restore removed still wakes its watchers.
                for (node, _) in self.catalog.indexes().per_node.iter() {
                    snapshot.node_indexes.entry(node.clone()).or_insert(index);
                }
                for (service, _) in self.catalog.indexes().per_service.iter() {
                    snapshot
                        .service_indexes
                        .entry(service.clone())
                        .or_insert(index);
                }
                *self = State::from_snapshot(snapshot);
                CommandResult::Done
            }
            Command::KvSet {
                key,
                value,
                flags,
                cas,
            } => CommandResult::Applied(self.kv.set(index, key, value.clone(), *flags, *cas)),
            Command::KvDelete { key, cas } => {
                CommandResult::Applied(self.kv.delete(index, key, *cas))
            }
            Command::KvDeleteTree { prefix } => {
                self.kv.delete_tree(index, prefix);
                CommandResult::Applied(true)
            }
            Command::Txn(ops) => CommandResult::Txn(self.kv.txn(index, ops)),
            Command::KvBatch(commands) => CommandResult::Batch(
                commands
                    .iter()
                    .map(|command| self.apply(index, command))
                    .collect(),
            ),
            Command::Register(registration) => {
                match self.catalog.register(index, registration, None) {
                    Ok(()) => CommandResult::Done,
                    Err(why) => CommandResult::Refused(why),
                }
            }
            Command::RegisterWithId { id, registration } => {
                match self.catalog.register(index, registration, Some(id)) {
                    Ok(()) => CommandResult::Done,
                    Err(why) => CommandResult::Refused(why),
                }
            }
            Command::Deregister {
                node,
                service_id,
                check_id,
            } => {
                self.catalog
                    .deregister(index, node, service_id.as_deref(), check_id.as_deref());
                // A node that leaves the catalog takes its coordinate along.
                if service_id.is_none()
                    && check_id.is_none()
                    && self.coordinates.by_node.remove(node).is_some()
                {
                    self.coordinates.index = index;
                }
                CommandResult::Done
            }
            Command::KvReapTombstones { up_to } => {
                self.kv.reap_tombstones(*up_to);
                CommandResult::Done
            }
            Command::CoordinateBatchUpdate(updates) => {
                let mut changed = false;
                for (node, coordinate) in updates {
                    if coordinate.is_valid() && self.catalog.node(node).is_some() {
                        self.coordinates
                            .by_node
                            .insert(node.clone(), coordinate.clone());
                        changed = true;
                    }
                }
                if changed {
                    self.coordinates.index = index;
                }
                CommandResult::Done
            }
        }
    }

    /// The state as a snapshot.
    pub fn to_snapshot(&self) -> StateSnapshot {
        let (kv, kv_tombstones, kv_floor) = self.kv.to_parts();
        let (nodes, services, checks, indexes) = self.catalog.to_parts();
        StateSnapshot {
            version: SNAPSHOT_VERSION,
            kv,
            kv_tombstones,
            kv_floor,
            nodes,
            services,
            checks,
            table_indexes: [indexes.nodes, indexes.services, indexes.checks],
            node_indexes: indexes.per_node,
            service_indexes: indexes.per_service,
            coordinates: self
                .coordinates
                .by_node
                .iter()
                .map(|(node, c)| (node.clone(), c.clone()))
                .collect(),
            coordinates_index: self.coordinates.index,
            autopilot: self.autopilot.clone(),
        }
    }

    /// Rebuilds the state from a snapshot.
    pub fn from_snapshot(snapshot: StateSnapshot) -> State {
        let [nodes_index, services_index, checks_index] = snapshot.table_indexes;
        State {
            kv: Kv::from_parts(snapshot.kv, snapshot.kv_tombstones, snapshot.kv_floor),
            catalog: Catalog::from_parts(
                snapshot.nodes,
                snapshot.services,
                snapshot.checks,
                Indexes {
                    nodes: nodes_index,
                    services: services_index,
                    checks: checks_index,
                    per_node: snapshot.node_indexes,
                    per_service: snapshot.service_indexes,
                },
            ),
            coordinates: Coordinates {
                by_node: snapshot.coordinates.into_iter().collect(),
                index: snapshot.coordinates_index,
            },
            autopilot: snapshot.autopilot,
        }
    }
}
