#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). Installs the outside tools some
# tests use (Debian's prometheus package for promtool, dnsutils for dig, iproute2 and curl for
# the network-namespace tests, which need root, nginx for the template test, chromium and
# chromium-driver for the web UI test), checks formatting and clippy, then runs every test of
# every crate.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v dig >/dev/null || need+=(dnsutils)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian packages the tests use)"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"
  else
    sudo apt-get update -q && sudo apt-get install -y -q --no-install-recommends "${need[@]}"
  fi
  # The nginx package may start Debian's own nginx on port 80; the tests run their own.
  if [[ " ${need[*]} " == *" nginx "* ]] && [ -f /run/nginx.pid ]; then
    /usr/sbin/nginx -s quit 2>/dev/null || true
  fi
fi

# The house rules first: formatted, and clippy clean (the workspace's lints included).
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
