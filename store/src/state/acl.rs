//! ACL tokens, policies and roles: Consul's tables, replicated through Raft. Pure data
//! and the checks that keep it consistent; what a token may do is the `acl` crate's.

use std::collections::BTreeMap;

use wire::command::CommandResult;
use wire::records::{
    AclLink, AclPolicy, AclReplica, AclRole, AclToken, GLOBAL_MANAGEMENT_POLICY_ID,
};

/// A datacenter's ACL tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    policies: BTreeMap<String, AclPolicy>,
    roles: BTreeMap<String, AclRole>,
    tokens: BTreeMap<String, AclToken>,
    /// Accessor ID by secret ID.
    by_secret: BTreeMap<String, String>,
    /// The index of the bootstrap, once done.
    pub bootstrapped: Option<u64>,
    /// Index of the last change (blocking queries on ACLs wait on it).
    pub index: u64,
}

/// The tables as a snapshot stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclParts {
    /// Policies.
    pub policies: Vec<AclPolicy>,
    /// Roles.
    pub roles: Vec<AclRole>,
    /// Tokens.
    pub tokens: Vec<AclToken>,
    /// The bootstrap's index.
    pub bootstrapped: Option<u64>,
    /// The tables' index.
    pub index: u64,
}

fn refused(why: impl Into<String>) -> CommandResult {
    CommandResult::Refused(why.into())
}

impl Acl {
    /// Rebuilds from a snapshot's parts.
    pub fn from_parts(parts: AclParts) -> Acl {
        let by_secret = parts
            .tokens
            .iter()
            .map(|t| (t.secret_id.clone(), t.accessor_id.clone()))
            .collect();
        Acl {
            policies: parts
                .policies
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect(),
            roles: parts.roles.into_iter().map(|r| (r.id.clone(), r)).collect(),
            tokens: parts
                .tokens
                .into_iter()
                .map(|t| (t.accessor_id.clone(), t))
                .collect(),
            by_secret,
            bootstrapped: parts.bootstrapped,
            index: parts.index,
        }
    }

    /// The parts a snapshot stores.
    pub fn to_parts(&self) -> AclParts {
        AclParts {
            policies: self.policies.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
            tokens: self.tokens.values().cloned().collect(),
            bootstrapped: self.bootstrapped,
            index: self.index,
        }
    }

    /// A policy by ID.
    pub fn policy(&self, id: &str) -> Option<&AclPolicy> {
        self.policies.get(id)
    }

    /// A policy by name.
    pub fn policy_named(&self, name: &str) -> Option<&AclPolicy> {
        self.policies.values().find(|p| p.name == name)
    }

    /// Every policy.
    pub fn policies(&self) -> impl Iterator<Item = &AclPolicy> {
        self.policies.values()
    }

    /// A role by ID.
    pub fn role(&self, id: &str) -> Option<&AclRole> {
        self.roles.get(id)
    }

    /// A role by name.
    pub fn role_named(&self, name: &str) -> Option<&AclRole> {
        self.roles.values().find(|r| r.name == name)
    }

    /// Every role.
    pub fn roles(&self) -> impl Iterator<Item = &AclRole> {
        self.roles.values()
    }

    /// A token by accessor ID.
    pub fn token(&self, accessor_id: &str) -> Option<&AclToken> {
        self.tokens.get(accessor_id)
    }

    /// A token by secret ID.
    pub fn token_by_secret(&self, secret_id: &str) -> Option<&AclToken> {
        self.by_secret
            .get(secret_id)
            .and_then(|accessor| self.tokens.get(accessor))
    }

    /// Every token.
    pub fn tokens(&self) -> impl Iterator<Item = &AclToken> {
        self.tokens.values()
    }

    /// The first management token and the `global-management` policy (Consul's
    /// bootstrap); refused once done.
    pub fn bootstrap(&mut self, index: u64, token: &AclToken) -> CommandResult {
        if let Some(done) = self.bootstrapped {
            return refused(format!(
                "ACL bootstrap no longer allowed (reset index: {done})"
            ));
        }
        self.policies
            .entry(GLOBAL_MANAGEMENT_POLICY_ID.to_owned())
            .or_insert_with(|| AclPolicy {
                id: GLOBAL_MANAGEMENT_POLICY_ID.to_owned(),
                name: "global-management".to_owned(),
                description: "Builtin Policy that grants unlimited access".to_owned(),
                rules: String::new(),
                datacenters: Vec::new(),
                create_index: index,
                modify_index: index,
            });
        let mut token = token.clone();
        token.policies = vec![AclLink {
            id: GLOBAL_MANAGEMENT_POLICY_ID.to_owned(),
        }];
        self.bootstrapped = Some(index);
        self.put_token(index, token)
    }

    /// Creates or replaces a policy.
    pub fn set_policy(&mut self, index: u64, policy: &AclPolicy) -> CommandResult {
        if policy.name.is_empty() {
            return refused("Invalid Policy: no Name is set");
        }
        if let Some(other) = self.policy_named(&policy.name) {
            if other.id != policy.id {
                return refused(format!(
                    "Invalid Policy: A Policy with Name {:?} already exists",
                    policy.name
                ));
            }
        }
        if policy.id == GLOBAL_MANAGEMENT_POLICY_ID && policy.rules.trim() != "" {
            return refused(
                "Changing the Rules for the builtin global-management policy is not permitted",
            );
        }
        let mut policy = policy.clone();
        policy.create_index = self
            .policies
            .get(&policy.id)
            .map_or(index, |p| p.create_index);
        policy.modify_index = index;
        self.policies.insert(policy.id.clone(), policy);
        self.index = index;
        CommandResult::Done
    }

    /// Deletes a policy (not `global-management`); links to it are dropped.
    pub fn delete_policy(&mut self, index: u64, id: &str) -> CommandResult {
        if id == GLOBAL_MANAGEMENT_POLICY_ID {
            return refused(
                "Delete operation not permitted on the builtin global-management policy",
            );
        }
        if self.policies.remove(id).is_some() {
            for token in self.tokens.values_mut() {
                token.policies.retain(|link| link.id != id);
            }
            for role in self.roles.values_mut() {
                role.policies.retain(|link| link.id != id);
            }
            self.index = index;
        }
        CommandResult::Done
    }

    /// Creates or replaces a token: its policies and roles must exist, its secret must be
    /// its own.
    pub fn set_token(&mut self, index: u64, token: &AclToken) -> CommandResult {
        for link in &token.policies {
            if !self.policies.contains_key(&link.id) {
                return refused(format!("No such ACL policy with ID {:?}", link.id));
            }
        }
        for link in &token.roles {
            if !self.roles.contains_key(&link.id) {
                return refused(format!("No such ACL role with ID {:?}", link.id));
            }
        }
        if let Some(accessor) = self.by_secret.get(&token.secret_id) {
            if *accessor != token.accessor_id {
                return refused("Invalid Token: SecretID is already in use");
            }
        }
        self.put_token(index, token.clone())
    }

    fn put_token(&mut self, index: u64, mut token: AclToken) -> CommandResult {
        if let Some(old) = self.tokens.get(&token.accessor_id) {
            token.create_index = old.create_index;
            self.by_secret.remove(&old.secret_id);
        } else {
            token.create_index = index;
        }
        token.modify_index = index;
        self.by_secret
            .insert(token.secret_id.clone(), token.accessor_id.clone());
        self.tokens.insert(token.accessor_id.clone(), token);
        self.index = index;
        CommandResult::Done
    }

    /// Deletes a token.
    pub fn delete_token(&mut self, index: u64, accessor_id: &str) -> CommandResult {
        if let Some(token) = self.tokens.remove(accessor_id) {
            if self.by_secret.get(&token.secret_id).map(String::as_str) == Some(accessor_id) {
                self.by_secret.remove(&token.secret_id);
            }
            self.index = index;
        }
        CommandResult::Done
    }

    /// Creates or replaces a role: its policies must exist and its name be its own.
    pub fn set_role(&mut self, index: u64, role: &AclRole) -> CommandResult {
        if role.name.is_empty() {
            return refused("Invalid Role: no Name is set");
        }
        if let Some(other) = self.role_named(&role.name) {
            if other.id != role.id {
                return refused(format!(
                    "Invalid Role: A Role with Name {:?} already exists",
                    role.name
                ));
            }
        }
        for link in &role.policies {
            if !self.policies.contains_key(&link.id) {
                return refused(format!("No such ACL policy with ID {:?}", link.id));
            }
        }
        let mut role = role.clone();
        role.create_index = self.roles.get(&role.id).map_or(index, |r| r.create_index);
        role.modify_index = index;
        self.roles.insert(role.id.clone(), role);
        self.index = index;
        CommandResult::Done
    }

    /// Deletes a role; links to it are dropped.
    pub fn delete_role(&mut self, index: u64, id: &str) -> CommandResult {
        if self.roles.remove(id).is_some() {
            for token in self.tokens.values_mut() {
                token.roles.retain(|link| link.id != id);
            }
            self.index = index;
        }
        CommandResult::Done
    }
}

impl Acl {
    /// What a secondary datacenter holds of the primary's tables, to compare with what the
    /// primary has: its policies, roles and global tokens.
    pub fn replicated(&self) -> AclReplica {
        AclReplica {
            policies: Some(self.policies.values().cloned().collect()),
            roles: Some(self.roles.values().cloned().collect()),
            tokens: Some(self.tokens.values().filter(|t| !t.local).cloned().collect()),
        }
    }

    /// Takes the primary's tables (a secondary datacenter's replication): each set given
    /// replaces this datacenter's, records kept as the primary wrote them (its indexes
    /// too, so the next comparison finds them equal); local tokens stay, without links
    /// to what the primary no longer has.
    pub fn replicate(&mut self, index: u64, replica: &AclReplica) -> CommandResult {
        if let Some(policies) = &replica.policies {
            self.policies = policies.iter().map(|p| (p.id.clone(), p.clone())).collect();
        }
        if let Some(roles) = &replica.roles {
            self.roles = roles.iter().map(|r| (r.id.clone(), r.clone())).collect();
        }
        if let Some(tokens) = &replica.tokens {
            self.tokens.retain(|_, t| t.local);
            self.by_secret = self
                .tokens
                .values()
                .map(|t| (t.secret_id.clone(), t.accessor_id.clone()))
                .collect();
            // A global token that would take a local one's accessor or secret is left
            // out: neither may shadow the other (both IDs can be chosen by whoever writes).
            for token in tokens.iter().filter(|t| !t.local) {
                if self.tokens.contains_key(&token.accessor_id)
                    || self.by_secret.contains_key(&token.secret_id)
                {
                    continue;
                }
                self.by_secret
                    .insert(token.secret_id.clone(), token.accessor_id.clone());
                self.tokens.insert(token.accessor_id.clone(), token.clone());
            }
        }
        // Links of local tokens to what the primary no longer has stay: they grant
        // nothing while it is missing (resolution skips it), and again if it comes back.
        self.index = index;
        CommandResult::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;
    use wire::command::Command;

    fn token(accessor: &str, secret: &str, policies: &[&str]) -> AclToken {
        AclToken {
            accessor_id: accessor.into(),
            secret_id: secret.into(),
            description: String::new(),
            policies: policies
                .iter()
                .map(|id| AclLink { id: (*id).into() })
                .collect(),
            roles: Vec::new(),
            service_identities: Vec::new(),
            node_identities: Vec::new(),
            local: false,
            expiration_ms: None,
            create_ms: 0,
            create_index: 0,
            modify_index: 0,
        }
    }

    fn policy(id: &str, name: &str, rules: &str) -> AclPolicy {
        AclPolicy {
            id: id.into(),
            name: name.into(),
            description: String::new(),
            rules: rules.into(),
            datacenters: Vec::new(),
            create_index: 0,
            modify_index: 0,
        }
    }

    #[test]
    fn bootstrap_happens_once_with_a_management_token() {
        let mut state = State::default();
        let first = Command::AclBootstrap(Box::new(token("a1", "s1", &[])));
        assert_eq!(state.apply(5, 0, &first), CommandResult::Done);
        let again = Command::AclBootstrap(Box::new(token("a2", "s2", &[])));
        assert_eq!(
            state.apply(6, 0, &again),
            CommandResult::Refused("ACL bootstrap no longer allowed (reset index: 5)".into())
        );
        let management = state.acl.token_by_secret("s1").expect("the token");
        assert_eq!(management.policies[0].id, GLOBAL_MANAGEMENT_POLICY_ID);
        assert_eq!(
            state
                .acl
                .policy(GLOBAL_MANAGEMENT_POLICY_ID)
                .map(|p| p.name.as_str()),
            Some("global-management")
        );
        assert!(state.acl.token_by_secret("s2").is_none());
    }

    #[test]
    fn names_secrets_and_links_stay_consistent() {
        let mut acl = Acl::default();
        assert_eq!(
            acl.set_policy(1, &policy("p1", "app", "")),
            CommandResult::Done
        );
        assert!(matches!(
            acl.set_policy(2, &policy("p2", "app", "")),
            CommandResult::Refused(_)
        ));
        assert!(matches!(
            acl.set_token(3, &token("t1", "s", &["nope"])),
            CommandResult::Refused(_)
        ));
        assert_eq!(
            acl.set_token(4, &token("t1", "s", &["p1"])),
            CommandResult::Done
        );
        assert!(matches!(
            acl.set_token(5, &token("t2", "s", &[])),
            CommandResult::Refused(_)
        ));
        // A new secret for t1 frees the old one.
        assert_eq!(
            acl.set_token(6, &token("t1", "s-new", &["p1"])),
            CommandResult::Done
        );
        assert!(acl.token_by_secret("s").is_none());
        assert_eq!(
            acl.token("t1").map(|t| (t.create_index, t.modify_index)),
            Some((4, 6))
        );
        // Deleting a policy drops the links to it.
        acl.delete_policy(7, "p1");
        assert!(acl.token("t1").is_some_and(|t| t.policies.is_empty()));
        assert!(matches!(
            acl.delete_policy(8, GLOBAL_MANAGEMENT_POLICY_ID),
            CommandResult::Refused(_)
        ));
        acl.delete_token(9, "t1");
        assert!(acl.token_by_secret("s-new").is_none());
        assert_eq!(acl.index, 9);
    }

    #[test]
    fn a_replica_replaces_the_global_tables_and_keeps_local_tokens() {
        let mut primary = Acl::default();
        primary.set_policy(1, &policy("p1", "app", ""));
        primary.set_policy(2, &policy("p2", "db", ""));
        primary.set_token(3, &token("g1", "gs1", &["p1"]));
        let mut secondary = Acl::default();
        secondary.set_policy(1, &policy("p2", "db", ""));
        secondary.set_token(2, &token("old", "olds", &["p2"]));
        let mut local = token("l1", "ls1", &["p2"]);
        local.local = true;
        secondary.set_token(3, &local);
        let replica = primary.replicated();
        assert_eq!(secondary.replicate(9, &replica), CommandResult::Done);
        assert_eq!(secondary.replicated(), replica);
        assert!(secondary.token_by_secret("olds").is_none());
        assert_eq!(
            secondary
                .token_by_secret("gs1")
                .map(|t| t.accessor_id.as_str()),
            Some("g1")
        );
        assert!(secondary.token_by_secret("ls1").is_some());
        // The primary drops p2: the local token keeps its link (it grants nothing while
        // p2 is missing).
        primary.delete_policy(4, "p2");
        secondary.replicate(10, &primary.replicated());
        assert!(secondary.policy("p2").is_none());
        assert!(secondary.token("l1").is_some_and(|t| t.policies.len() == 1));
        assert_eq!(secondary.index, 10);
        // A global token may not shadow a local one's accessor or secret.
        let mut shadow = token("l1", "other", &[]);
        shadow.local = false;
        let mut same_secret = token("g2", "ls1", &[]);
        same_secret.local = false;
        let hostile = AclReplica {
            tokens: Some(vec![shadow, same_secret]),
            ..AclReplica::default()
        };
        secondary.replicate(10, &hostile);
        assert_eq!(
            secondary
                .token_by_secret("ls1")
                .map(|t| t.accessor_id.as_str()),
            Some("l1")
        );
        assert!(secondary.token("g2").is_none());
        assert!(secondary.token("l1").is_some_and(|t| t.local));
        // Put back the primary's tables for what follows.
        secondary.replicate(10, &primary.replicated());
        // A set left out stays.
        let only_roles = AclReplica {
            roles: Some(Vec::new()),
            ..AclReplica::default()
        };
        secondary.replicate(11, &only_roles);
        assert!(secondary.policy("p1").is_some());
        assert!(secondary.token("g1").is_some());
    }

    #[test]
    fn acl_tables_survive_a_snapshot() {
        let mut state = State::default();
        state.apply(
            5,
            0,
            &Command::AclBootstrap(Box::new(token("a1", "s1", &[]))),
        );
        state.apply(
            6,
            0,
            &Command::AclPolicySet(Box::new(policy(
                "p1",
                "app",
                "key_prefix \"app/\" { policy = \"write\" }",
            ))),
        );
        let bytes = wire::frame::to_bytes(&state.to_snapshot()).expect("encode");
        let read = wire::snapshot::StateSnapshot::decode(&bytes).expect("decode");
        let restored = State::from_snapshot(read);
        assert_eq!(restored.acl, state.acl);
        assert_eq!(
            restored
                .acl
                .token_by_secret("s1")
                .map(|t| t.accessor_id.as_str()),
            Some("a1")
        );
    }
}
