//! `acl.tokens.initial_management`: the leader makes the first management token with that
//! secret, once (as Consul's leader does when it establishes leadership), so an operator
//! who set it need not run `acl bootstrap`.

use std::sync::Arc;
use std::time::Duration;

use wire::command::{Command, CommandResult};
use wire::records::AclToken;

use super::Server;

/// The leader's duty: bootstraps ACLs with the configured secret while nobody has.
pub struct InitialManagement {
    /// The secret.
    pub secret: String,
    /// Done (here or before).
    pub done: bool,
}

#[async_trait::async_trait]
impl super::leader::Duty for InitialManagement {
    fn name(&self) -> &'static str {
        "acl_initial_management"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn run(&mut self, server: &Arc<Server>) {
        if self.done {
            return;
        }
        let Ok(bootstrapped) = server.state.read(|data| data.state.acl.bootstrapped) else {
            return;
        };
        if bootstrapped.is_some() {
            self.done = true;
            return;
        }
        let mut bytes = [0u8; 16];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
            return;
        }
        let token = AclToken {
            accessor_id: wire::names::uuid_of(bytes),
            secret_id: self.secret.clone(),
            description: "Initial Management Token".to_owned(),
            policies: Vec::new(),
            roles: Vec::new(),
            service_identities: Vec::new(),
            node_identities: Vec::new(),
            local: false,
            expiration_ms: None,
            create_ms: crate::unix_ms(),
            create_index: 0,
            modify_index: 0,
        };
        match server
            .proposer
            .propose(Command::AclBootstrap(Box::new(token)))
            .await
        {
            Ok((_, CommandResult::Done)) => {
                tracing::info!("ACLs bootstrapped with acl.tokens.initial_management");
                self.done = true;
            }
            Ok((_, CommandResult::Refused(_))) => self.done = true,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not bootstrap ACLs with initial_management")
            }
        }
    }
}
