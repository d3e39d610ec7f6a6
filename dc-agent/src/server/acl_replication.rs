//! ACL replication, as Consul's: the leader of a secondary datacenter copies the primary's
//! policies and roles (and, with `enable_token_replication`, its global tokens) into its
//! own Raft log, so that tokens made in the primary work here and keep working while the
//! primary cannot be reached. It long-polls the primary through the gateways
//! (`/v1/isthmus/acl/replicate`, a blocking query on the primary's ACL index, with
//! `tokens.replication`), compares what came with what this datacenter holds ([`plan`],
//! pure) and proposes only the sets that differ. What it last did is
//! [`ReplicationStatus`], shown by `/v1/acl/replication`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wire::command::{Command, CommandResult};
use wire::records::AclReplica;

use super::Server;
use crate::internal::LocalApi;

/// What replication last did (the leader's; Consul's `/v1/acl/replication`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStatus {
    /// This server leads a secondary datacenter and replicates.
    pub running: bool,
    /// The primary's ACL index of the last copy (policies).
    pub replicated_index: u64,
    /// The same, for roles.
    pub replicated_role_index: u64,
    /// The same, for tokens (0 without token replication).
    pub replicated_token_index: u64,
    /// Unix milliseconds of the last copy that succeeded.
    pub last_success_ms: Option<u64>,
    /// Unix milliseconds of the last failure.
    pub last_error_ms: Option<u64>,
    /// What failed last.
    pub last_error_message: String,
}

/// The sets of `remote` (the primary's) that differ from `local` (what this datacenter
/// holds of them); none when all are equal. Tokens are compared only `with_tokens`.
pub fn plan(local: &AclReplica, remote: &AclReplica, with_tokens: bool) -> Option<AclReplica> {
    // Without token replication this datacenter keeps no global token (one left from
    // before would go on working here after the primary deleted it): they go.
    let tokens = if with_tokens {
        changed(&local.tokens, &remote.tokens)
    } else {
        changed(&local.tokens, &Some(Vec::new()))
    };
    let change = AclReplica {
        policies: changed(&local.policies, &remote.policies),
        roles: changed(&local.roles, &remote.roles),
        tokens,
    };
    (change != AclReplica::default()).then_some(change)
}

/// `remote` when it is given and differs from `local`.
fn changed<T: PartialEq + Clone>(
    local: &Option<Vec<T>>,
    remote: &Option<Vec<T>>,
) -> Option<Vec<T>> {
    remote
        .as_ref()
        .filter(|r| local.as_ref() != Some(*r))
        .cloned()
}

/// How long one long poll of the primary waits.
const POLL_WAIT: Duration = Duration::from_secs(30);
/// The longest pause after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the loop needs.
pub struct Replicator {
    /// This server.
    pub server: Arc<Server>,
    /// The agent's own API (the request goes through the gateways from there).
    pub api: LocalApi,
    /// The primary datacenter.
    pub primary: String,
    /// The agent's tokens: `replication` goes (else the agent's own).
    pub tokens: crate::http::acl::SharedTokens,
    /// `enable_token_replication`.
    pub with_tokens: bool,
    /// Replication runs and failures.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Replicator {
    /// Runs until `cancel`: while this server leads, keeps the copy current.
    pub async fn run(self, cancel: CancellationToken) {
        let mut index = 0u64;
        let mut backoff = Duration::from_secs(1);
        let mut failing = false;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            if !self.server.is_leader() {
                self.server.acl_replication.lock().running = false;
                self.metrics.coordination.acl_replication_status.set(0);
                index = 0;
                if sleep(&cancel, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
            self.server.acl_replication.lock().running = true;
            let outcome = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                outcome = self.once(index) => outcome,
            };
            match outcome {
                Ok(remote_index) => {
                    if failing {
                        tracing::info!(primary = %self.primary, "ACL replication works again");
                    }
                    failing = false;
                    self.metrics.coordination.acl_replication_status.set(1);
                    self.metrics
                        .coordination
                        .acl_replication_index
                        .set(i64::try_from(remote_index).unwrap_or(i64::MAX));
                    backoff = Duration::from_secs(1);
                    index = remote_index;
                }
                Err(e) => {
                    self.metrics.coordination.acl_replication_errors.inc();
                    self.metrics.coordination.acl_replication_status.set(0);
                    if !failing {
                        tracing::warn!(primary = %self.primary, error = %e, "ACL replication failed; this datacenter keeps serving with the copy it has, and retries");
                    }
                    failing = true;
                    {
                        let mut status = self.server.acl_replication.lock();
                        status.last_error_ms = Some(crate::unix_ms());
                        status.last_error_message = e;
                    }
                    if sleep(&cancel, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One long poll and, when something changed, one proposal. The primary's index.
    async fn once(&self, index: u64) -> Result<u64, String> {
        let token = self.tokens.lock().replication.clone();
        let answer = self
            .api
            .acl_replica(
                &self.primary,
                index,
                POLL_WAIT,
                token.as_deref(),
                self.with_tokens,
            )
            .await?;
        if self.with_tokens && answer.replica.tokens.is_none() {
            return Err(format!(
                "the primary ({}) did not send its tokens: the replication token needs acl = \"write\"",
                self.primary
            ));
        }
        let local = self
            .server
            .state
            .read(|data| data.state.acl.replicated())
            .map_err(|e| e.to_string())?;
        if let Some(change) = plan(&local, &answer.replica, self.with_tokens) {
            let (_, result) = self
                .server
                .proposer
                .propose(Command::AclReplicate(Box::new(change)))
                .await
                .map_err(|e| format!("could not apply the primary's ACLs: {e}"))?;
            if let CommandResult::Refused(why) = result {
                return Err(format!("the primary's ACLs were refused: {why}"));
            }
            self.metrics.coordination.acl_replication_applied.inc();
        }
        let mut status = self.server.acl_replication.lock();
        status.replicated_index = answer.index;
        status.replicated_role_index = answer.index;
        if self.with_tokens {
            status.replicated_token_index = answer.index;
        }
        status.last_success_ms = Some(crate::unix_ms());
        // An index that went back (the primary was restored) starts the poll again.
        Ok(if answer.index < index {
            0
        } else {
            answer.index
        })
    }
}

/// Sleeps `pause`; true when cancelled first.
async fn sleep(cancel: &CancellationToken, pause: Duration) -> bool {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(pause) => false,
    }
}

/// What `/v1/isthmus/acl/replicate` answers: the primary's tables at an index.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaAnswer {
    /// The primary's ACL index.
    pub index: u64,
    /// Its policies, roles and (when asked and allowed) global tokens.
    pub replica: AclReplica,
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::records::{AclLink, AclPolicy, AclToken};

    fn policy(id: &str) -> AclPolicy {
        AclPolicy {
            id: id.into(),
            name: id.into(),
            description: String::new(),
            rules: String::new(),
            datacenters: Vec::new(),
            create_index: 1,
            modify_index: 1,
        }
    }

    fn token(id: &str) -> AclToken {
        AclToken {
            accessor_id: id.into(),
            secret_id: format!("{id}-secret"),
            description: String::new(),
            policies: vec![AclLink { id: "p".into() }],
            roles: Vec::new(),
            service_identities: Vec::new(),
            node_identities: Vec::new(),
            local: false,
            expiration_ms: None,
            create_ms: 0,
            create_index: 2,
            modify_index: 2,
        }
    }

    #[test]
    fn only_the_sets_that_differ_are_proposed() {
        let remote = AclReplica {
            policies: Some(vec![policy("p")]),
            roles: Some(Vec::new()),
            tokens: Some(vec![token("t")]),
        };
        let mut local = remote.clone();
        assert_eq!(plan(&local, &remote, true), None);
        local.tokens = Some(Vec::new());
        assert_eq!(
            plan(&local, &remote, true),
            Some(AclReplica {
                tokens: Some(vec![token("t")]),
                ..AclReplica::default()
            })
        );
        // Without token replication, no global token is kept here.
        assert_eq!(plan(&local, &remote, false), None);
        let mut stale = remote.clone();
        assert_eq!(
            plan(&stale, &remote, false),
            Some(AclReplica {
                tokens: Some(Vec::new()),
                ..AclReplica::default()
            })
        );
        stale.tokens = Some(Vec::new());
        assert_eq!(plan(&stale, &remote, false), None);
        local.policies = Some(Vec::new());
        assert_eq!(
            plan(&local, &remote, false),
            Some(AclReplica {
                policies: Some(vec![policy("p")]),
                ..AclReplica::default()
            })
        );
    }
}
