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

/// `monitor [-log-level=LEVEL] [-log-json]`: streams the agent's log lines until the agent
/// stops or this is interrupted.
pub fn monitor(addr: &str, level: Option<&str>, json: bool) -> ExitCode {
    let mut path = format!(
        "/v1/agent/monitor?loglevel={}",
        crate::client::encode_key(level.unwrap_or("info"))
    );
    if json {
        path.push_str("&logjson");
    }
    let (status, body) = match super::client_with_timeout(addr, None).stream(&path) {
        Ok(response) => response,
        Err(e) => return fail(format!("Error starting monitor: {e}")),
    };
    if status != 200 {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::Read::take(body, 64 * 1024), &mut text);
        return fail(format!(
            "Error starting monitor: Unexpected response code: {status} ({})",
            text.trim()
        ));
    }
    let mut reader = std::io::BufReader::new(body);
    let mut line = String::new();
    loop {
        line.clear();
        match std::io::BufRead::read_line(&mut reader, &mut line) {
            Ok(0) => break,
            Ok(_) => print!("{line}"),
            Err(e) => return fail(format!("Error reading the monitor: {e}")),
        }
    }
    println!("Remote side ended the monitor! This usually means that the");
    println!("remote side has exited or crashed.");
    ExitCode::SUCCESS
}
