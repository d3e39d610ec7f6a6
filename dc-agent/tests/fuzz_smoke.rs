//! Every fuzz target (`dc_agent::fuzzing`) briefly, on stable: the corpus in `fuzz/corpus/`,
//! seeds made here (valid frames, headers and gossip packets), and mutations of them (bit
//! flips, cuts, insertions, repeats, splices), `ISTHMUS_FUZZ_EXECS` executions per target
//! (default 20,000). A panic fails the test and leaves the input under
//! `target/fuzz-crashes/`. `scripts/fuzz.sh` runs the same targets under libFuzzer.
//!
//! `ISTHMUS_FUZZ_WRITE_SEEDS=1` also writes the seeds made here into the corpus.

use std::path::{Path, PathBuf};

use dc_agent::rpc::messages::{HttpRequest, RpcRequest};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Valid inputs of the binary targets, made with the encoders the agents use.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let frame = |v: &dyn erased::Encode| v.encode();
    match target {
        "rpc_frame" => vec![
            frame(&RpcRequest::Hello { version: 2 }),
            frame(&RpcRequest::ReadIndex),
            frame(&RpcRequest::Leave { id: 7 }),
            frame(&RpcRequest::TimeoutNow { leader: 1, term: 3 }),
            frame(&RpcRequest::Http(HttpRequest {
                method: "GET".to_owned(),
                uri: "/v1/kv/a?index=5&wait=1m".to_owned(),
                headers: vec![("x-consul-token".to_owned(), b"secret".to_vec())],
                body: Vec::new(),
            })),
            frame(&wire::command::Command::KvSet {
                key: "a".to_owned(),
                value: b"x".to_vec(),
                flags: 0,
                cas: None,
            }),
        ],
        "route_header" => vec![
            frame(&wire::route::StreamOpen::new(wire::route::StreamKind::Info)),
            frame(&wire::route::StreamOpen::new(
                wire::route::StreamKind::Forget("dc3".to_owned()),
            )),
            frame(&wire::route::RouteStatus::Delivered),
        ],
        "gossip_packet" => gossip_packets(),
        _ => Vec::new(),
    }
}

/// Real packets of a pool core announcing itself to a seed, plain and sealed.
fn gossip_packets() -> Vec<Vec<u8>> {
    let node = |i: u8| gossip::pool::NodeId {
        pool: gossip::pool::PoolKind::Lan,
        addr: std::net::SocketAddr::from(([127, 0, 0, i], 8301)),
        bump: 1,
        name: format!("n{i}"),
        server: true,
        rpc_port: 8300,
        dc: "dc1".to_owned(),
        build: "fuzz".to_owned(),
    };
    let start = std::time::Instant::now();
    let mut packets = Vec::new();
    for keyring in [
        None,
        gossip::keyring::Keyring::new(&["pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=".to_owned()])
            .ok()
            .map(|ring| gossip::keyfile::SharedKeyring::new(ring, None)),
    ] {
        let now = |ms: u64| gossip::pool::Now {
            at: start + std::time::Duration::from_millis(ms),
            unix_ms: 1_800_000_000_000 + ms,
        };
        let mut core = gossip::pool::PoolCore::new(node(1), keyring, vec![node(2)], now(0), 3);
        for ms in [0, 300, 600, 1_200, 2_400] {
            core.handle_timeout(now(ms));
            while let Some(transmit) = core.poll_transmit() {
                packets.push(transmit.packet);
            }
        }
    }
    packets
}

/// One mutation of `input` (or a splice with `other`).
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            0 if !out.is_empty() => {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let at = rng.below(out.len());
                out[at] = [0, 0xff, 0x7f, 0x80, b'"', b'{', b'\n'][rng.below(7)];
            }
            2 => {
                let at = rng.below(out.len() + 1);
                out.insert(at, rng.next() as u8);
            }
            3 if !out.is_empty() => {
                let at = rng.below(out.len());
                let len = 1 + rng.below((out.len() - at).min(16));
                out.drain(at..at + len);
            }
            4 if !out.is_empty() => {
                out.truncate(rng.below(out.len()));
            }
            5 if !out.is_empty() => {
                let at = rng.below(out.len());
                let len = 1 + rng.below((out.len() - at).min(32));
                let piece: Vec<u8> = out[at..at + len].to_vec();
                let times = 1 + rng.below(8);
                for _ in 0..times {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            _ if !other.is_empty() => {
                let cut = rng.below(out.len() + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => out.push(rng.next() as u8),
        }
    }
    out
}

fn run_one(target: &str, function: fn(&[u8]), input: &[u8]) {
    let outcome = std::panic::catch_unwind(|| function(input));
    if outcome.is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{target}-{}", input.len()));
        let _ = std::fs::write(&path, input);
        panic!(
            "fuzz target {target} panicked on {} bytes (saved to {}): {:02x?}",
            input.len(),
            path.display(),
            &input[..input.len().min(256)]
        );
    }
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations() {
    let execs: usize = std::env::var("ISTHMUS_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let write_seeds = std::env::var("ISTHMUS_FUZZ_WRITE_SEEDS").is_ok();
    let mut report = Vec::new();
    fn topology_file(data: &[u8]) {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = topology::model::parse(text, "fuzz");
        }
    }
    let mut targets: Vec<(&str, dc_agent::fuzzing::Target)> = dc_agent::fuzzing::TARGETS.to_vec();
    targets.push(("topology_file", topology_file));
    for (target, function) in &targets {
        let dir = corpus_dir(target);
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        let made = seeds(target);
        if write_seeds {
            for (i, seed) in made.iter().enumerate() {
                let _ = std::fs::write(dir.join(format!("seed-{i}")), seed);
            }
        }
        inputs.extend(made);
        assert!(
            !inputs.is_empty(),
            "{target} has no corpus in {}",
            dir.display()
        );
        let mut rng = Rng(0x5EED ^ target.len() as u64);
        let mut runs = 0;
        for input in &inputs {
            run_one(target, *function, input);
            runs += 1;
        }
        while runs < execs {
            let input = &inputs[rng.below(inputs.len())];
            let other = &inputs[rng.below(inputs.len())];
            let mutated = mutate(&mut rng, input, other);
            run_one(target, *function, &mutated);
            runs += 1;
        }
        report.push(format!("{target}: {runs}"));
    }
    println!("fuzz executions: {}", report.join(", "));
}

/// Frames as the agents send them.
mod erased {
    pub trait Encode {
        fn encode(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Vec<u8> {
            wire::frame::to_bytes(self).expect("a seed encodes")
        }
    }
}
