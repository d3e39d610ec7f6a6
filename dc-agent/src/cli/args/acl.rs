//! The `acl` verb's subcommands and flags, as `consul acl` spells them.

// Clap turns doc comments into help text: the subcommand enums below have none on purpose.
#![allow(missing_docs)]

use clap::Subcommand;

#[derive(Subcommand)]
pub enum AclCommand {
    /// Make the first management token (once).
    Bootstrap,
    /// Set one of the agent's tokens (agent, default, agent_recovery, replication).
    SetAgentToken {
        /// Which token.
        kind: String,
        /// Its secret (named apart from the global `-token`, which authorises the call).
        #[arg(value_name = "TOKEN")]
        secret: String,
    },
    /// Tokens.
    Token {
        #[command(subcommand)]
        command: AclTokenCommand,
    },
    /// Policies.
    Policy {
        #[command(subcommand)]
        command: AclPolicyCommand,
    },
    /// Roles.
    Role {
        #[command(subcommand)]
        command: AclRoleCommand,
    },
}

/// The links a token or role is given.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AclLinks {
    /// A policy by name (repeatable).
    #[arg(long = "policy-name")]
    pub policy_name: Vec<String>,
    /// A policy by ID (repeatable).
    #[arg(long = "policy-id")]
    pub policy_id: Vec<String>,
    /// A service identity, `NAME[:DC1,DC2]` (repeatable).
    #[arg(long = "service-identity")]
    pub service_identity: Vec<String>,
    /// A node identity, `NODE:DC` (repeatable).
    #[arg(long = "node-identity")]
    pub node_identity: Vec<String>,
}

#[derive(Subcommand)]
pub enum AclRoleCommand {
    /// Make a role.
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        links: AclLinks,
    },
    /// Show a role.
    Read {
        /// Its ID.
        #[arg(long)]
        id: Option<String>,
        /// Its name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Change a role: links given join its own (replace them with -no-merge).
    Update {
        /// Its ID.
        #[arg(long)]
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        links: AclLinks,
        /// Replace the role's links with the ones given.
        #[arg(long = "no-merge")]
        no_merge: bool,
    },
    /// List roles.
    List,
    /// Delete a role.
    Delete {
        /// Its ID.
        #[arg(long)]
        id: Option<String>,
        /// Its name.
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AclTokenCommand {
    /// Make a token.
    Create {
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        /// A policy by name (repeatable).
        #[arg(long = "policy-name")]
        policy_name: Vec<String>,
        /// A policy by ID (repeatable).
        #[arg(long = "policy-id")]
        policy_id: Vec<String>,
        /// A service identity, `NAME[:DC1,DC2]` (repeatable).
        #[arg(long = "service-identity")]
        service_identity: Vec<String>,
        /// A node identity, `NODE:DC` (repeatable).
        #[arg(long = "node-identity")]
        node_identity: Vec<String>,
        /// Valid only in this datacenter.
        #[arg(long)]
        local: bool,
        /// Expires after this long (`1h`).
        #[arg(long = "expires-ttl")]
        expires_ttl: Option<String>,
        /// Its secret (default: a new one).
        #[arg(long)]
        secret: Option<String>,
        /// Its accessor ID (default: a new one).
        #[arg(long)]
        accessor: Option<String>,
    },
    /// Show a token.
    Read {
        /// Its accessor ID.
        #[arg(long)]
        id: Option<String>,
        /// The token the CLI uses.
        #[arg(long = "self")]
        this: bool,
    },
    /// List tokens.
    List,
    /// Delete a token.
    Delete {
        /// Its accessor ID.
        #[arg(long)]
        id: String,
    },
    /// Change a token: what is given replaces what it has (joins it with -merge-*).
    Update {
        /// Its accessor ID.
        #[arg(long)]
        id: String,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        links: AclLinks,
        /// Add the policies given to the token's.
        #[arg(long = "merge-policies")]
        merge_policies: bool,
        /// Add the service identities given to the token's.
        #[arg(long = "merge-service-identities")]
        merge_service_identities: bool,
        /// Add the node identities given to the token's.
        #[arg(long = "merge-node-identities")]
        merge_node_identities: bool,
    },
    /// Make a new token with another's policies, roles and identities.
    Clone {
        /// The accessor ID of the token to copy.
        #[arg(long)]
        id: String,
        /// What the new one is for.
        #[arg(long)]
        description: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AclPolicyCommand {
    /// Make a policy.
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        /// Its rules, or `@FILE` to read them from a file.
        #[arg(long)]
        rules: Option<String>,
        /// Where it applies (repeatable; default: everywhere).
        #[arg(long = "valid-datacenter")]
        valid_datacenter: Vec<String>,
    },
    /// Show a policy.
    Read {
        /// Its ID.
        #[arg(long)]
        id: Option<String>,
        /// Its name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Change a policy: what is given replaces what it has.
    Update {
        /// Its ID.
        #[arg(long)]
        id: Option<String>,
        /// Its name (which policy without -id; its new name with -id).
        #[arg(long)]
        name: Option<String>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        /// Its rules, or `@FILE` to read them from a file.
        #[arg(long)]
        rules: Option<String>,
        /// Where it applies (repeatable).
        #[arg(long = "valid-datacenter")]
        valid_datacenter: Vec<String>,
    },
    /// List policies.
    List,
    /// Delete a policy.
    Delete {
        /// Its ID.
        #[arg(long)]
        id: Option<String>,
        /// Its name.
        #[arg(long)]
        name: Option<String>,
    },
}
