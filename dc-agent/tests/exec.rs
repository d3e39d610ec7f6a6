//! `dc-agent exec` as `consul exec`, on real agents: only an agent with
//! `disable_remote_exec = false` runs the job; its output, exit code and the summary come
//! back as Consul prints them, and the job's keys are gone afterwards.

mod support;

use std::time::Duration;

use support::{cli, Cluster};

#[test]
fn exec_runs_only_where_remote_exec_is_allowed() {
    let mut cluster = Cluster::render_with_clients(155, 1, 2, "");
    cluster.agents[1].edit_config(|config| {
        config["disable_remote_exec"] = serde_json::json!(false);
    });
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0]);
    cluster.wait_for(
        "every agent in the LAN pool",
        Duration::from_secs(30),
        |cl| {
            let text = cl.agents[0]
                .client()
                .get("/v1/health/state/passing")
                .ok()?
                .text();
            (text.contains("\"c1\"") && text.contains("\"c2\"")).then_some(())
        },
    );
    let server = cluster.agents[0].http();

    let (code, out, err) = cli(&server, &["exec", "echo hello; echo there"]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "    c1: hello",
            "    c1: there",
            "==> c1: finished with exit code 0",
            "1 / 1 node(s) completed / acknowledged"
        ],
        "{err}{}",
        cluster.logs()
    );

    // A failing command: its code, and `exec` exits 2.
    let (code, out, _) = cli(&server, &["exec", "-node=c1", "exit 3"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("==> c1: finished with exit code 3"), "{out}");
    // Filtered to an agent that refuses: nobody answers.
    let (code, out, _) = cli(&server, &["exec", "-node=^c2$", "-wait=1s", "echo no"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "0 / 0 node(s) completed / acknowledged");
    // The jobs cleaned up after themselves.
    let left = cluster.request(0, "GET", "/v1/kv/_rexec/?recurse", b"");
    assert_eq!(left.status, 404, "{}", left.text());
    // The data directory and the Raft log are the agent user's only (as Consul's).
    use std::os::unix::fs::PermissionsExt;
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cluster.agents[0].config).expect("config"))
            .expect("JSON");
    let data_dir = std::path::PathBuf::from(config["data_dir"].as_str().expect("data_dir"));
    let data_dir = if data_dir.is_relative() {
        cluster.agents[0]
            .config
            .parent()
            .expect("dir")
            .join(data_dir)
    } else {
        data_dir
    };
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .ok()
    };
    assert_eq!(mode(&data_dir), Some(0o700), "{}", data_dir.display());
    assert_eq!(mode(&data_dir.join("raft/log.redb")), Some(0o600));
    let c2_log = std::fs::read_to_string(&cluster.agents[2].log).unwrap_or_default();
    assert!(c2_log.contains("ignoring a remote exec job"), "{c2_log}");
}
