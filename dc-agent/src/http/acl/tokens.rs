//! The agent's own tokens (`acl.tokens.*`), changed at run time by `/v1/agent/token/*`
//! (`acl set-agent-token`). With `enable_token_persistence`, the ones set through the API
//! (and only those) are kept in the data directory's `acl-tokens.json` (0600) and win over
//! the configuration's after a restart, as Consul's; a token never set through the API
//! follows the configuration.

use parking_lot::Mutex;

use super::AclSettings;

/// The tokens set through the API: what the file holds (Consul's names, and its older
/// `agent_master`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeptTokens {
    /// `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// `agent_recovery`.
    #[serde(
        default,
        alias = "agent_master",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_recovery: Option<String>,
    /// `replication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<String>,
}

/// The agent's tokens as they apply now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTokens {
    /// `agent`: what the agent's own requests carry (else `default`).
    pub agent: Option<String>,
    /// `default`: the token of requests that bring none.
    pub default: Option<String>,
    /// `agent_recovery`.
    pub agent_recovery: Option<String>,
    /// `replication`: what a secondary's servers present to the primary.
    pub replication: Option<String>,
    /// Those set through the API.
    pub kept: KeptTokens,
    /// Where the kept ones are written (token persistence on).
    pub file: Option<std::path::PathBuf>,
}

/// The agent's tokens, shared by the guard, the internal requests and the token endpoint.
pub type SharedTokens = std::sync::Arc<Mutex<AgentTokens>>;

/// The file persisted tokens are kept in, in the data directory (Consul's name).
pub const TOKENS_FILE: &str = "acl-tokens.json";

impl AgentTokens {
    /// The tokens of the settings (none without ACLs), and with token persistence the
    /// ones kept in `data_dir`, which win. An unreadable file is an error: the agent
    /// would otherwise run with tokens its operator replaced.
    pub fn of(
        settings: Option<&AclSettings>,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<SharedTokens> {
        let mut tokens = settings.map_or_else(AgentTokens::default, |s| AgentTokens {
            agent: s.agent_token.clone(),
            default: s.default_token.clone(),
            agent_recovery: s.agent_recovery.clone(),
            replication: s.replication_token.clone(),
            kept: KeptTokens::default(),
            file: None,
        });
        if settings.is_some_and(|s| s.token_persistence) {
            let path = data_dir.join(TOKENS_FILE);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let kept: KeptTokens = serde_json::from_slice(&bytes).map_err(|e| {
                        anyhow::anyhow!("{} is not a tokens file: {e}", path.display())
                    })?;
                    tokens.agent = kept.agent.clone().or(tokens.agent);
                    tokens.default = kept.default.clone().or(tokens.default);
                    tokens.agent_recovery = kept.agent_recovery.clone().or(tokens.agent_recovery);
                    tokens.replication = kept.replication.clone().or(tokens.replication);
                    tokens.kept = kept;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("reading {}: {e}", path.display()),
            }
            tokens.file = Some(path);
        }
        Ok(std::sync::Arc::new(Mutex::new(tokens)))
    }

    /// What the agent's own requests carry.
    pub fn for_agent(&self) -> Option<String> {
        self.agent.clone().or_else(|| self.default.clone())
    }

    /// Sets one token through the API (Consul's names, and its older ones); false for a
    /// name that is not a token's.
    pub fn set(&mut self, kind: &str, token: Option<String>) -> bool {
        let (now, kept) = match kind {
            "agent" | "acl_agent_token" => (&mut self.agent, &mut self.kept.agent),
            "default" | "acl_token" => (&mut self.default, &mut self.kept.default),
            "agent_recovery" | "agent_master" | "acl_agent_master_token" => {
                (&mut self.agent_recovery, &mut self.kept.agent_recovery)
            }
            "replication" | "acl_replication_token" => {
                (&mut self.replication, &mut self.kept.replication)
            }
            _ => return false,
        };
        now.clone_from(&token);
        *kept = token;
        true
    }

    /// Writes the tokens set through the API as they are now (token persistence on),
    /// owner-only, replaced atomically; one writer at a time, so the last change is the
    /// one kept. Blocking (it syncs the file): run it off the async workers.
    pub fn persist_latest(shared: &SharedTokens) -> std::io::Result<()> {
        static WRITER: Mutex<()> = Mutex::new(());
        let _one_at_a_time = WRITER.lock();
        let (kept, file) = {
            let tokens = shared.lock();
            (tokens.kept.clone(), tokens.file.clone())
        };
        let Some(path) = file else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(&kept).map_err(std::io::Error::other)?;
        let temporary = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tokens_set_through_the_api_are_kept_and_they_win_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut problems = Vec::new();
        let config: wire::agent_config::AclConfig = serde_json::from_value(serde_json::json!({
            "enabled": true,
            "enable_token_persistence": true,
            "tokens": {"agent": "config-agent", "default": "config-default"}
        }))
        .expect("config");
        let settings =
            AclSettings::from_config(Some(&config), None, &mut problems).expect("ACLs on");
        let shared = AgentTokens::of(Some(&settings), dir.path()).expect("tokens");
        assert!(shared.lock().set("default", Some("api-default".into())));
        assert!(!shared.lock().set("nope", None));
        AgentTokens::persist_latest(&shared).expect("persist");
        let text = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).expect("file");
        assert!(!text.contains("config-agent"), "{text}");
        // The operator rotates the agent token in the config: the new one applies.
        let mut rotated = config.clone();
        if let Some(tokens) = rotated.tokens.as_mut() {
            tokens.agent = Some("rotated-agent".into());
        }
        let settings =
            AclSettings::from_config(Some(&rotated), None, &mut problems).expect("ACLs on");
        let restarted = AgentTokens::of(Some(&settings), dir.path()).expect("tokens");
        let tokens = restarted.lock();
        assert_eq!(tokens.agent.as_deref(), Some("rotated-agent"));
        assert_eq!(tokens.default.as_deref(), Some("api-default"));
        // Consul's older name in the file.
        drop(tokens);
        std::fs::write(
            dir.path().join(TOKENS_FILE),
            r#"{"agent_master": "recovery"}"#,
        )
        .expect("write");
        let legacy = AgentTokens::of(Some(&settings), dir.path()).expect("tokens");
        assert_eq!(legacy.lock().agent_recovery.as_deref(), Some("recovery"));
        assert!(problems.is_empty(), "{problems:?}");
    }
}
