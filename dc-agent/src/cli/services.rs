//! `services register | deregister`, as `consul services`: from flags or from service
//! definition files (JSON or HCL, Consul's config format, `service` or `services`).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Map, Value};

use super::{check, client, fail};
use crate::client::encode_key;

/// A service given with flags.
#[derive(Debug, Clone, Default)]
pub struct ServiceFlags {
    /// `-name`.
    pub name: Option<String>,
    /// `-id`.
    pub id: Option<String>,
    /// `-tag`, repeatable.
    pub tags: Vec<String>,
    /// `-address`.
    pub address: Option<String>,
    /// `-port`.
    pub port: Option<u16>,
    /// `-meta key=value`, repeatable.
    pub meta: Vec<String>,
}

/// The service definitions of files, as the agent reads them from its config files.
fn definitions(files: &[PathBuf]) -> Result<Vec<Value>, String> {
    let mut services = Vec::new();
    for file in files {
        let mut warnings = Vec::new();
        let object =
            crate::assemble::read_file(file, None, &mut warnings).map_err(|e| e.to_string())?;
        for warning in warnings {
            eprintln!("==> {warning}");
        }
        match object.get("services") {
            Some(Value::Array(list)) => services.extend(list.iter().cloned()),
            _ => {
                return Err(format!(
                    "{}: no service definition in the file",
                    file.display()
                ))
            }
        }
    }
    Ok(services)
}

fn from_flags(flags: &ServiceFlags) -> Result<Value, String> {
    let name = flags
        .name
        .clone()
        .ok_or("Service name is required (-name), or give a service definition file")?;
    let mut meta = Map::new();
    for entry in &flags.meta {
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| format!("-meta {entry:?} must be key=value"))?;
        meta.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    Ok(json!({
        "Name": name,
        "ID": flags.id.clone().unwrap_or_default(),
        "Tags": flags.tags,
        "Address": flags.address.clone().unwrap_or_default(),
        "Port": flags.port.unwrap_or(0),
        "Meta": meta,
    }))
}

/// `services register [flags] [FILE...]`.
pub fn register(addr: &str, flags: &ServiceFlags, files: &[PathBuf]) -> ExitCode {
    let services = if files.is_empty() {
        from_flags(flags).map(|s| vec![s])
    } else if flags.name.is_some() || flags.id.is_some() || flags.port.is_some() {
        Err("Flags and files cannot both be given: use one or the other".to_owned())
    } else {
        definitions(files)
    };
    let services = match services {
        Ok(services) => services,
        Err(e) => return fail(e),
    };
    for service in services {
        let name = ["Name", "name"]
            .iter()
            .find_map(|k| service.get(*k).and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned();
        let body = service.to_string();
        match check(
            client(addr).put("/v1/agent/service/register", body.as_bytes()),
            addr,
        ) {
            Ok(_) => println!("Registered service: {name}"),
            Err(e) => return fail(format!("Error registering service {name:?}: {e}")),
        }
    }
    ExitCode::SUCCESS
}

/// `services deregister -id=ID | FILE...`.
pub fn deregister(addr: &str, id: Option<&str>, files: &[PathBuf]) -> ExitCode {
    let ids: Vec<String> = match (id, files.is_empty()) {
        (Some(id), true) => vec![id.to_owned()],
        (None, false) => match definitions(files) {
            Ok(services) => services
                .iter()
                .filter_map(|s| {
                    let get = |k: &str| s.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
                    get("id").or_else(|| get("name")).map(str::to_owned)
                })
                .collect(),
            Err(e) => return fail(e),
        },
        (Some(_), false) => return fail("Give either -id or files, not both"),
        (None, true) => return fail("Deregistration requires -id or a service definition file"),
    };
    for id in ids {
        let path = format!("/v1/agent/service/deregister/{}", encode_key(&id));
        match check(client(addr).put(&path, b""), addr) {
            Ok(response) if response.status == 404 => {
                return fail(format!(
                    "Error deregistering service {id:?}: {}",
                    response.text().trim()
                ))
            }
            Ok(_) => println!("Deregistered service: {id}"),
            Err(e) => return fail(format!("Error deregistering service {id:?}: {e}")),
        }
    }
    ExitCode::SUCCESS
}
