//! The catalog: nodes, service instances and health checks, with the indexes blocking
//! queries wait on: per table, per node and per service name.
//!
//! A service name's index moves when anything shown by `/v1/health/service/<name>` changes:
//! an instance, one of its checks, a node-level check or the node itself.

use std::collections::{BTreeMap, BTreeSet};

use wire::command::{CheckRegistration, Registration, ServiceRegistration};
use wire::records::{Check, HealthStatus, Node, Service};

/// The catalog half of a datacenter's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    nodes: BTreeMap<String, Node>,
    /// Keyed by (node, service ID).
    services: BTreeMap<(String, String), Service>,
    /// The keys of `services` by folded service name, so a lookup visits only that
    /// service's instances (derived: rebuilt from `services`, never stored).
    by_name: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Keyed by (node, check ID).
    checks: BTreeMap<(String, String), Check>,
    indexes: Indexes,
}

/// The indexes of the catalog; kept in snapshots so they never go backwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexes {
    /// Last change to any node.
    pub nodes: u64,
    /// Last change to any service instance.
    pub services: u64,
    /// Last change to any check.
    pub checks: u64,
    /// Last change visible under one node (`/v1/catalog/node/<n>`, `/v1/health/node/<n>`).
    pub per_node: BTreeMap<String, u64>,
    /// Last change visible under one service name.
    pub per_service: BTreeMap<String, u64>,
}

/// What a service instance looks like in health answers: instance, node, all checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth<'a> {
    /// The node.
    pub node: &'a Node,
    /// The instance.
    pub service: &'a Service,
    /// Node-level checks, then the instance's own.
    pub checks: Vec<&'a Check>,
}

impl ServiceHealth<'_> {
    /// The worst status among the checks (passing when there are none).
    pub fn aggregate(&self) -> HealthStatus {
        self.checks
            .iter()
            .map(|c| match c.status {
                HealthStatus::Maintenance => HealthStatus::Critical,
                other => other,
            })
            .max()
            .unwrap_or(HealthStatus::Passing)
    }
}

impl Catalog {
    /// Rebuilds from a snapshot's parts.
    pub fn from_parts(
        nodes: Vec<Node>,
        services: Vec<Service>,
        checks: Vec<Check>,
        indexes: Indexes,
    ) -> Catalog {
        let mut catalog = Catalog {
            nodes: nodes.into_iter().map(|n| (n.name.clone(), n)).collect(),
            services: BTreeMap::new(),
            by_name: BTreeMap::new(),
            checks: checks
                .into_iter()
                .map(|c| ((c.node.clone(), c.check_id.clone()), c))
                .collect(),
            indexes,
        };
        for service in services {
            catalog.put_service((service.node.clone(), service.id.clone()), service);
        }
        catalog
    }

    /// The parts a snapshot stores.
    pub fn to_parts(&self) -> (Vec<Node>, Vec<Service>, Vec<Check>, Indexes) {
        (
            self.nodes.values().cloned().collect(),
            self.services.values().cloned().collect(),
            self.checks.values().cloned().collect(),
            self.indexes.clone(),
        )
    }

    /// Stores a service instance, keeping the by-name index.
    fn put_service(&mut self, key: (String, String), service: Service) {
        let name = fold(&service.name);
        if let Some(old) = self.services.insert(key.clone(), service) {
            let old_name = fold(&old.name);
            if old_name != name {
                self.unindex(&old_name, &key);
            }
        }
        self.by_name.entry(name).or_default().insert(key);
    }

    /// Removes a service instance, keeping the by-name index.
    fn take_service(&mut self, key: &(String, String)) -> Option<Service> {
        let service = self.services.remove(key)?;
        self.unindex(&fold(&service.name), key);
        Some(service)
    }

    fn unindex(&mut self, name: &str, key: &(String, String)) {
        if let Some(keys) = self.by_name.get_mut(name) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    /// The indexes.
    pub fn indexes(&self) -> &Indexes {
        &self.indexes
    }

    /// Index of one node's view.
    pub fn node_index(&self, node: &str) -> u64 {
        self.indexes.per_node.get(node).copied().unwrap_or(0).max(1)
    }

    /// Index of one service name's view (names compare without case, as Consul's).
    pub fn service_index(&self, name: &str) -> u64 {
        let per_service = &self.indexes.per_service;
        let folded = per_service.get(&name.to_lowercase()).copied();
        // Indexes kept before names were folded are under the name as registered.
        let exact = per_service.get(name).copied();
        folded.max(exact).unwrap_or(0).max(1)
    }

    /// Every node, by name.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// One node.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Service names with the union of their instances' tags.
    pub fn service_names(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut names: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for service in self.services.values() {
            names
                .entry(service.name.as_str())
                .or_default()
                .extend(service.tags.iter().map(String::as_str));
        }
        names
    }

    /// Instances of one service, optionally only those carrying every tag in `tags`.
    pub fn instances<'a>(
        &'a self,
        name: &'a str,
        tags: &'a [String],
    ) -> impl Iterator<Item = (&'a Node, &'a Service)> + 'a {
        self.by_name
            .get(&fold(name))
            .into_iter()
            .flatten()
            .filter_map(move |key| self.services.get(key))
            .filter(move |s| {
                tags.iter()
                    .all(|t| s.tags.iter().any(|have| same_name(have, t)))
            })
            .filter_map(move |s| self.nodes.get(&s.node).map(|n| (n, s)))
    }

    /// Services of one node.
    pub fn node_services<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        self.services
            .range((node.to_owned(), String::new())..)
            .take_while(move |((n, _), _)| n == node)
            .map(|(_, s)| s)
    }

    /// Checks of one node (node-level and service-level).
    pub fn node_checks<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Check> + 'a {
        self.checks
            .range((node.to_owned(), String::new())..)
            .take_while(move |((n, _), _)| n == node)
            .map(|(_, c)| c)
    }

    /// Checks of every instance of a service name.
    pub fn service_checks<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Check> + 'a {
        self.checks
            .values()
            .filter(move |c| !c.service_name.is_empty() && same_name(&c.service_name, name))
    }

    /// Every check, or those in one state.
    pub fn checks_in_state(&self, state: Option<HealthStatus>) -> impl Iterator<Item = &Check> {
        self.checks
            .values()
            .filter(move |c| state.is_none_or(|s| c.status == s))
    }

    /// Health of every instance of a service, optionally filtered by tags.
    pub fn service_health<'a>(
        &'a self,
        name: &'a str,
        tags: &'a [String],
    ) -> Vec<ServiceHealth<'a>> {
        self.instances(name, tags)
            .map(|(node, service)| ServiceHealth {
                node,
                service,
                checks: self
                    .node_checks(&node.name)
                    .filter(|c| c.service_id.is_empty() || c.service_id == service.id)
                    .collect(),
            })
            .collect()
    }

    /// Registers a node and optionally a service and checks, at Raft index `index`.
    pub fn register(
        &mut self,
        index: u64,
        registration: &Registration,
        node_id: Option<&str>,
    ) -> Result<(), String> {
        let node_name = registration.node.as_str();
        if node_name.is_empty() {
            return Err("Must provide node".to_owned());
        }
        if let Some(id) = node_id.filter(|id| !id.is_empty()) {
            if let Some(other) = self
                .nodes
                .values()
                .find(|n| n.name != node_name && n.id.eq_ignore_ascii_case(id))
            {
                return Err(format!(
                    "Failed inserting node: Error while renaming Node ID: {id:?}: Node name {node_name} is reserved by node {id} with name {}",
                    other.name
                ));
            }
        }
        if registration.address.is_empty()
            && !(registration.skip_node_update && self.nodes.contains_key(node_name))
        {
            return Err("Must provide address if SkipNodeUpdate is not set".to_owned());
        }
        if let Some(service) = &registration.service {
            if service.name.is_empty() {
                return Err("Must provide service name with ID".to_owned());
            }
        }
        let service_id = registration.service.as_ref().map(|s| {
            if s.id.is_empty() {
                s.name.clone()
            } else {
                s.id.clone()
            }
        });
        for check in &registration.checks {
            if check.check_id.is_empty() && check.name.is_empty() {
                return Err("Must provide a CheckID or Name for each check".to_owned());
            }
            if !check.service_id.is_empty()
                && service_id.as_deref() != Some(check.service_id.as_str())
                && !self
                    .services
                    .contains_key(&(node_name.to_owned(), check.service_id.clone()))
            {
                return Err(format!(
                    "Unknown service ID {:?} for check {:?}",
                    check.service_id,
                    check_id_of(check)
                ));
            }
        }

        let mut touched = Touched::default();
        let node_exists = self.nodes.contains_key(node_name);
        if !registration.skip_node_update || !node_exists {
            // A registration without an ID keeps the node's.
            let id = match node_id.filter(|id| !id.is_empty()) {
                Some(id) => id.to_ascii_lowercase(),
                None => self
                    .nodes
                    .get(node_name)
                    .map(|n| n.id.clone())
                    .unwrap_or_default(),
            };
            let wanted = Node {
                name: node_name.to_owned(),
                id,
                address: registration.address.clone(),
                datacenter: registration.datacenter.clone(),
                tagged_addresses: registration.tagged_addresses.clone(),
                meta: registration.node_meta.clone(),
                create_index: index,
                modify_index: index,
            };
            match self.nodes.get_mut(node_name) {
                Some(existing) if same_node(existing, &wanted) => {}
                Some(existing) => {
                    *existing = Node {
                        create_index: existing.create_index,
                        ..wanted
                    };
                    touched.node(node_name);
                }
                None => {
                    self.nodes.insert(node_name.to_owned(), wanted);
                    touched.node(node_name);
                }
            }
        }
        if let (Some(service), Some(id)) = (&registration.service, &service_id) {
            self.upsert_service(index, node_name, id, service, &mut touched);
        }
        for check in &registration.checks {
            self.upsert_check(index, node_name, check, &mut touched);
        }
        self.stamp(index, touched);
        Ok(())
    }

    fn upsert_service(
        &mut self,
        index: u64,
        node: &str,
        id: &str,
        registration: &ServiceRegistration,
        touched: &mut Touched,
    ) {
        let key = (node.to_owned(), id.to_owned());
        let wanted = Service {
            node: node.to_owned(),
            id: id.to_owned(),
            name: registration.name.clone(),
            tags: registration.tags.clone(),
            address: registration.address.clone(),
            port: registration.port,
            meta: registration.meta.clone(),
            create_index: index,
            modify_index: index,
        };
        match self.services.get(&key) {
            Some(existing) if same_service(existing, &wanted) => return,
            Some(existing) => {
                touched.service_names.insert(existing.name.clone());
                let create_index = existing.create_index;
                self.put_service(
                    key,
                    Service {
                        create_index,
                        ..wanted.clone()
                    },
                );
            }
            None => {
                self.put_service(key, wanted.clone());
            }
        }
        touched.services = true;
        touched.nodes_viewed.insert(node.to_owned());
        touched.service_names.insert(wanted.name.clone());
        // Checks carry the service's name and tags.
        for check in self
            .checks
            .values_mut()
            .filter(|c| c.node == node && c.service_id == id)
        {
            if check.service_name != wanted.name || check.service_tags != wanted.tags {
                check.service_name = wanted.name.clone();
                check.service_tags = wanted.tags.clone();
                check.modify_index = index;
                touched.checks = true;
            }
        }
    }

    fn upsert_check(
        &mut self,
        index: u64,
        node: &str,
        registration: &CheckRegistration,
        touched: &mut Touched,
    ) {
        let check_id = check_id_of(registration);
        let (service_name, service_tags) = if registration.service_id.is_empty() {
            (String::new(), Vec::new())
        } else {
            self.services
                .get(&(node.to_owned(), registration.service_id.clone()))
                .map(|s| (s.name.clone(), s.tags.clone()))
                .unwrap_or_default()
        };
        let wanted = Check {
            node: node.to_owned(),
            check_id: check_id.clone(),
            name: if registration.name.is_empty() {
                check_id.clone()
            } else {
                registration.name.clone()
            },
            status: registration.status,
            notes: registration.notes.clone(),
            output: registration.output.clone(),
            service_id: registration.service_id.clone(),
            service_name,
            service_tags,
            check_type: registration.check_type.clone(),
            create_index: index,
            modify_index: index,
        };
        let key = (node.to_owned(), check_id);
        match self.checks.get(&key) {
            Some(existing) if same_check(existing, &wanted) => return,
            Some(existing) => {
                let create_index = existing.create_index;
                if !existing.service_name.is_empty() {
                    touched.service_names.insert(existing.service_name.clone());
                }
                self.checks.insert(
                    key,
                    Check {
                        create_index,
                        ..wanted.clone()
                    },
                );
            }
            None => {
                self.checks.insert(key, wanted.clone());
            }
        }
        touched.checks = true;
        touched.nodes_viewed.insert(node.to_owned());
        if wanted.service_name.is_empty() {
            // A node-level check changes the health of every service on the node.
            touched.all_services_of.insert(node.to_owned());
        } else {
            touched.service_names.insert(wanted.service_name);
        }
    }

    /// Removes a node (with everything on it), one service (with its checks) or one check.
    pub fn deregister(
        &mut self,
        index: u64,
        node: &str,
        service_id: Option<&str>,
        check_id: Option<&str>,
    ) {
        let mut touched = Touched::default();
        match (service_id, check_id) {
            (None, None) => {
                if self.nodes.contains_key(node) {
                    touched.node(node);
                    self.nodes.remove(node);
                }
                let services: Vec<_> = self
                    .node_services(node)
                    .map(|s| (s.id.clone(), s.name.clone()))
                    .collect();
                for (id, name) in services {
                    self.take_service(&(node.to_owned(), id));
                    touched.service_names.insert(name);
                    touched.services = true;
                }
                let checks: Vec<String> =
                    self.node_checks(node).map(|c| c.check_id.clone()).collect();
                for id in checks {
                    self.checks.remove(&(node.to_owned(), id));
                    touched.checks = true;
                }
                touched.nodes_viewed.insert(node.to_owned());
            }
            (Some(service_id), _) => {
                if let Some(service) = self.take_service(&(node.to_owned(), service_id.to_owned()))
                {
                    touched.service_names.insert(service.name);
                    touched.services = true;
                    touched.nodes_viewed.insert(node.to_owned());
                    let before = self.checks.len();
                    self.checks
                        .retain(|(n, _), c| !(n == node && c.service_id == service_id));
                    touched.checks |= self.checks.len() != before;
                }
            }
            (None, Some(check_id)) => {
                if let Some(check) = self.checks.remove(&(node.to_owned(), check_id.to_owned())) {
                    touched.checks = true;
                    touched.nodes_viewed.insert(node.to_owned());
                    if check.service_name.is_empty() {
                        touched.all_services_of.insert(node.to_owned());
                    } else {
                        touched.service_names.insert(check.service_name);
                    }
                }
            }
        }
        self.stamp(index, touched);
    }

    fn stamp(&mut self, index: u64, mut touched: Touched) {
        for node in &touched.all_services_of {
            let names: Vec<String> = self.node_services(node).map(|s| s.name.clone()).collect();
            touched.service_names.extend(names);
        }
        let indexes = &mut self.indexes;
        if touched.nodes {
            indexes.nodes = index;
        }
        if touched.services {
            indexes.services = index;
        }
        if touched.checks {
            indexes.checks = index;
        }
        for node in touched.nodes_viewed {
            indexes.per_node.insert(node, index);
        }
        for name in touched.service_names {
            indexes.per_service.insert(name.to_lowercase(), index);
        }
    }
}

/// A service name as the by-name index keys it.
fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// Service names and tags compare without case, as in Consul's catalog (`web` finds
/// `Web`; `?tag=V1` finds `v1`).
fn same_name(stored: &str, asked: &str) -> bool {
    stored.eq_ignore_ascii_case(asked)
        || (!(stored.is_ascii() && asked.is_ascii())
            && stored.to_lowercase() == asked.to_lowercase())
}

/// What a change touched, so the right indexes move.
#[derive(Default)]
struct Touched {
    nodes: bool,
    services: bool,
    checks: bool,
    nodes_viewed: BTreeSet<String>,
    service_names: BTreeSet<String>,
    /// Nodes whose every service's health view changed (node-level change).
    all_services_of: BTreeSet<String>,
}

impl Touched {
    fn node(&mut self, node: &str) {
        self.nodes = true;
        self.nodes_viewed.insert(node.to_owned());
        self.all_services_of.insert(node.to_owned());
    }
}

fn check_id_of(check: &CheckRegistration) -> String {
    if check.check_id.is_empty() {
        check.name.clone()
    } else {
        check.check_id.clone()
    }
}

fn same_node(a: &Node, b: &Node) -> bool {
    a.id == b.id
        && a.address == b.address
        && a.datacenter == b.datacenter
        && a.tagged_addresses == b.tagged_addresses
        && a.meta == b.meta
}

fn same_service(a: &Service, b: &Service) -> bool {
    a.name == b.name
        && a.tags == b.tags
        && a.address == b.address
        && a.port == b.port
        && a.meta == b.meta
}

fn same_check(a: &Check, b: &Check) -> bool {
    a.name == b.name
        && a.status == b.status
        && a.notes == b.notes
        && a.output == b.output
        && a.service_id == b.service_id
        && a.service_name == b.service_name
        && a.service_tags == b.service_tags
        && a.check_type == b.check_type
}
