#!/usr/bin/env bash
# The long fault run, on demand: `scripts/soak.sh [SECONDS, default 600]` runs the fault
# suite (dc-agent/tests/faults.rs: kill -9 and SIGSTOP of leaders and followers under load,
# every key's history checked for linearizability) for that long and prints its figures
# (faults survived, operations checked, writes of unknown outcome). CI runs the same test
# for 25 s. Record the figures in RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
ISTHMUS_SOAK_SECONDS="$seconds" cargo test --locked -p dc-agent --test faults -- --nocapture 2>&1 \
  | grep -E "^faults:|test result|panicked|not linearizable" 
