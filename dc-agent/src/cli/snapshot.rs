//! `snapshot save | restore | inspect`, as `consul snapshot`.

use std::path::Path;
use std::process::ExitCode;

use super::{check, client, fail};
use crate::http::snapshot::parse;

/// `snapshot save FILE`.
pub fn save(addr: &str, file: &Path, stale: bool) -> ExitCode {
    let path = if stale {
        "/v1/snapshot?stale"
    } else {
        "/v1/snapshot"
    };
    let response = match check(client(addr).get(path), addr) {
        Ok(response) if response.status == 200 => response,
        Ok(response) => return fail(format!("Error saving snapshot: {}", response.text().trim())),
        Err(e) => return fail(format!("Error saving snapshot: {e}")),
    };
    // Verify before keeping it, as Consul does.
    let (meta, _) = match parse(&response.body) {
        Ok(parsed) => parsed,
        Err(e) => return fail(format!("Error verifying snapshot file: {e}")),
    };
    let temporary = file.with_extension("tmp");
    if let Err(e) =
        std::fs::write(&temporary, &response.body).and_then(|()| std::fs::rename(&temporary, file))
    {
        return fail(format!(
            "Error writing snapshot file {}: {e}",
            file.display()
        ));
    }
    println!("Saved and verified snapshot to index {}", meta.index);
    ExitCode::SUCCESS
}

/// `snapshot restore FILE`.
pub fn restore(addr: &str, file: &Path) -> ExitCode {
    let body = match read_file(file) {
        Ok(body) => body,
        Err(code) => return code,
    };
    match check(client(addr).put("/v1/snapshot", &body), addr) {
        Ok(response) if response.status == 200 => {
            println!("Restored snapshot");
            ExitCode::SUCCESS
        }
        Ok(response) => fail(format!(
            "Error restoring snapshot: {}",
            response.text().trim()
        )),
        Err(e) => fail(format!("Error restoring snapshot: {e}")),
    }
}

fn read_file(file: &Path) -> Result<Vec<u8>, ExitCode> {
    std::fs::read(file).map_err(|e| {
        fail(format!(
            "Error opening snapshot file {}: {e}",
            file.display()
        ))
    })
}

fn size_text(bytes: usize) -> String {
    match bytes {
        b if b >= 1024 * 1024 => format!("{:.1}MB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{:.1}KB", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

/// `snapshot inspect FILE`.
pub fn inspect(file: &Path) -> ExitCode {
    let body = match read_file(file) {
        Ok(body) => body,
        Err(code) => return code,
    };
    let (meta, state) = match parse(&body) {
        Ok(parsed) => parsed,
        Err(e) => return fail(format!("Error inspecting snapshot: {e}")),
    };
    println!(" ID           {}-{}", meta.term, meta.index);
    println!(" Size         {}", body.len());
    println!(" Index        {}", meta.index);
    println!(" Term         {}", meta.term);
    println!(" Version      {}", meta.version);
    println!(" Datacenter   {}", meta.datacenter);
    println!();
    let rows = [
        ("KVS", state.kv.len(), encoded(&state.kv)),
        (
            "Tombstone",
            state.kv_tombstones.len(),
            encoded(&state.kv_tombstones),
        ),
        ("Register (Node)", state.nodes.len(), encoded(&state.nodes)),
        (
            "Register (Service)",
            state.services.len(),
            encoded(&state.services),
        ),
        (
            "Register (Check)",
            state.checks.len(),
            encoded(&state.checks),
        ),
        (
            "Coordinate",
            state.coordinates.len(),
            encoded(&state.coordinates),
        ),
    ];
    let mut table = vec![
        vec!["Type".to_owned(), "Count".to_owned(), "Size".to_owned()],
        vec!["----".to_owned(), "----".to_owned(), "----".to_owned()],
    ];
    let mut total = (0, 0);
    for (name, count, size) in rows {
        total = (total.0 + count, total.1 + size);
        table.push(vec![name.to_owned(), count.to_string(), size_text(size)]);
    }
    table.push(vec![
        "----".to_owned(),
        "----".to_owned(),
        "----".to_owned(),
    ]);
    table.push(vec![
        "Total".to_owned(),
        total.0.to_string(),
        size_text(total.1),
    ]);
    for row in super::catalog::table(&table).lines() {
        println!(" {row}");
    }
    ExitCode::SUCCESS
}

/// The encoded size of one part of the snapshot, for `inspect`.
fn encoded<T: serde::Serialize>(part: &T) -> usize {
    postcard::to_allocvec(part).map_or(0, |v| v.len())
}
