//! `kv get | put | delete`.

use std::io::Read;
use std::process::ExitCode;

use wire::api::KvPair;

use super::{check, client, fail};
use crate::client::encode_key;

/// `kv get` options.
pub struct GetOptions {
    /// Print every field.
    pub detailed: bool,
    /// All keys under the prefix.
    pub recurse: bool,
    /// Keys only.
    pub keys: bool,
    /// Separator for `-keys`.
    pub separator: Option<String>,
    /// Any server may answer.
    pub stale: bool,
    /// The datacenter to ask (`-datacenter`; default: the agent's).
    pub datacenter: Option<String>,
}

fn detailed(pair: &KvPair) -> String {
    format!(
        "CreateIndex      {}\nFlags            {}\nKey              {}\nLockIndex        {}\nModifyIndex      {}\nSession          {}\nValue            {}\n",
        pair.create_index,
        pair.flags,
        pair.key,
        pair.lock_index,
        pair.modify_index,
        pair.session.as_deref().unwrap_or("-"),
        String::from_utf8_lossy(&pair.value)
    )
}

/// `kv get [-detailed] [-recurse] [-keys] KEY`.
pub fn get(addr: &str, key: &str, options: &GetOptions) -> ExitCode {
    let mut query = Vec::new();
    if options.keys {
        query.push("keys".to_owned());
        query.push(format!(
            "separator={}",
            options.separator.clone().unwrap_or_else(|| "/".to_owned())
        ));
    } else if options.recurse {
        query.push("recurse".to_owned());
    }
    if options.stale {
        query.push("stale".to_owned());
    }
    if let Some(dc) = &options.datacenter {
        query.push(format!("dc={}", encode_key(dc)));
    }
    let path = format!(
        "/v1/kv/{}{}{}",
        encode_key(key),
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let response = match check(client(addr).get(&path), addr) {
        Ok(response) => response,
        Err(e) => return fail(e),
    };
    if response.status == 404 {
        if options.recurse || options.keys {
            return ExitCode::SUCCESS;
        }
        return fail(format!("No key exists at: {key}"));
    }
    if options.keys {
        match response.json::<Vec<String>>() {
            Ok(keys) => keys.iter().for_each(|k| println!("{k}")),
            Err(e) => return fail(e),
        }
        return ExitCode::SUCCESS;
    }
    let pairs: Vec<KvPair> = match response.json() {
        Ok(pairs) => pairs,
        Err(e) => return fail(e),
    };
    if options.recurse {
        let blocks: Vec<String> = pairs
            .iter()
            .map(|pair| {
                if options.detailed {
                    detailed(pair)
                } else {
                    format!("{}:{}\n", pair.key, String::from_utf8_lossy(&pair.value))
                }
            })
            .collect();
        print!("{}", blocks.join(if options.detailed { "\n" } else { "" }));
    } else if let Some(pair) = pairs.first() {
        if options.detailed {
            print!("{}", detailed(pair));
        } else {
            use std::io::Write;
            let mut out = std::io::stdout();
            let _ = out.write_all(&pair.value);
            let _ = out.write_all(b"\n");
        }
    }
    ExitCode::SUCCESS
}

/// Reads a `kv put` value: `-` is stdin, `@file` a file, anything else itself.
pub fn value_of(argument: Option<&str>) -> Result<Vec<u8>, String> {
    match argument {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| format!("reading stdin: {e}"))?;
            Ok(bytes)
        }
        Some(text) => match text.strip_prefix('@') {
            Some(path) => std::fs::read(path).map_err(|e| format!("reading {path}: {e}")),
            None => Ok(text.as_bytes().to_vec()),
        },
    }
}

/// `kv put [-cas -modify-index=N] [-flags=N] KEY [VALUE]`.
pub fn put(
    addr: &str,
    key: &str,
    value: Option<&str>,
    options: PutOptions,
    datacenter: Option<&str>,
) -> ExitCode {
    let PutOptions { cas, flags, lock } = options;
    let body = match value_of(value) {
        Ok(body) => body,
        Err(e) => return fail(e),
    };
    let mut query = Vec::new();
    if let Some((acquire, session)) = &lock {
        let verb = if *acquire { "acquire" } else { "release" };
        query.push(format!("{verb}={}", encode_key(session)));
    }
    if let Some(index) = cas {
        query.push(format!("cas={index}"));
    }
    if let Some(flags) = flags {
        query.push(format!("flags={flags}"));
    }
    if let Some(dc) = datacenter {
        query.push(format!("dc={}", encode_key(dc)));
    }
    let path = format!(
        "/v1/kv/{}{}{}",
        encode_key(key),
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let answer = check(client(addr).put(&path, &body), addr);
    if let Some((acquire, _)) = lock {
        let (done, not) = if acquire {
            ("acquired", "acquire")
        } else {
            ("released", "release")
        };
        return match answer {
            Ok(response) if response.text().trim() == "true" => {
                println!("Success! Lock {done} on: {key}");
                ExitCode::SUCCESS
            }
            Ok(response) if response.text().trim() == "false" => {
                fail(format!("Error! Did not {not} lock"))
            }
            Ok(response) => fail(format!(
                "Error! Failed writing data: {}",
                response.text().trim()
            )),
            Err(e) => fail(format!("Error! Failed writing data: {e}")),
        };
    }
    match answer {
        Ok(response) if response.text().trim() == "true" => {
            println!("Success! Data written to: {key}");
            ExitCode::SUCCESS
        }
        Ok(response) if response.text().trim() == "false" && cas.is_some() => {
            fail(format!("Did not write to {key}: CAS failed"))
        }
        Ok(response) => fail(format!("Failed writing data: {}", response.text().trim())),
        Err(e) => fail(format!("Failed writing data: {e}")),
    }
}

/// How `kv put` writes: check-and-set, flags, or taking (true) or releasing a session's
/// lock.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// `-cas -modify-index=N`.
    pub cas: Option<u64>,
    /// `-flags`.
    pub flags: Option<u64>,
    /// `-acquire` (true) or `-release`, with `-session`.
    pub lock: Option<(bool, String)>,
}

/// `kv delete [-recurse] [-cas -modify-index=N] KEY`.
pub fn delete(
    addr: &str,
    key: &str,
    recurse: bool,
    cas: Option<u64>,
    datacenter: Option<&str>,
) -> ExitCode {
    let mut query = Vec::new();
    if recurse {
        query.push("recurse".to_owned());
    }
    if let Some(index) = cas {
        query.push(format!("cas={index}"));
    }
    if let Some(dc) = datacenter {
        query.push(format!("dc={}", encode_key(dc)));
    }
    let path = format!(
        "/v1/kv/{}{}{}",
        encode_key(key),
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    match check(client(addr).delete(&path), addr) {
        Ok(response) if response.text().trim() == "true" => {
            if recurse {
                println!("Success! Deleted keys with prefix: {key}");
            } else {
                println!("Success! Deleted key: {key}");
            }
            ExitCode::SUCCESS
        }
        Ok(response) if response.text().trim() == "false" => {
            fail(format!("Did not delete key {key}: CAS failed"))
        }
        Ok(response) => fail(format!(
            "Error deleting key {key}: {}",
            response.text().trim()
        )),
        Err(e) => fail(format!("Error deleting key {key}: {e}")),
    }
}

/// One entry of `kv export` / `kv import`, as Consul writes them.
#[derive(serde::Serialize, serde::Deserialize)]
struct Exported {
    key: String,
    flags: u64,
    value: String,
}

/// `kv export [PREFIX]`: every key under the prefix as Consul's JSON (tab-indented).
pub fn export(addr: &str, prefix: &str, datacenter: Option<&str>) -> ExitCode {
    let dc = datacenter
        .map(|dc| format!("&dc={}", encode_key(dc)))
        .unwrap_or_default();
    let path = format!("/v1/kv/{}?recurse{dc}", encode_key(prefix));
    let response = match check(client(addr).get(&path), addr) {
        Ok(response) => response,
        Err(e) => return fail(format!("Error querying Consul agent: {e}")),
    };
    let pairs: Vec<KvPair> = if response.status == 404 {
        Vec::new()
    } else {
        match response.json() {
            Ok(pairs) => pairs,
            Err(e) => return fail(e),
        }
    };
    let exported: Vec<Exported> = pairs
        .into_iter()
        .map(|pair| Exported {
            key: pair.key,
            flags: pair.flags,
            value: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair.value),
        })
        .collect();
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    if let Err(e) = serde::Serialize::serialize(&exported, &mut serializer) {
        return fail(e);
    }
    println!("{}", String::from_utf8_lossy(&out));
    ExitCode::SUCCESS
}

/// `kv import [-prefix=P] DATA|@FILE|-`: writes every entry of a `kv export`.
pub fn import(addr: &str, data: Option<&str>, prefix: &str, datacenter: Option<&str>) -> ExitCode {
    let data = match value_of(data.or(Some("-"))) {
        Ok(data) => data,
        Err(e) => return fail(e),
    };
    let entries: Vec<Exported> = match serde_json::from_slice(&data) {
        Ok(entries) => entries,
        Err(e) => return fail(format!("Cannot unmarshal data: {e}")),
    };
    let dc = datacenter
        .map(|dc| format!("&dc={}", encode_key(dc)))
        .unwrap_or_default();
    for entry in entries {
        let value = match base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            entry.value.as_bytes(),
        ) {
            Ok(value) => value,
            Err(e) => return fail(format!("Cannot base 64 decode value: {e}")),
        };
        let key = format!("{prefix}{}", entry.key);
        let path = format!("/v1/kv/{}?flags={}{dc}", encode_key(&key), entry.flags);
        match check(client(addr).put(&path, &value), addr) {
            Ok(_) => println!("Imported: {key}"),
            Err(e) => return fail(format!("Failed writing data for key {key}: {e}")),
        }
    }
    ExitCode::SUCCESS
}
