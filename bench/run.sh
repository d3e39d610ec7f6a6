#!/usr/bin/env bash
# The benchmark: builds release binaries, installs Debian's etcd-server if missing, then runs
# kvbench, which appends its figures to bench/RESULTS.md. Takes about 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v etcd >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -q etcd-server; else sudo apt-get install -y -q etcd-server; fi
fi
cargo build --release -p dc-agent -p bench
exec ./target/release/kvbench --out bench/RESULTS.md "$@"
