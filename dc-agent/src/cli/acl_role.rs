//! `acl role create|read|update|delete|list`, printed as `consul acl role` prints.

use std::process::ExitCode;

use serde_json::Value;

use super::acl::{call, node_identities, policy_links, service_identities, text};
use super::fail;
use crate::client::encode_key;

/// What `acl role create` and `update` were given.
#[derive(Debug, Clone, Default)]
pub struct RoleArgs {
    /// `-id` (update, read, delete).
    pub id: Option<String>,
    /// `-name` (create; read and delete without `-id`; the new name in update).
    pub name: Option<String>,
    /// `-description`.
    pub description: Option<String>,
    /// `-policy-name`.
    pub policy_names: Vec<String>,
    /// `-policy-id`.
    pub policy_ids: Vec<String>,
    /// `-service-identity NAME[:DCS]`.
    pub service_identities: Vec<String>,
    /// `-node-identity NODE:DC`.
    pub node_identities: Vec<String>,
    /// `-no-merge` (update): what is given replaces what the role has.
    pub no_merge: bool,
}

/// A role as `consul acl role read` prints it.
fn print_role(role: &Value) {
    println!("ID:           {}", text(role, "ID"));
    println!("Name:         {}", text(role, "Name"));
    println!("Description:  {}", text(role, "Description"));
    print_links(role, "");
}

/// A token's or role's policies, service identities and node identities, as Consul's CLI
/// prints them (indented under a token's roles).
pub(super) fn print_links(role: &Value, indent: &str) {
    let list = |key: &str| role[key].as_array().cloned().unwrap_or_default();
    let policies = list("Policies");
    if !policies.is_empty() {
        println!("{indent}Policies:");
        for p in policies {
            println!("{indent}   {} - {}", text(&p, "ID"), text(&p, "Name"));
        }
    }
    let services = list("ServiceIdentities");
    if !services.is_empty() {
        println!("{indent}Service Identities:");
        for s in services {
            let dcs: Vec<&str> = s["Datacenters"]
                .as_array()
                .map(|d| d.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let dcs = if dcs.is_empty() {
                "all".to_owned()
            } else {
                dcs.join(", ")
            };
            println!(
                "{indent}   {} (Datacenters: {dcs})",
                text(&s, "ServiceName")
            );
        }
    }
    let nodes = list("NodeIdentities");
    if !nodes.is_empty() {
        println!("{indent}Node Identities:");
        for n in nodes {
            println!(
                "{indent}   {} (Datacenter: {})",
                text(&n, "NodeName"),
                text(&n, "Datacenter")
            );
        }
    }
}

fn role_path(id: Option<&str>, name: Option<&str>) -> Result<String, ExitCode> {
    match (id, name) {
        (Some(id), _) => Ok(format!("/v1/acl/role/{}", encode_key(id))),
        (None, Some(name)) => Ok(format!("/v1/acl/role/name/{}", encode_key(name))),
        (None, None) => Err(fail("Must specify either the -id or -name parameters")),
    }
}

/// `acl role create -name NAME [-description] [-policy-name|-policy-id|-service-identity|-node-identity]...`.
pub fn create(addr: &str, args: &RoleArgs) -> ExitCode {
    let Some(name) = &args.name else {
        return fail("Missing required '-name' flag");
    };
    let nodes = match node_identities(&args.node_identities) {
        Ok(nodes) => nodes,
        Err(code) => return code,
    };
    let body = serde_json::json!({
        "Name": name,
        "Description": args.description.clone().unwrap_or_default(),
        "Policies": policy_links(&args.policy_names, &args.policy_ids),
        "ServiceIdentities": service_identities(&args.service_identities),
        "NodeIdentities": nodes,
    });
    match call(addr, "PUT", "/v1/acl/role", &body.to_string()) {
        Ok(role) => {
            print_role(&role);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to create new role: {e}")),
    }
}

/// `acl role read -id ID | -name NAME`.
pub fn read(addr: &str, id: Option<&str>, name: Option<&str>) -> ExitCode {
    let path = match role_path(id, name) {
        Ok(path) => path,
        Err(code) => return code,
    };
    match call(addr, "GET", &path, "") {
        Ok(Value::Null) => fail("Role not found"),
        Ok(role) => {
            print_role(&role);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error reading role: {e}")),
    }
}

/// `acl role list`.
pub fn list(addr: &str) -> ExitCode {
    match call(addr, "GET", "/v1/acl/roles", "") {
        Ok(roles) => {
            for role in roles.as_array().cloned().unwrap_or_default() {
                println!("{}:", text(&role, "Name"));
                println!("   ID:           {}", text(&role, "ID"));
                println!("   Description:  {}", text(&role, "Description"));
                print_links(&role, "   ");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to retrieve the role list: {e}")),
    }
}

/// `acl role update -id ID [-name NEW] [-description] [links] [-no-merge]`: links given
/// join the role's (replace them with `-no-merge`), as Consul's.
pub fn update(addr: &str, args: &RoleArgs) -> ExitCode {
    let Some(id) = &args.id else {
        return fail("Must specify the -id parameter");
    };
    let path = format!("/v1/acl/role/{}", encode_key(id));
    let mut role = match call(addr, "GET", &path, "") {
        Ok(Value::Null) => return fail(format!("Role not found with ID {id:?}")),
        Ok(role) => role,
        Err(e) => return fail(format!("Error when retrieving current role: {e}")),
    };
    let nodes = match node_identities(&args.node_identities) {
        Ok(nodes) => nodes,
        Err(code) => return code,
    };
    let given = [
        (
            "Policies",
            policy_links(&args.policy_names, &args.policy_ids),
        ),
        (
            "ServiceIdentities",
            service_identities(&args.service_identities),
        ),
        ("NodeIdentities", nodes),
    ];
    for (key, links) in given {
        let mut list = if args.no_merge {
            Vec::new()
        } else {
            role[key].as_array().cloned().unwrap_or_default()
        };
        list.extend(links);
        role[key] = Value::Array(list);
    }
    if let Some(name) = &args.name {
        role["Name"] = Value::String(name.clone());
    }
    if let Some(description) = &args.description {
        role["Description"] = Value::String(description.clone());
    }
    match call(addr, "PUT", &path, &role.to_string()) {
        Ok(role) => {
            print_role(&role);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to update role {id}: {e}")),
    }
}

/// `acl role delete -id ID | -name NAME`.
pub fn delete(addr: &str, id: Option<&str>, name: Option<&str>) -> ExitCode {
    let (id, shown) = match (id, name) {
        (Some(id), _) => (id.to_owned(), id.to_owned()),
        (None, Some(name)) => match call(
            addr,
            "GET",
            &format!("/v1/acl/role/name/{}", encode_key(name)),
            "",
        ) {
            Ok(Value::Null) => return fail(format!("Role not found with name {name:?}")),
            Ok(role) => (text(&role, "ID").to_owned(), name.to_owned()),
            Err(e) => return fail(format!("Error looking up role {name:?}: {e}")),
        },
        (None, None) => return fail("Must specify either the -id or -name parameters"),
    };
    match call(
        addr,
        "DELETE",
        &format!("/v1/acl/role/{}", encode_key(&id)),
        "",
    ) {
        Ok(_) => {
            println!("Role \"{shown}\" deleted successfully");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error deleting role {shown:?}: {e}")),
    }
}
