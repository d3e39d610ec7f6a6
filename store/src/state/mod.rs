//! A datacenter's state: catalog, health and KV, as plain data structures (no tokio, no I/O).
//!
//! [`State::apply`] is the whole write path: the Raft state machine calls it with each
//! committed command and its log index, so every change is stamped with its Raft index.

pub mod acl;
pub mod catalog;
pub mod kv;
pub mod session;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;

use wire::command::{Command, CommandResult, TxnOp};
use wire::records::{AutopilotConfig, Coordinate, HealthStatus, SessionBehavior};
use wire::snapshot::{StateSnapshot, SNAPSHOT_VERSION};

pub use catalog::{Catalog, Indexes, ServiceHealth};
pub use kv::{Kv, LockWrite};
pub use session::{LockDelays, Sessions};

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
    /// Sessions.
    pub sessions: Sessions,
    /// Keys in their lock delay (this server's view; not replicated).
    pub lock_delays: LockDelays,
    /// ACL tokens, policies and roles.
    pub acl: acl::Acl,
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
    /// Applies one committed command at Raft index `index`. `now_ms` (this server's clock,
    /// Unix milliseconds) only dates lock delays, which are not replicated state.
    pub fn apply(&mut self, index: u64, now_ms: u64, command: &Command) -> CommandResult {
        match command {
            Command::AutopilotSetConfig { config, cas } => self.set_autopilot(index, config, *cas),
            Command::Restore(encoded) => self.restore(index, encoded),
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
            Command::Txn(ops) => self.txn(index, now_ms, ops),
            Command::KvBatch(commands) => CommandResult::Batch(
                commands
                    .iter()
                    .map(|command| self.apply(index, now_ms, command))
                    .collect(),
            ),
            Command::Register(registration) => self.register(index, now_ms, registration, None),
            Command::RegisterWithId { id, registration } => {
                self.register(index, now_ms, registration, Some(id))
            }
            Command::Deregister {
                node,
                service_id,
                check_id,
            } => self.deregister(
                index,
                now_ms,
                node,
                service_id.as_deref(),
                check_id.as_deref(),
            ),
            Command::KvReapTombstones { up_to } => {
                self.kv.reap_tombstones(*up_to);
                CommandResult::Done
            }
            Command::CoordinateBatchUpdate(updates) => self.update_coordinates(index, updates),
            Command::SessionCreate(session) => self.create_session(index, session),
            Command::SessionDestroy { id } => {
                CommandResult::Applied(self.invalidate(index, now_ms, id))
            }
            Command::KvLock {
                key,
                value,
                flags,
                session,
                cas,
            } => {
                if self.sessions.get(session).is_none() {
                    return CommandResult::Refused(format!("invalid session {session:?}"));
                }
                let write = LockWrite {
                    key,
                    value,
                    flags: *flags,
                    session,
                };
                CommandResult::Applied(self.kv.lock(index, &write, *cas))
            }
            Command::AclBootstrap(token) => self.acl.bootstrap(index, token),
            Command::AclPolicySet(policy) => self.acl.set_policy(index, policy),
            Command::AclPolicyDelete { id } => self.acl.delete_policy(index, id),
            Command::AclTokenSet(token) => self.acl.set_token(index, token),
            Command::AclTokenDelete { accessor_id } => self.acl.delete_token(index, accessor_id),
            Command::AclRoleSet(role) => self.acl.set_role(index, role),
            Command::AclRoleDelete { id } => self.acl.delete_role(index, id),
            Command::AclReplicate(replica) => self.acl.replicate(index, replica),
            Command::KvUnlock {
                key,
                value,
                flags,
                session,
                cas,
            } => {
                let write = LockWrite {
                    key,
                    value,
                    flags: *flags,
                    session,
                };
                CommandResult::Applied(self.kv.unlock(index, &write, *cas))
            }
        }
    }

    /// `operator autopilot set-config`, with its check-and-set.
    fn set_autopilot(
        &mut self,
        index: u64,
        config: &AutopilotConfig,
        cas: Option<u64>,
    ) -> CommandResult {
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

    /// A node, service or check leaves the catalog: the sessions tied to it die first.
    fn deregister(
        &mut self,
        index: u64,
        now_ms: u64,
        node: &str,
        service_id: Option<&str>,
        check_id: Option<&str>,
    ) -> CommandResult {
        for id in self.sessions_lost_with(node, service_id, check_id) {
            self.invalidate(index, now_ms, &id);
        }
        self.catalog.deregister(index, node, service_id, check_id);
        // A node that leaves the catalog takes its coordinate along.
        if service_id.is_none()
            && check_id.is_none()
            && self.coordinates.by_node.remove(node).is_some()
        {
            self.coordinates.index = index;
        }
        CommandResult::Done
    }

    /// Network coordinates of nodes the catalog has (others are dropped).
    fn update_coordinates(
        &mut self,
        index: u64,
        updates: &[(String, Coordinate)],
    ) -> CommandResult {
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

    /// Replaces the whole state with a snapshot's (`snapshot restore`).
    fn restore(&mut self, index: u64, encoded: &[u8]) -> CommandResult {
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
        for session in &mut snapshot.sessions {
            clamp(&mut session.create_index);
            clamp(&mut session.modify_index);
        }
        snapshot.sessions_index = index;
        for policy in &mut snapshot.acl.policies {
            clamp(&mut policy.create_index);
            clamp(&mut policy.modify_index);
        }
        for role in &mut snapshot.acl.roles {
            clamp(&mut role.create_index);
            clamp(&mut role.modify_index);
        }
        for token in &mut snapshot.acl.tokens {
            clamp(&mut token.create_index);
            clamp(&mut token.modify_index);
        }
        if let Some(at) = &mut snapshot.acl.bootstrapped {
            clamp(at);
        }
        snapshot.acl.index = index;
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

    /// A catalog registration; a check it makes critical invalidates the sessions that
    /// watch it (in the same entry, as Consul's state store does).
    fn register(
        &mut self,
        index: u64,
        now_ms: u64,
        registration: &wire::command::Registration,
        id: Option<&String>,
    ) -> CommandResult {
        if let Err(why) = self
            .catalog
            .register(index, registration, id.map(String::as_str))
        {
            return CommandResult::Refused(why);
        }
        for check in &registration.checks {
            if check.status == HealthStatus::Critical {
                let check_id = if check.check_id.is_empty() {
                    &check.name
                } else {
                    &check.check_id
                };
                for id in self.sessions.watching(&registration.node, check_id) {
                    self.invalidate(index, now_ms, &id);
                }
            }
        }
        CommandResult::Done
    }

    /// The sessions a deregistration ends: all of a node's, or those watching the checks
    /// that go (a service's, or one check).
    fn sessions_lost_with(
        &self,
        node: &str,
        service_id: Option<&str>,
        check_id: Option<&str>,
    ) -> Vec<String> {
        match (service_id, check_id) {
            (None, None) => self.sessions.of_node(node).map(|s| s.id.clone()).collect(),
            (Some(service), None) => {
                let checks: Vec<String> = self
                    .catalog
                    .node_checks(node)
                    .filter(|c| c.service_id == service)
                    .map(|c| c.check_id.clone())
                    .collect();
                checks
                    .iter()
                    .flat_map(|c| self.sessions.watching(node, c))
                    .collect()
            }
            (_, Some(check)) => self.sessions.watching(node, check),
        }
    }

    /// Creates a session: its node must be registered and its checks present and not
    /// critical (Consul's messages).
    fn create_session(&mut self, index: u64, session: &wire::records::Session) -> CommandResult {
        if self.catalog.node(&session.node).is_none() {
            return CommandResult::Refused("Missing node registration".to_owned());
        }
        for check_id in session.node_checks.iter().chain(&session.service_checks) {
            let check = self
                .catalog
                .node_checks(&session.node)
                .find(|c| c.check_id == *check_id);
            match check {
                None => {
                    return CommandResult::Refused(format!(
                        "Missing check '{check_id}' registration"
                    ))
                }
                Some(check) if check.status == HealthStatus::Critical => {
                    return CommandResult::Refused(format!(
                        "Check '{check_id}' is in critical state"
                    ))
                }
                Some(_) => {}
            }
        }
        if self.sessions.get(&session.id).is_some() {
            return CommandResult::Refused(format!("Session ID {} already exists", session.id));
        }
        let mut session = session.clone();
        session.create_index = index;
        session.modify_index = index;
        self.sessions.insert(index, session);
        CommandResult::Done
    }

    /// Invalidates a session: its keys are released (or deleted, as its behavior says) and
    /// their lock delay starts. False when there was no such session.
    pub fn invalidate(&mut self, index: u64, now_ms: u64, id: &str) -> bool {
        let Some(session) = self.sessions.remove(index, id) else {
            return false;
        };
        for key in self.kv.held_by(id) {
            match session.behavior {
                SessionBehavior::Release => self.kv.release(index, &key),
                SessionBehavior::Delete => {
                    self.kv.delete(index, &key, None);
                }
            }
            self.lock_delays.start(&key, now_ms, session.lock_delay_ms);
        }
        true
    }

    /// A transaction: the KV operations all or nothing, then its session verbs.
    fn txn(&mut self, index: u64, now_ms: u64, ops: &[TxnOp]) -> CommandResult {
        let sessions = &self.sessions;
        let live = |id: &str| sessions.get(id).is_some();
        let result = self.kv.txn(index, ops, &live);
        if result.is_ok() {
            for op in ops {
                if let TxnOp::SessionDelete { id } = op {
                    self.invalidate(index, now_ms, id);
                }
            }
        }
        CommandResult::Txn(result)
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
            sessions: self.sessions.to_parts().0,
            sessions_index: self.sessions.index,
            acl: {
                let parts = self.acl.to_parts();
                wire::snapshot::AclTables {
                    policies: parts.policies,
                    roles: parts.roles,
                    tokens: parts.tokens,
                    bootstrapped: parts.bootstrapped,
                    index: parts.index,
                }
            },
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
            sessions: Sessions::from_parts(snapshot.sessions, snapshot.sessions_index),
            lock_delays: LockDelays::default(),
            acl: acl::Acl::from_parts(acl::AclParts {
                policies: snapshot.acl.policies,
                roles: snapshot.acl.roles,
                tokens: snapshot.acl.tokens,
                bootstrapped: snapshot.acl.bootstrapped,
                index: snapshot.acl.index,
            }),
        }
    }
}
