//! Sessions and locks, applied as Raft would apply them.

use wire::command::{CheckRegistration, Command, CommandResult, Registration, TxnOp};
use wire::records::{HealthStatus, Session, SessionBehavior};

use super::State;

const S1: &str = "11111111-1111-1111-1111-111111111111";
const S2: &str = "22222222-2222-2222-2222-222222222222";

fn node(name: &str, checks: &[(&str, HealthStatus)]) -> Command {
    Command::Register(Box::new(Registration {
        node: name.into(),
        address: "10.0.0.1".into(),
        datacenter: "dc1".into(),
        checks: checks
            .iter()
            .map(|(id, status)| CheckRegistration {
                check_id: (*id).into(),
                name: (*id).into(),
                status: *status,
                notes: String::new(),
                output: String::new(),
                service_id: String::new(),
                check_type: String::new(),
            })
            .collect(),
        ..Registration::default()
    }))
}

fn session(id: &str, node: &str, checks: &[&str], behavior: SessionBehavior) -> Command {
    Command::SessionCreate(Box::new(Session {
        id: id.into(),
        name: String::new(),
        node: node.into(),
        node_checks: checks.iter().map(|c| (*c).to_owned()).collect(),
        service_checks: Vec::new(),
        lock_delay_ms: 15_000,
        behavior,
        ttl: String::new(),
        create_index: 0,
        modify_index: 0,
    }))
}

fn acquire(key: &str, value: &str, session: &str) -> Command {
    Command::KvLock {
        key: key.into(),
        value: value.into(),
        flags: 0,
        session: session.into(),
        cas: None,
    }
}

fn release(key: &str, session: &str) -> Command {
    Command::KvUnlock {
        key: key.into(),
        value: Vec::new(),
        flags: 0,
        session: session.into(),
        cas: None,
    }
}

/// A state with node n1 (serfHealth passing) and two sessions on it.
fn with_sessions(behavior: SessionBehavior) -> (State, u64) {
    let mut state = State::default();
    let commands = [
        node("n1", &[("serfHealth", HealthStatus::Passing)]),
        session(S1, "n1", &["serfHealth"], behavior),
        session(S2, "n1", &[], SessionBehavior::Release),
    ];
    for (i, command) in commands.iter().enumerate() {
        assert_eq!(state.apply(10 + i as u64, 0, command), CommandResult::Done);
    }
    (state, 13)
}

#[test]
fn a_session_needs_its_node_and_healthy_checks() {
    let mut state = State::default();
    let refused = |r: CommandResult| match r {
        CommandResult::Refused(why) => why,
        other => panic!("{other:?}"),
    };
    let missing = state.apply(
        1,
        0,
        &session(S1, "n1", &["serfHealth"], Default::default()),
    );
    assert_eq!(refused(missing), "Missing node registration");
    state.apply(2, 0, &node("n1", &[("serfHealth", HealthStatus::Critical)]));
    let no_check = state.apply(3, 0, &session(S1, "n1", &["other"], Default::default()));
    assert_eq!(refused(no_check), "Missing check 'other' registration");
    let critical = state.apply(
        4,
        0,
        &session(S1, "n1", &["serfHealth"], Default::default()),
    );
    assert_eq!(refused(critical), "Check 'serfHealth' is in critical state");
    assert!(state.sessions.is_empty());
    // Without checks, only the node is needed.
    assert_eq!(
        state.apply(5, 0, &session(S1, "n1", &[], Default::default())),
        CommandResult::Done
    );
    let created = state.sessions.get(S1).expect("created");
    assert_eq!((created.create_index, state.sessions.index), (5, 5));
}

#[test]
fn locks_are_exclusive_and_count_acquisitions() {
    let (mut state, mut i) = with_sessions(SessionBehavior::Release);
    let mut apply = |state: &mut State, c: Command| {
        i += 1;
        state.apply(i, 0, &c)
    };
    assert_eq!(
        apply(&mut state, acquire("lock", "a", S1)),
        CommandResult::Applied(true)
    );
    // Held by S1: S2 cannot take it, nor release it.
    assert_eq!(
        apply(&mut state, acquire("lock", "b", S2)),
        CommandResult::Applied(false)
    );
    assert_eq!(
        apply(&mut state, release("lock", S2)),
        CommandResult::Applied(false)
    );
    // The holder writes again: no new acquisition.
    assert_eq!(
        apply(&mut state, acquire("lock", "a2", S1)),
        CommandResult::Applied(true)
    );
    let entry = state.kv.get("lock").expect("key").clone();
    assert_eq!((entry.lock_index, entry.session.as_deref()), (1, Some(S1)));
    assert_eq!(entry.value, b"a2");
    // A plain write keeps the lock (as Consul's).
    apply(
        &mut state,
        Command::KvSet {
            key: "lock".into(),
            value: b"plain".to_vec(),
            flags: 0,
            cas: None,
        },
    );
    assert_eq!(
        state
            .kv
            .get("lock")
            .and_then(|e| e.session.clone())
            .as_deref(),
        Some(S1)
    );
    assert_eq!(
        apply(&mut state, release("lock", S1)),
        CommandResult::Applied(true)
    );
    assert_eq!(state.kv.get("lock").and_then(|e| e.session.clone()), None);
    assert_eq!(
        apply(&mut state, acquire("lock", "b", S2)),
        CommandResult::Applied(true)
    );
    assert_eq!(state.kv.get("lock").map(|e| e.lock_index), Some(2));
    // An unknown session is refused as a whole.
    assert!(matches!(
        apply(&mut state, acquire("other", "x", "nope")),
        CommandResult::Refused(_)
    ));
}

#[test]
fn a_critical_check_invalidates_its_sessions_and_releases_their_keys() {
    let (mut state, i) = with_sessions(SessionBehavior::Release);
    state.apply(i + 1, 0, &acquire("a", "1", S1));
    state.apply(i + 2, 0, &acquire("b", "2", S2));
    let now_ms = 1_000_000;
    state.apply(
        i + 3,
        now_ms,
        &node("n1", &[("serfHealth", HealthStatus::Critical)]),
    );
    // S1 watched serfHealth: gone, its key released (kept) in the same entry, and in its
    // lock delay. S2 watched nothing: untouched.
    assert!(state.sessions.get(S1).is_none());
    assert!(state.sessions.get(S2).is_some());
    let a = state.kv.get("a").expect("kept").clone();
    assert_eq!((a.session, a.modify_index), (None, i + 3));
    assert_eq!(state.lock_delays.until("a", now_ms), Some(now_ms + 15_000));
    assert_eq!(state.lock_delays.until("a", now_ms + 15_000), None);
    assert_eq!(state.lock_delays.until("b", now_ms), None);
    assert_eq!(state.sessions.index, i + 3);
}

#[test]
fn delete_behavior_deletes_the_keys_and_destroy_is_idempotent() {
    let (mut state, i) = with_sessions(SessionBehavior::Delete);
    state.apply(i + 1, 0, &acquire("a", "1", S1));
    let destroy = Command::SessionDestroy { id: S1.into() };
    assert_eq!(
        state.apply(i + 2, 0, &destroy),
        CommandResult::Applied(true)
    );
    assert!(state.kv.get("a").is_none());
    assert_eq!(state.kv.key_index("a"), i + 2);
    assert_eq!(
        state.apply(i + 3, 0, &destroy),
        CommandResult::Applied(false)
    );
}

#[test]
fn deregistering_the_node_ends_its_sessions() {
    let (mut state, i) = with_sessions(SessionBehavior::Release);
    state.apply(i + 1, 0, &acquire("a", "1", S2));
    let gone = Command::Deregister {
        node: "n1".into(),
        service_id: None,
        check_id: None,
    };
    state.apply(i + 2, 0, &gone);
    assert!(state.sessions.is_empty());
    assert_eq!(state.kv.get("a").and_then(|e| e.session.clone()), None);
}

#[test]
fn transactions_lock_unlock_and_check_sessions() {
    let (mut state, i) = with_sessions(SessionBehavior::Release);
    let lock = |key: &str, session: &str| TxnOp::Lock {
        key: key.into(),
        value: b"v".to_vec(),
        flags: 0,
        session: session.into(),
    };
    let ok = state.apply(i + 1, 0, &Command::Txn(vec![lock("a", S1), lock("b", S1)]));
    assert!(
        matches!(ok, CommandResult::Txn(Ok(ref e)) if e.len() == 2),
        "{ok:?}"
    );
    // All or nothing: S2 cannot take `a`, so `c` is not taken either.
    let refused = state.apply(i + 2, 0, &Command::Txn(vec![lock("c", S2), lock("a", S2)]));
    let CommandResult::Txn(Err(errors)) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(errors[0].op_index, 1);
    assert!(
        errors[0].what.contains("lock is already held"),
        "{errors:?}"
    );
    assert!(state.kv.get("c").is_none());
    let check = |session: &str| TxnOp::CheckSession {
        key: "a".into(),
        session: session.into(),
    };
    assert!(matches!(
        state.apply(i + 3, 0, &Command::Txn(vec![check(S1)])),
        CommandResult::Txn(Ok(_))
    ));
    assert!(matches!(
        state.apply(i + 4, 0, &Command::Txn(vec![check(S2)])),
        CommandResult::Txn(Err(_))
    ));
    let invalid = state.apply(i + 5, 0, &Command::Txn(vec![lock("d", "nope")]));
    assert!(matches!(invalid, CommandResult::Txn(Err(_))));
    // The session verb: destroyed with the transaction, its keys released.
    let unlock_and_end = Command::Txn(vec![
        TxnOp::Unlock {
            key: "b".into(),
            value: Vec::new(),
            flags: 0,
            session: S1.into(),
        },
        TxnOp::SessionDelete { id: S1.into() },
    ]);
    assert!(matches!(
        state.apply(i + 6, 0, &unlock_and_end),
        CommandResult::Txn(Ok(_))
    ));
    assert!(state.sessions.get(S1).is_none());
    assert_eq!(state.kv.get("a").and_then(|e| e.session.clone()), None);
}

#[test]
fn sessions_survive_a_snapshot() {
    let (mut state, i) = with_sessions(SessionBehavior::Delete);
    state.apply(i + 1, 0, &acquire("a", "1", S1));
    let encoded = wire::frame::to_bytes(&state.to_snapshot()).expect("encode");
    let decoded = wire::snapshot::StateSnapshot::decode(&encoded).expect("decode");
    let restored = State::from_snapshot(decoded);
    assert_eq!(restored, state);
    assert_eq!(
        restored.sessions.get(S1).map(|s| s.behavior),
        Some(SessionBehavior::Delete)
    );
}
