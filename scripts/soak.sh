#!/usr/bin/env bash
# The long fault run, on demand: `scripts/soak.sh [SECONDS, default 600]` runs both fault
# tests for that long each and prints their figures (faults survived, operations checked,
# writes of unknown outcome):
#   dc-agent/tests/faults.rs      kill -9 and SIGSTOP of leaders and followers of one DC;
#   dc-agent/tests/wan_faults.rs  two DCs in network namespaces (needs root): gateway kills,
#                                 WAN partitions, whole-DC kills, leave and restart.
# Every key's history is checked for linearizability. CI runs the same tests for 25 s and
# 40 s. Record the figures in RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
ISTHMUS_SOAK_SECONDS="$seconds" cargo test --locked -p dc-agent --test faults --test wan_faults \
  -- --nocapture 2>&1 \
  | grep -E "^faults:|^wan faults:|^acknowledged writes across|test result|panicked|not linearizable|every operation on the key"
