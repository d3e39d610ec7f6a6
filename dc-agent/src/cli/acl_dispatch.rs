//! `dc-agent acl ...`: the parsed subcommands of the `acl` verb handed to the calls and
//! printers of `cli::acl` and `cli::acl_role`.

use std::process::ExitCode;

use crate::cli::args::*;

/// `dc-agent acl ...`: each subcommand to what carries it out.
pub fn run(addr: &str, command: AclCommand) -> ExitCode {
    match command {
        AclCommand::Bootstrap => crate::cli::acl::bootstrap(addr),
        AclCommand::SetAgentToken { kind, secret } => {
            crate::cli::acl::set_agent_token(addr, &kind, &secret)
        }
        AclCommand::Token { command } => match command {
            AclTokenCommand::Create {
                description,
                policy_name,
                policy_id,
                service_identity,
                node_identity,
                local,
                expires_ttl,
                secret,
                accessor,
            } => crate::cli::acl::token_create(
                addr,
                &crate::cli::acl::TokenCreate {
                    description,
                    policy_names: policy_name,
                    policy_ids: policy_id,
                    service_identities: service_identity,
                    node_identities: node_identity,
                    local,
                    expires_ttl,
                    secret,
                    accessor,
                },
            ),
            AclTokenCommand::Read { id, this } => {
                crate::cli::acl::token_read(addr, id.as_deref(), this)
            }
            AclTokenCommand::List => crate::cli::acl::token_list(addr),
            AclTokenCommand::Delete { id } => crate::cli::acl::token_delete(addr, &id),
            AclTokenCommand::Update {
                id,
                description,
                links,
                merge_policies,
                merge_service_identities,
                merge_node_identities,
            } => crate::cli::acl::token_update(
                addr,
                &crate::cli::acl::TokenUpdate {
                    id,
                    description,
                    links: crate::cli::acl::TokenCreate {
                        policy_names: links.policy_name,
                        policy_ids: links.policy_id,
                        service_identities: links.service_identity,
                        node_identities: links.node_identity,
                        ..Default::default()
                    },
                    merge_policies,
                    merge_service_identities,
                    merge_node_identities,
                },
            ),
            AclTokenCommand::Clone { id, description } => {
                crate::cli::acl::token_clone(addr, &id, description.as_deref())
            }
        },
        AclCommand::Role { command } => role(addr, command),
        AclCommand::Policy { command } => match command {
            AclPolicyCommand::Create {
                name,
                description,
                rules,
                valid_datacenter,
            } => crate::cli::acl::policy_create(
                addr,
                &name,
                description.as_deref(),
                rules.as_deref(),
                &valid_datacenter,
            ),
            AclPolicyCommand::Read { id, name } => {
                crate::cli::acl::policy_read(addr, id.as_deref(), name.as_deref())
            }
            AclPolicyCommand::Update {
                id,
                name,
                description,
                rules,
                valid_datacenter,
            } => {
                // With -id, -name is the new name (as Consul's).
                let (which, new_name) = match id {
                    Some(_) => (None, name),
                    None => (name, None),
                };
                crate::cli::acl::policy_update(
                    addr,
                    &crate::cli::acl::PolicyUpdate {
                        id,
                        name: which,
                        new_name,
                        description,
                        rules,
                        datacenters: valid_datacenter,
                    },
                )
            }
            AclPolicyCommand::List => crate::cli::acl::policy_list(addr),
            AclPolicyCommand::Delete { id, name } => {
                crate::cli::acl::policy_delete(addr, id.as_deref(), name.as_deref())
            }
        },
    }
}

/// `acl role ...`.
fn role(addr: &str, command: AclRoleCommand) -> ExitCode {
    use crate::cli::acl_role::RoleArgs;
    let with_links = |links: AclLinks| RoleArgs {
        policy_names: links.policy_name,
        policy_ids: links.policy_id,
        service_identities: links.service_identity,
        node_identities: links.node_identity,
        ..RoleArgs::default()
    };
    match command {
        AclRoleCommand::Create {
            name,
            description,
            links,
        } => crate::cli::acl_role::create(
            addr,
            &RoleArgs {
                name: Some(name),
                description,
                ..with_links(links)
            },
        ),
        AclRoleCommand::Read { id, name } => {
            crate::cli::acl_role::read(addr, id.as_deref(), name.as_deref())
        }
        AclRoleCommand::Update {
            id,
            name,
            description,
            links,
            no_merge,
        } => crate::cli::acl_role::update(
            addr,
            &RoleArgs {
                id: Some(id),
                name,
                description,
                no_merge,
                ..with_links(links)
            },
        ),
        AclRoleCommand::List => crate::cli::acl_role::list(addr),
        AclRoleCommand::Delete { id, name } => {
            crate::cli::acl_role::delete(addr, id.as_deref(), name.as_deref())
        }
    }
}
