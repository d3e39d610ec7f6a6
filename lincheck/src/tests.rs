use super::*;

fn w(value: u64, invoked: u64, returned: u64) -> Entry {
    Entry {
        key: "k".to_owned(),
        op: Op::Write(Some(value)),
        invoked,
        returned: Some(returned),
    }
}

fn w_unknown(value: u64, invoked: u64) -> Entry {
    Entry {
        key: "k".to_owned(),
        op: Op::Write(Some(value)),
        invoked,
        returned: None,
    }
}

fn r(value: Option<u64>, invoked: u64, returned: u64) -> Entry {
    Entry {
        key: "k".to_owned(),
        op: Op::Read(value),
        invoked,
        returned: Some(returned),
    }
}

fn on(key: &str, mut entry: Entry) -> Entry {
    entry.key = key.to_owned();
    entry
}

#[test]
fn a_read_sees_the_last_write() {
    let history = [
        w(1, 0, 10),
        r(Some(1), 11, 12),
        w(2, 13, 20),
        r(Some(2), 21, 22),
    ];
    assert_eq!(
        check(&history, None),
        Ok(Summary {
            keys: 1,
            operations: 4,
            unknown: 0
        })
    );
}

#[test]
fn a_value_never_written_is_a_violation() {
    let history = [w(1, 0, 10), r(Some(7), 11, 12)];
    let violation = check(&history, None).expect_err("7 was never written");
    assert_eq!(violation.stuck_at.op, Op::Read(Some(7)));
}

#[test]
fn a_stale_read_after_a_newer_write_returned_is_a_violation() {
    let history = [w(1, 0, 10), w(2, 11, 20), r(Some(1), 21, 22)];
    assert!(check(&history, None).is_err());
}

#[test]
fn a_read_of_nothing_before_any_write_is_fine_and_after_one_is_not() {
    assert!(check(&[r(None, 0, 1), w(1, 2, 3)], None).is_ok());
    assert!(check(&[w(1, 0, 3), r(None, 4, 5)], None).is_err());
    // The initial value counts.
    assert!(check(&[r(Some(9), 0, 1)], Some(9)).is_ok());
}

#[test]
fn overlapping_operations_may_take_effect_in_either_order() {
    // A write overlapping two reads: old then new is fine.
    let history = [w(1, 0, 100), r(None, 10, 20), r(Some(1), 30, 40)];
    assert!(check(&history, None).is_ok());
    // New then old is not: once a read saw 1, a later read cannot see the past.
    let history = [w(1, 0, 100), r(Some(1), 10, 20), r(None, 30, 40)];
    assert!(check(&history, None).is_err());
    // Two overlapping writes and a read after both: either value.
    for seen in [1, 2] {
        let history = [w(1, 0, 50), w(2, 10, 60), r(Some(seen), 70, 80)];
        assert!(check(&history, None).is_ok(), "{seen}");
    }
}

#[test]
fn a_write_of_unknown_outcome_may_happen_late_or_never() {
    // Never seen: fine.
    assert!(check(&[w_unknown(5, 0), r(None, 100, 110)], None).is_ok());
    // Seen long after it began: fine.
    assert!(check(
        &[w_unknown(5, 0), r(None, 10, 20), r(Some(5), 100, 110)],
        None
    )
    .is_ok());
    // Seen, then gone again with nothing else written: a violation.
    let history = [w_unknown(5, 0), r(Some(5), 10, 20), r(None, 30, 40)];
    assert!(check(&history, None).is_err());
    // But not before it began.
    let history = [r(Some(5), 0, 5), w_unknown(5, 10)];
    assert!(check(&history, None).is_err());
}

#[test]
fn deletes_are_writes_of_nothing() {
    let delete = Entry {
        key: "k".to_owned(),
        op: Op::Write(None),
        invoked: 11,
        returned: Some(20),
    };
    assert!(check(&[w(1, 0, 10), delete.clone(), r(None, 21, 22)], None).is_ok());
    assert!(check(&[w(1, 0, 10), delete, r(Some(1), 21, 22)], None).is_err());
}

#[test]
fn keys_are_checked_apart() {
    let history = [
        on("a", w(1, 0, 10)),
        on("b", w(2, 5, 15)),
        on("a", r(Some(1), 20, 30)),
        on("b", r(Some(2), 20, 30)),
    ];
    let summary = check(&history, None).expect("linearizable");
    assert_eq!(summary.keys, 2);
    let history = [on("a", w(1, 0, 10)), on("b", r(Some(1), 20, 30))];
    let violation = check(&history, None).expect_err("b never had 1");
    assert_eq!(violation.key, "b");
}

/// A small deterministic generator (no dependency): xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A history of a real register: each operation takes effect at one instant inside its
/// interval, as a linearizable store's would. Four clients, overlapping operations.
fn register_history(rng: &mut Rng, operations: usize) -> Vec<Entry> {
    // (effect time, client, op index): effects in time order define the truth.
    let mut planned = Vec::new();
    let mut clock = [0u64; 4];
    let mut next_value = 1;
    for _ in 0..operations {
        let client = rng.below(4) as usize;
        let invoked = clock[client] + rng.below(5);
        let effect = invoked + 1 + rng.below(20);
        let returned = effect + 1 + rng.below(20);
        clock[client] = returned + 1;
        let write = rng.below(2) == 0;
        let value = if write {
            next_value += 1;
            Some(next_value)
        } else {
            None
        };
        planned.push((effect, invoked, returned, write, value));
    }
    planned.sort_by_key(|p| p.0);
    let mut state = None;
    let mut history = Vec::new();
    for (_, invoked, returned, write, value) in planned {
        let op = if write {
            state = value;
            Op::Write(value)
        } else {
            Op::Read(state)
        };
        history.push(Entry {
            key: "k".to_owned(),
            op,
            invoked,
            returned: Some(returned),
        });
    }
    history
}

#[test]
fn histories_of_a_real_register_pass_and_a_corrupted_read_fails() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut caught = 0;
    for round in 0..200 {
        let mut history = register_history(&mut rng, 40);
        assert!(
            check(&history, None).is_ok(),
            "round {round}: a real register's history was refused"
        );
        // A read that answers a value written only after it returned cannot be placed.
        let reads: Vec<usize> = (0..history.len())
            .filter(|i| matches!(history[*i].op, Op::Read(_)))
            .collect();
        let Some(&read) = reads.first() else { continue };
        let later_write = history.iter().find_map(|e| match e.op {
            Op::Write(Some(v)) if e.invoked > history[read].returned.unwrap_or(0) => Some(v),
            _ => None,
        });
        if let Some(value) = later_write {
            history[read].op = Op::Read(Some(value));
            assert!(check(&history, None).is_err(), "round {round}");
            caught += 1;
        }
    }
    assert!(caught > 50, "only {caught} corrupted histories were tried");
}

#[test]
fn a_long_history_is_checked_quickly() {
    let mut rng = Rng(42);
    let history = register_history(&mut rng, 2_000);
    // Four overlapping clients, 2,000 operations: memoization keeps the search linear in
    // practice (an exponential one would not finish).
    assert!(check(&history, None).is_ok());
}
