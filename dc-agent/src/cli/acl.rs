//! `acl bootstrap`, `acl token ...`, `acl policy ...`, printed as `consul acl` prints.

use std::process::ExitCode;

use serde_json::Value;

use super::{client, fail};
use crate::client::encode_key;

pub(super) fn call(addr: &str, method: &str, path: &str, body: &str) -> Result<Value, String> {
    let api = client(addr);
    let response = match method {
        "PUT" => api.put(path, body.as_bytes()),
        "DELETE" => api.delete(path),
        _ => api.get(path),
    }?;
    if response.status != 200 {
        return Err(response.text().trim().to_owned());
    }
    response.json::<Value>()
}

pub(super) fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

/// A token as `consul acl token read` prints it.
fn print_token(token: &Value) {
    println!("AccessorID:       {}", text(token, "AccessorID"));
    println!("SecretID:         {}", text(token, "SecretID"));
    println!("Description:      {}", text(token, "Description"));
    println!(
        "Local:            {}",
        token["Local"].as_bool().unwrap_or(false)
    );
    println!("Create Time:      {}", text(token, "CreateTime"));
    if let Some(expires) = token["ExpirationTime"].as_str() {
        println!("Expiration Time:  {expires}");
    }
    super::acl_role::print_links(token, "");
}

/// A policy as `consul acl policy read` prints it.
fn print_policy(policy: &Value) {
    println!("ID:           {}", text(policy, "ID"));
    println!("Name:         {}", text(policy, "Name"));
    println!("Description:  {}", text(policy, "Description"));
    let dcs: Vec<&str> = policy["Datacenters"]
        .as_array()
        .map(|d| d.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!("Datacenters:  {}", dcs.join(", "));
    println!("Rules:");
    println!("{}", text(policy, "Rules"));
}

/// `acl bootstrap`.
pub fn bootstrap(addr: &str) -> ExitCode {
    match call(addr, "PUT", "/v1/acl/bootstrap", "") {
        Ok(token) => {
            print_token(&token);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed ACL bootstrapping: {e}")),
    }
}

/// `acl set-agent-token KIND TOKEN`.
pub fn set_agent_token(addr: &str, kind: &str, token: &str) -> ExitCode {
    let body = serde_json::json!({ "Token": token }).to_string();
    let response = client(addr).put(
        &format!("/v1/agent/token/{}", encode_key(kind)),
        body.as_bytes(),
    );
    match response {
        Ok(r) if r.status == 200 => {
            println!("ACL token {kind:?} set successfully");
            ExitCode::SUCCESS
        }
        Ok(r) => fail(format!("Failed setting token: {}", r.text().trim())),
        Err(e) => fail(format!("Failed setting token: {e}")),
    }
}

/// What `acl token create` was given.
#[derive(Debug, Clone, Default)]
pub struct TokenCreate {
    /// `-description`.
    pub description: Option<String>,
    /// `-policy-name`.
    pub policy_names: Vec<String>,
    /// `-policy-id`.
    pub policy_ids: Vec<String>,
    /// `-service-identity`.
    pub service_identities: Vec<String>,
    /// `-node-identity`.
    pub node_identities: Vec<String>,
    /// `-local`.
    pub local: bool,
    /// `-expires-ttl`.
    pub expires_ttl: Option<String>,
    /// `-secret`.
    pub secret: Option<String>,
    /// `-accessor`.
    pub accessor: Option<String>,
}

/// `acl token create`.
pub fn token_create(addr: &str, args: &TokenCreate) -> ExitCode {
    let policies = policy_links(&args.policy_names, &args.policy_ids);
    let services = service_identities(&args.service_identities);
    let nodes = match node_identities(&args.node_identities) {
        Ok(nodes) => nodes,
        Err(code) => return code,
    };
    let body = serde_json::json!({
        "Description": args.description.clone().unwrap_or_default(),
        "Policies": policies,
        "ServiceIdentities": services,
        "NodeIdentities": nodes,
        "Local": args.local,
        "ExpirationTTL": args.expires_ttl.clone().unwrap_or_default(),
        "SecretID": args.secret.clone().unwrap_or_default(),
        "AccessorID": args.accessor.clone().unwrap_or_default(),
    });
    match call(addr, "PUT", "/v1/acl/token", &body.to_string()) {
        Ok(token) => {
            print_token(&token);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to create new token: {e}")),
    }
}

/// `-service-identity NAME[:DC1,DC2]` as Consul's body has it.
pub(super) fn service_identities(given: &[String]) -> Vec<Value> {
    given
        .iter()
        .map(|s| {
            let (name, dcs) = s.split_once(':').unwrap_or((s, ""));
            let dcs: Vec<&str> = dcs.split(',').filter(|d| !d.is_empty()).collect();
            serde_json::json!({ "ServiceName": name, "Datacenters": dcs })
        })
        .collect()
}

/// `-node-identity NODE:DC` as Consul's body has it.
pub(super) fn node_identities(given: &[String]) -> Result<Vec<Value>, ExitCode> {
    given
        .iter()
        .map(|n| match n.split_once(':') {
            Some((node, dc)) => Ok(serde_json::json!({ "NodeName": node, "Datacenter": dc })),
            None => Err(fail(format!(
                "Malformed -node-identity argument: {n:?} (NODE:DATACENTER)"
            ))),
        })
        .collect()
}

/// `-policy-name` and `-policy-id` as Consul's body links them.
pub(super) fn policy_links(names: &[String], ids: &[String]) -> Vec<Value> {
    names
        .iter()
        .map(|n| serde_json::json!({ "Name": n }))
        .chain(ids.iter().map(|i| serde_json::json!({ "ID": i })))
        .collect()
}

/// What `acl token update` was given.
#[derive(Debug, Clone, Default)]
pub struct TokenUpdate {
    /// `-id`.
    pub id: String,
    /// `-description`.
    pub description: Option<String>,
    /// `-policy-name`, `-policy-id`, `-service-identity`, `-node-identity`.
    pub links: TokenCreate,
    /// `-merge-policies` (or `-append-policy-*`).
    pub merge_policies: bool,
    /// `-merge-service-identities`.
    pub merge_service_identities: bool,
    /// `-merge-node-identities`.
    pub merge_node_identities: bool,
}

/// `acl token update -id ID ...`: what is given replaces (or with `-merge-*` joins) what
/// the token has; what is not given stays.
pub fn token_update(addr: &str, args: &TokenUpdate) -> ExitCode {
    let path = format!("/v1/acl/token/{}", encode_key(&args.id));
    let mut token = match call(addr, "GET", &path, "") {
        Ok(token) => token,
        Err(e) => return fail(format!("Error when retrieving current token: {e}")),
    };
    let nodes = match node_identities(&args.links.node_identities) {
        Ok(nodes) => nodes,
        Err(code) => return code,
    };
    let changes = [
        (
            "Policies",
            policy_links(&args.links.policy_names, &args.links.policy_ids),
            args.merge_policies,
        ),
        (
            "ServiceIdentities",
            service_identities(&args.links.service_identities),
            args.merge_service_identities,
        ),
        ("NodeIdentities", nodes, args.merge_node_identities),
    ];
    for (key, given, merge) in changes {
        if given.is_empty() {
            continue;
        }
        let mut list = if merge {
            token[key].as_array().cloned().unwrap_or_default()
        } else {
            Vec::new()
        };
        list.extend(given);
        token[key] = Value::Array(list);
    }
    if let Some(description) = &args.description {
        token["Description"] = Value::String(description.clone());
    }
    match call(addr, "PUT", &path, &token.to_string()) {
        Ok(token) => {
            println!("Token updated successfully.");
            print_token(&token);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to update token {}: {e}", args.id)),
    }
}

/// `acl token clone -id ID [-description]`.
pub fn token_clone(addr: &str, id: &str, description: Option<&str>) -> ExitCode {
    let body = serde_json::json!({ "Description": description.unwrap_or_default() });
    match call(
        addr,
        "PUT",
        &format!("/v1/acl/token/{}/clone", encode_key(id)),
        &body.to_string(),
    ) {
        Ok(token) => {
            println!("Token cloned successfully.");
            print_token(&token);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to clone token: {e}")),
    }
}

/// `acl token read -id ID` or `-self`.
pub fn token_read(addr: &str, id: Option<&str>, this: bool) -> ExitCode {
    let path = match (id, this) {
        (_, true) => "/v1/acl/token/self".to_owned(),
        (Some(id), false) => format!("/v1/acl/token/{}", encode_key(id)),
        (None, false) => return fail("Must specify the -id parameter"),
    };
    match call(addr, "GET", &path, "") {
        Ok(token) => {
            print_token(&token);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error reading token: {e}")),
    }
}

/// `acl token list`.
pub fn token_list(addr: &str) -> ExitCode {
    match call(addr, "GET", "/v1/acl/tokens", "") {
        Ok(tokens) => {
            for (i, token) in tokens
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                if i > 0 {
                    println!();
                }
                print_token(token);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to retrieve the token list: {e}")),
    }
}

/// `acl token delete -id ID`.
pub fn token_delete(addr: &str, id: &str) -> ExitCode {
    match call(
        addr,
        "DELETE",
        &format!("/v1/acl/token/{}", encode_key(id)),
        "",
    ) {
        Ok(_) => {
            println!("Token \"{id}\" deleted successfully");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error deleting token {id:?}: {e}")),
    }
}

/// `acl policy create -name NAME [-description] [-rules RULES|@FILE] [-valid-datacenter]`.
pub fn policy_create(
    addr: &str,
    name: &str,
    description: Option<&str>,
    rules: Option<&str>,
    datacenters: &[String],
) -> ExitCode {
    let rules = match rules.map(rules_of).transpose() {
        Ok(rules) => rules.unwrap_or_default(),
        Err(code) => return code,
    };
    let body = serde_json::json!({
        "Name": name,
        "Description": description.unwrap_or_default(),
        "Rules": rules,
        "Datacenters": datacenters,
    });
    match call(addr, "PUT", "/v1/acl/policy", &body.to_string()) {
        Ok(policy) => {
            print_policy(&policy);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to create new policy: {e}")),
    }
}

/// `acl policy update -id ID | -name NAME [-new-name] [-description] [-rules] [-valid-datacenter]`:
/// what is given replaces what the policy has.
pub fn policy_update(addr: &str, args: &PolicyUpdate) -> ExitCode {
    let path = match policy_path(args.id.as_deref(), args.name.as_deref()) {
        Ok(path) => path,
        Err(code) => return code,
    };
    let mut policy = match call(addr, "GET", &path, "") {
        Ok(policy) => policy,
        Err(e) => return fail(format!("Error when retrieving current policy: {e}")),
    };
    let id = text(&policy, "ID").to_owned();
    if let Some(name) = &args.new_name {
        policy["Name"] = Value::String(name.clone());
    }
    if let Some(description) = &args.description {
        policy["Description"] = Value::String(description.clone());
    }
    match args.rules.as_deref().map(rules_of).transpose() {
        Ok(Some(rules)) => policy["Rules"] = Value::String(rules),
        Ok(None) => {}
        Err(code) => return code,
    }
    if !args.datacenters.is_empty() {
        policy["Datacenters"] = serde_json::json!(args.datacenters);
    }
    match call(
        addr,
        "PUT",
        &format!("/v1/acl/policy/{}", encode_key(&id)),
        &policy.to_string(),
    ) {
        Ok(policy) => {
            print_policy(&policy);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to update policy {id}: {e}")),
    }
}

/// What `acl policy update` was given.
#[derive(Debug, Clone, Default)]
pub struct PolicyUpdate {
    /// `-id`.
    pub id: Option<String>,
    /// `-name` (which policy, without `-id`; its new name with `-id`).
    pub name: Option<String>,
    /// The new name.
    pub new_name: Option<String>,
    /// `-description`.
    pub description: Option<String>,
    /// `-rules` (`@FILE` reads a file).
    pub rules: Option<String>,
    /// `-valid-datacenter`.
    pub datacenters: Vec<String>,
}

/// Rules given inline, or `@FILE`.
fn rules_of(given: &str) -> Result<String, ExitCode> {
    match given.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| fail(format!("Failed to read rules from {file}: {e}"))),
        None => Ok(given.to_owned()),
    }
}

fn policy_path(id: Option<&str>, name: Option<&str>) -> Result<String, ExitCode> {
    match (id, name) {
        (Some(id), _) => Ok(format!("/v1/acl/policy/{}", encode_key(id))),
        (None, Some(name)) => Ok(format!("/v1/acl/policy/name/{}", encode_key(name))),
        (None, None) => Err(fail("Must specify either the -id or -name parameters")),
    }
}

/// `acl policy read -id ID` or `-name NAME`.
pub fn policy_read(addr: &str, id: Option<&str>, name: Option<&str>) -> ExitCode {
    let path = match policy_path(id, name) {
        Ok(path) => path,
        Err(code) => return code,
    };
    match call(addr, "GET", &path, "") {
        Ok(policy) => {
            print_policy(&policy);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error reading policy: {e}")),
    }
}

/// `acl policy list`.
pub fn policy_list(addr: &str) -> ExitCode {
    match call(addr, "GET", "/v1/acl/policies", "") {
        Ok(policies) => {
            for policy in policies.as_array().cloned().unwrap_or_default() {
                println!("{}:", text(&policy, "Name"));
                println!("   ID:           {}", text(&policy, "ID"));
                println!("   Description:  {}", text(&policy, "Description"));
                let dcs: Vec<&str> = policy["Datacenters"]
                    .as_array()
                    .map(|d| d.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                println!("   Datacenters:  {}", dcs.join(", "));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to retrieve the policy list: {e}")),
    }
}

/// `acl policy delete -id ID` or `-name NAME`.
pub fn policy_delete(addr: &str, id: Option<&str>, name: Option<&str>) -> ExitCode {
    let (id, shown) = match (id, name) {
        (Some(id), _) => (id.to_owned(), id.to_owned()),
        (None, Some(name)) => {
            match call(
                addr,
                "GET",
                &format!("/v1/acl/policy/name/{}", encode_key(name)),
                "",
            ) {
                Ok(policy) => (text(&policy, "ID").to_owned(), name.to_owned()),
                Err(e) => return fail(format!("Error looking up policy {name:?}: {e}")),
            }
        }
        (None, None) => return fail("Must specify either the -id or -name parameters"),
    };
    match call(
        addr,
        "DELETE",
        &format!("/v1/acl/policy/{}", encode_key(&id)),
        "",
    ) {
        Ok(_) => {
            println!("Policy \"{shown}\" deleted successfully");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error deleting policy {shown:?}: {e}")),
    }
}
