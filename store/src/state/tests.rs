use expect_test::expect;
use wire::command::{
    CheckRegistration, Command, CommandResult, Registration, ServiceRegistration, TxnOp,
};
use wire::records::HealthStatus;

use super::State;

fn set(key: &str, value: &str) -> Command {
    Command::KvSet {
        key: key.into(),
        value: value.into(),
        flags: 0,
        cas: None,
    }
}

fn cas(key: &str, value: &str, index: u64) -> Command {
    Command::KvSet {
        key: key.into(),
        value: value.into(),
        flags: 0,
        cas: Some(index),
    }
}

/// Applies commands at indexes 10, 11, 12, ... and returns the state and each result.
fn run(commands: &[Command]) -> (State, String) {
    let mut state = State::default();
    let mut log = String::new();
    for (n, command) in commands.iter().enumerate() {
        let index = 10 + n as u64;
        let result = state.apply(index, 0, command);
        log.push_str(&format!("{index}: {}\n", describe(&result)));
    }
    (state, log)
}

fn describe(result: &CommandResult) -> String {
    match result {
        CommandResult::Applied(ok) => format!("{ok}"),
        CommandResult::Txn(Ok(entries)) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|e| {
                    format!(
                        "{}={:?}@{}/{}",
                        e.key,
                        String::from_utf8_lossy(&e.value),
                        e.create_index,
                        e.modify_index
                    )
                })
                .collect();
            format!("txn ok [{}]", entries.join(", "))
        }
        CommandResult::Txn(Err(errors)) => {
            let errors: Vec<String> = errors
                .iter()
                .map(|e| format!("op {}: {}", e.op_index, e.what))
                .collect();
            format!("txn rolled back [{}]", errors.join("; "))
        }
        CommandResult::Done => "done".into(),
        CommandResult::Refused(why) => format!("refused: {why}"),
        CommandResult::Nothing => "nothing".into(),
        CommandResult::Batch(results) => format!(
            "batch [{}]",
            results.iter().map(describe).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn kv_dump(state: &State) -> String {
    state
        .kv
        .list("")
        .map(|e| {
            format!(
                "{} = {:?} flags={} create={} modify={}\n",
                e.key,
                String::from_utf8_lossy(&e.value),
                e.flags,
                e.create_index,
                e.modify_index
            )
        })
        .collect()
}

#[test]
fn kv_set_cas_and_delete_follow_consul() {
    let (state, log) = run(&[
        set("foo", "bar"),
        set("foo", "baz"),
        cas("foo", "qux", 10), // stale: modify index is 11
        cas("foo", "qux", 11),
        cas("new", "x", 0), // cas=0 creates only if absent
        cas("new", "y", 0),
        Command::KvDelete {
            key: "new".into(),
            cas: Some(99),
        },
        Command::KvDelete {
            key: "new".into(),
            cas: Some(14),
        },
        Command::KvDelete {
            key: "never".into(),
            cas: None,
        },
        Command::KvSet {
            key: "flagged".into(),
            value: b"v".to_vec(),
            flags: 42,
            cas: None,
        },
    ]);
    expect![[r#"
        10: true
        11: true
        12: false
        13: true
        14: true
        15: false
        16: false
        17: true
        18: true
        19: true
    "#]]
    .assert_eq(&log);
    expect![[r#"
        flagged = "v" flags=42 create=19 modify=19
        foo = "qux" flags=0 create=10 modify=13
    "#]]
    .assert_eq(&kv_dump(&state));
}

#[test]
fn indexes_move_only_for_what_was_asked() {
    let (mut state, _) = run(&[set("a/1", "x"), set("a/2", "y"), set("b/1", "z")]);
    assert_eq!(state.kv.key_index("a/1"), 10);
    assert_eq!(state.kv.prefix_index("a/"), 11);
    assert_eq!(state.kv.prefix_index("b/"), 12);
    assert_eq!(state.kv.key_index("missing"), 1, "never below 1");
    state.apply(13, 0, &set("b/2", "w"));
    assert_eq!(
        state.kv.prefix_index("a/"),
        11,
        "a write under b/ does not move a/"
    );
    state.apply(
        14,
        0,
        &Command::KvDelete {
            key: "a/2".into(),
            cas: None,
        },
    );
    assert_eq!(state.kv.prefix_index("a/"), 14, "a delete moves its prefix");
    assert_eq!(state.kv.key_index("a/2"), 14, "and its key");
    state.apply(
        15,
        0,
        &Command::KvDeleteTree {
            prefix: "b/".into(),
        },
    );
    assert_eq!(state.kv.prefix_index("b/"), 15);
    assert_eq!(state.kv.list("b/").count(), 0);
    state.kv.reap_tombstones(20);
    assert_eq!(
        state.kv.key_index("a/2"),
        20,
        "reaping raises the floor; indexes never go back"
    );
    assert_eq!(state.kv.prefix_index("a/"), 20);
}

#[test]
fn indexes_never_decrease_under_random_operations() {
    let keys = ["a", "a/b", "a/c", "b", "b/a", "c"];
    let mut state = State::default();
    let mut seen: Vec<u64> = vec![0; keys.len() * 2];
    let mut random: u64 = 0x9e37_79b9_7f4a_7c15;
    for index in 1..2000u64 {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let key = keys[(random % keys.len() as u64) as usize];
        let command = match (random >> 8) % 5 {
            0 | 1 => set(key, "v"),
            2 => Command::KvDelete {
                key: key.into(),
                cas: None,
            },
            3 => Command::KvDeleteTree { prefix: key.into() },
            _ => cas(key, "w", (random >> 16) % index),
        };
        state.apply(index, 0, &command);
        if index % 97 == 0 {
            state.kv.reap_tombstones(index - 50);
        }
        for (n, key) in keys.iter().enumerate() {
            let now = [state.kv.key_index(key), state.kv.prefix_index(key)];
            for (slot, value) in now.into_iter().enumerate() {
                let before = &mut seen[n * 2 + slot];
                assert!(
                    value >= *before,
                    "index of {key} went from {before} to {value} at {index}"
                );
                assert!(value <= index.max(1));
                *before = value;
            }
        }
    }
}

#[test]
fn keys_with_a_separator_fold_subtrees() {
    let (state, _) = run(&[
        set("web/a", "1"),
        set("web/sub/x", "2"),
        set("web/sub/y", "3"),
        set("webz", "4"),
        set("other", "5"),
    ]);
    assert_eq!(state.kv.keys("web/", Some("/")), ["web/a", "web/sub/"]);
    assert_eq!(
        state.kv.keys("web", None),
        ["web/a", "web/sub/x", "web/sub/y", "webz"]
    );
    assert_eq!(state.kv.keys("", Some("/")), ["other", "web/", "webz"]);
}

#[test]
fn a_transaction_is_all_or_nothing() {
    let (state, log) = run(&[
        set("a", "1"),
        Command::Txn(vec![
            TxnOp::Set {
                key: "b".into(),
                value: b"2".to_vec(),
                flags: 0,
            },
            TxnOp::Cas {
                key: "a".into(),
                value: b"9".to_vec(),
                flags: 0,
                index: 3,
            },
            TxnOp::CheckNotExists { key: "a".into() },
        ]),
        Command::Txn(vec![
            TxnOp::Set {
                key: "b".into(),
                value: b"2".to_vec(),
                flags: 0,
            },
            TxnOp::Cas {
                key: "a".into(),
                value: b"9".to_vec(),
                flags: 0,
                index: 10,
            },
            TxnOp::GetTree { prefix: "".into() },
            TxnOp::Delete { key: "b".into() },
            TxnOp::CheckNotExists { key: "b".into() },
            TxnOp::Get { key: "a".into() },
        ]),
    ]);
    expect![[r#"
        10: true
        11: txn rolled back [op 1: failed to set key "a", index is stale; op 2: key "a" exists]
        12: txn ok [b=""@12/12, a=""@10/12, a="9"@10/12, b="2"@12/12, a="9"@10/12]
    "#]]
    .assert_eq(&log);
    expect![[r#"
        a = "9" flags=0 create=10 modify=12
    "#]]
    .assert_eq(&kv_dump(&state));
    assert_eq!(
        state.kv.key_index("b"),
        12,
        "a delete inside a transaction leaves a tombstone"
    );
}

fn register(
    node: &str,
    address: &str,
    service: Option<(&str, &str, &[&str])>,
    checks: &[(&str, &str, HealthStatus)],
) -> Command {
    Command::Register(Box::new(Registration {
        node: node.into(),
        address: address.into(),
        datacenter: "dc1".into(),
        service: service.map(|(id, name, tags)| ServiceRegistration {
            id: id.into(),
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            port: 80,
            ..Default::default()
        }),
        checks: checks
            .iter()
            .map(|(id, service_id, status)| CheckRegistration {
                check_id: id.to_string(),
                name: id.to_string(),
                status: *status,
                notes: String::new(),
                output: String::new(),
                service_id: service_id.to_string(),
                check_type: String::new(),
            })
            .collect(),
        ..Default::default()
    }))
}

fn health(state: &State, name: &str) -> String {
    state
        .catalog
        .service_health(name, &[])
        .iter()
        .map(|h| {
            let checks: Vec<String> = h
                .checks
                .iter()
                .map(|c| format!("{}:{}", c.check_id, c.status))
                .collect();
            format!(
                "{} on {} ({}) [{}] => {}\n",
                h.service.id,
                h.node.name,
                h.node.address,
                checks.join(" "),
                h.aggregate()
            )
        })
        .collect()
}

#[test]
fn catalog_registration_and_health() {
    use HealthStatus::*;
    let (mut state, log) = run(&[
        register(
            "n1",
            "10.0.0.1",
            Some(("web-1", "web", &["v1"])),
            &[("serfHealth", "", Passing), ("web-http", "web-1", Passing)],
        ),
        register(
            "n2",
            "10.0.0.2",
            Some(("web-2", "web", &["v2"])),
            &[("serfHealth", "", Passing), ("web-http", "web-2", Warning)],
        ),
        register("n2", "10.0.0.2", Some(("db", "db", &[])), &[]),
        register("n3", "10.0.0.3", None, &[("orphan", "nope", Passing)]),
        register("", "10.0.0.9", None, &[]),
    ]);
    expect![[r#"
        10: done
        11: done
        12: done
        13: refused: Unknown service ID "nope" for check "orphan"
        14: refused: Must provide node
    "#]]
    .assert_eq(&log);
    expect![[r#"
        web-1 on n1 (10.0.0.1) [serfHealth:passing web-http:passing] => passing
        web-2 on n2 (10.0.0.2) [serfHealth:passing web-http:warning] => warning
    "#]]
    .assert_eq(&health(&state, "web"));
    assert!(
        state.catalog.node("n3").is_none(),
        "a refused registration changes nothing"
    );
    assert_eq!(state.catalog.service_index("web"), 11);
    assert_eq!(state.catalog.service_index("db"), 12);

    // The same registration again changes nothing, so no blocking query wakes.
    state.apply(
        20,
        0,
        &register(
            "n1",
            "10.0.0.1",
            Some(("web-1", "web", &["v1"])),
            &[("serfHealth", "", Passing)],
        ),
    );
    assert_eq!(state.catalog.service_index("web"), 11);
    assert_eq!(state.catalog.node_index("n1"), 10);

    // n2's node-level check fails: every service on n2 changes health, nothing else does.
    state.apply(
        21,
        0,
        &register("n2", "10.0.0.2", None, &[("serfHealth", "", Critical)]),
    );
    assert_eq!(state.catalog.service_index("web"), 21);
    assert_eq!(state.catalog.service_index("db"), 21);
    assert_eq!(state.catalog.node_index("n1"), 10);
    expect![[r#"
        web-1 on n1 (10.0.0.1) [serfHealth:passing web-http:passing] => passing
        web-2 on n2 (10.0.0.2) [serfHealth:critical web-http:warning] => critical
    "#]]
    .assert_eq(&health(&state, "web"));

    // Deregistering a service takes its checks; deregistering a node takes everything.
    state.apply(
        22,
        0,
        &Command::Deregister {
            node: "n2".into(),
            service_id: Some("web-2".into()),
            check_id: None,
        },
    );
    assert_eq!(
        state
            .catalog
            .node_checks("n2")
            .map(|c| c.check_id.as_str())
            .collect::<Vec<_>>(),
        ["serfHealth"]
    );
    assert_eq!(state.catalog.service_index("web"), 22);
    state.apply(
        23,
        0,
        &Command::Deregister {
            node: "n2".into(),
            service_id: None,
            check_id: None,
        },
    );
    assert!(state.catalog.node("n2").is_none());
    assert_eq!(state.catalog.node_services("n2").count(), 0);
    assert_eq!(state.catalog.service_index("db"), 23);
    assert_eq!(state.catalog.indexes().nodes, 23);
    let names: Vec<&str> = state.catalog.service_names().keys().copied().collect();
    assert_eq!(names, ["web"]);
}

#[test]
fn a_snapshot_restores_the_same_state() {
    let (state, _) = run(&[
        set("a", "1"),
        Command::KvDelete {
            key: "a".into(),
            cas: None,
        },
        set("b", "2"),
        register(
            "n1",
            "10.0.0.1",
            Some(("web", "web", &["x"])),
            &[("c", "web", HealthStatus::Passing)],
        ),
    ]);
    let restored = State::from_snapshot(state.to_snapshot());
    assert_eq!(restored, state);
    assert_eq!(
        restored.kv.key_index("a"),
        11,
        "tombstones survive a snapshot"
    );
}

fn with_id(id: &str, command: Command) -> Command {
    match command {
        Command::Register(registration) => Command::RegisterWithId {
            id: id.into(),
            registration,
        },
        other => other,
    }
}

#[test]
fn node_ids_are_kept_unique_and_survive_plain_registrations_and_snapshots() {
    const ID: &str = "40e4a748-2192-161a-0510-9bf59fe950b5";
    let mut state = State::default();
    let result = state.apply(10, 0, &with_id(ID, register("n1", "10.0.0.1", None, &[])));
    assert_eq!(result, CommandResult::Done);
    assert_eq!(state.catalog.node("n1").map(|n| n.id.as_str()), Some(ID));
    // A registration without an ID (a service added by `Register`) keeps the node's.
    let result = state.apply(
        11,
        0,
        &register("n1", "10.0.0.2", Some(("web", "web", &[])), &[]),
    );
    assert_eq!(result, CommandResult::Done);
    assert_eq!(state.catalog.node("n1").map(|n| n.id.as_str()), Some(ID));
    // Another node may not take it; IDs compare without case.
    let result = state.apply(
        12,
        0,
        &with_id(&ID.to_uppercase(), register("n2", "10.0.0.3", None, &[])),
    );
    assert!(matches!(result, CommandResult::Refused(why) if why.contains("reserved by node")));
    assert!(state.catalog.node("n2").is_none());
    let restored = State::from_snapshot(state.to_snapshot());
    assert_eq!(restored, state);
}

#[test]
fn a_kv_batch_applies_each_command_as_if_alone() {
    let (state, log) = run(&[
        set("a", "1"),
        Command::KvBatch(vec![
            set("b", "2"),
            cas("a", "stale", 99),
            cas("a", "fresh", 10),
            Command::KvDelete {
                key: "never".into(),
                cas: None,
            },
        ]),
    ]);
    expect![[r#"
        10: true
        11: batch [true, false, true, true]
    "#]]
    .assert_eq(&log);
    assert_eq!(
        state.kv.get("a").map(|e| (e.value.clone(), e.modify_index)),
        Some((b"fresh".to_vec(), 11))
    );
}

#[test]
fn coordinates_are_kept_for_catalog_nodes_and_leave_with_them() {
    let near = wire::records::Coordinate {
        vec: vec![0.001; 8],
        ..Default::default()
    };
    let broken = wire::records::Coordinate {
        vec: vec![f64::NAN; 8],
        ..Default::default()
    };
    let (mut state, _) = run(&[
        register("n1", "10.0.0.1", None, &[]),
        Command::CoordinateBatchUpdate(vec![
            ("n1".into(), near.clone()),
            // Not in the catalog, or not a coordinate: ignored.
            ("ghost".into(), near.clone()),
            ("n1-broken".into(), broken),
        ]),
    ]);
    let nodes: Vec<&String> = state.coordinates.by_node.keys().collect();
    assert_eq!(nodes, ["n1"]);
    let written = state.coordinates.index;
    assert!(written > 0);
    // Snapshots carry them.
    assert_eq!(State::from_snapshot(state.to_snapshot()), state);
    // A node that leaves the catalog takes its coordinate, and the index moves.
    state.apply(
        written + 1,
        0,
        &Command::Deregister {
            node: "n1".into(),
            service_id: None,
            check_id: None,
        },
    );
    assert!(state.coordinates.by_node.is_empty());
    assert_eq!(state.coordinates.index, written + 1);
}

#[test]
fn service_names_compare_without_case_as_in_consul() {
    let (state, _) = run(&[register(
        "n1",
        "10.0.0.1",
        Some(("web-1", "Web", &[])),
        &[("c", "web-1", HealthStatus::Passing)],
    )]);
    let catalog = &state.catalog;
    for asked in ["web", "WEB", "Web"] {
        assert_eq!(catalog.instances(asked, &[]).count(), 1, "{asked}");
        assert_eq!(catalog.service_health(asked, &[]).len(), 1, "{asked}");
        assert_eq!(catalog.service_checks(asked).count(), 1, "{asked}");
        assert_eq!(catalog.service_index(asked), 10, "{asked}");
    }
    assert_eq!(catalog.instances("db", &[]).count(), 0);
    assert_eq!(catalog.service_index("db"), 1);
}

#[test]
fn tags_compare_without_case_as_in_consul() {
    let (state, _) = run(&[register(
        "n1",
        "10.0.0.1",
        Some(("web-1", "web", &["Primary", "v1"])),
        &[],
    )]);
    let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let catalog = &state.catalog;
    assert_eq!(catalog.instances("web", &tags(&["primary"])).count(), 1);
    assert_eq!(
        catalog.instances("web", &tags(&["PRIMARY", "V1"])).count(),
        1
    );
    assert_eq!(catalog.instances("web", &tags(&["v2"])).count(), 0);
}

#[test]
fn the_by_name_index_agrees_with_a_scan_under_random_operations() {
    let nodes = ["n1", "n2", "n3"];
    let names = ["web", "Web", "db", "cache"];
    let mut state = State::default();
    let mut random: u64 = 0x2545_f491_4f6c_dd1d;
    for index in 1..1500u64 {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let node = nodes[(random % 3) as usize];
        let id = format!("s{}", (random >> 4) % 4);
        let name = names[((random >> 8) % 4) as usize];
        let command = match (random >> 12) % 6 {
            0..=2 => register(node, "10.0.0.1", Some((&id, name, &["t"])), &[]),
            3 => Command::Deregister {
                node: node.into(),
                service_id: Some(id.clone()),
                check_id: None,
            },
            4 => Command::Deregister {
                node: node.into(),
                service_id: None,
                check_id: None,
            },
            _ => register(node, "10.0.0.2", None, &[]),
        };
        state.apply(index, 0, &command);
        for asked in ["web", "WEB", "db", "cache", "none"] {
            let mut indexed: Vec<(String, String)> = state
                .catalog
                .instances(asked, &[])
                .map(|(n, s)| (n.name.clone(), s.id.clone()))
                .collect();
            let (_, services, _, _) = state.catalog.to_parts();
            let mut scanned: Vec<(String, String)> = services
                .iter()
                .filter(|s| s.name.eq_ignore_ascii_case(asked))
                .filter(|s| state.catalog.node(&s.node).is_some())
                .map(|s| (s.node.clone(), s.id.clone()))
                .collect();
            indexed.sort();
            scanned.sort();
            assert_eq!(indexed, scanned, "{asked} at {index}");
        }
    }
    assert_eq!(State::from_snapshot(state.to_snapshot()), state);
}
