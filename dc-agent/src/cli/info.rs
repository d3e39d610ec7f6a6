//! `info` and `leave`.

use std::process::ExitCode;

use serde_json::Value;

use super::{check, client, fail};

/// Prints the agent's statistics by section, as `consul info` does.
pub fn info(addr: &str) -> ExitCode {
    let response = match check(client(addr).get("/v1/agent/self"), addr) {
        Ok(response) => response,
        Err(e) => return fail(e),
    };
    let body: Value = match response.json() {
        Ok(body) => body,
        Err(e) => return fail(e),
    };
    let Some(Value::Object(stats)) = body.get("Stats") else {
        return fail("the agent's answer has no Stats");
    };
    for (section, values) in stats {
        println!("{section}:");
        if let Value::Object(values) = values {
            for (key, value) in values {
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                println!("\t{key} = {text}");
            }
        }
    }
    ExitCode::SUCCESS
}

/// Asks the agent to leave the cluster and stop.
pub fn leave(addr: &str) -> ExitCode {
    match check(client(addr).put("/v1/agent/leave", b""), addr) {
        Ok(_) => {
            println!("Graceful leave complete");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("leaving: {e}")),
    }
}

/// Asks the agent to re-read its configuration.
pub fn reload(addr: &str) -> ExitCode {
    match check(client(addr).put("/v1/agent/reload", b""), addr) {
        Ok(_) => {
            println!("Configuration reload triggered");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
