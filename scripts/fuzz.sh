#!/usr/bin/env bash
# Fuzzing on demand with libFuzzer: `scripts/fuzz.sh [SECONDS per target, default 60] [TARGET...]`.
# Installs cargo-fuzz if missing and needs a nightly toolchain (`rustup toolchain install
# nightly`). Runs each target of fuzz/ (the functions of dc_agent::fuzzing) from its corpus
# in fuzz/corpus/, which grows with what libFuzzer finds (`cargo fuzz cmin TARGET` shrinks it
# before committing any of it); a crash is left in fuzz/artifacts/. The test suite runs the same targets briefly on stable
# (dc-agent/tests/fuzz_smoke.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(rpc_frame route_header gossip_packet agent_config topology_file http_request dns_name template)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# Build first, in full view (a build error is not filtered away below).
(cd fuzz && cargo +nightly fuzz build)
for target in "${targets[@]}"; do
  echo "== $target (${seconds}s)"
  (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" 2>&1 \
    | grep -E "^#[0-9]+ *(DONE|pulse)|Done [0-9]+ runs|ERROR|panicked|SUMMARY" | tail -3)
done
