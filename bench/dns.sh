#!/usr/bin/env bash
# DNS benchmark: dnsperf (Debian) asks `web.service.consul A` of
#   - an Isthmus server (answers from its state machine),
#   - an Isthmus client agent (answers from its view, kept current by blocking queries),
#   - NSD (Debian) serving the same three A records from a static zone, rate limiting off,
# one after the other on the same machine, and appends the figures to bench/RESULTS.md.
#   - an Isthmus server with ACLs on (deny; DNS through the default token's read policy),
# Usage: bench/dns.sh [SECONDS per target, default 10]. Loopback 127.101.0.0/24 only;
# every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-10}"
# The load generator and the servers on separate cores, so that each server under test has
# one core to itself (NSD runs one process; the agent's runtime then has one core too).
LOAD_CPU=0
SERVER_CPU=1
install() {
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -q "$@"; else sudo apt-get install -y -q "$@"; fi
}
command -v dnsperf >/dev/null || install dnsperf
command -v nsd >/dev/null || install nsd
cargo build --release -q -p dc-agent

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

agent=./target/release/dc-agent
SERVER=127.101.0.1 CLIENT=127.101.0.2 NSD_ADDR=127.101.0.3
taskset -c "$SERVER_CPU" "$agent" agent -server -bootstrap-expect=1 -node=s1 -bind=$SERVER -client=$SERVER \
  -data-dir="$work/s1" -datacenter=dc1 >"$work/s1.log" 2>&1 &
pids+=($!)
taskset -c "$SERVER_CPU" "$agent" agent -node=c1 -bind=$CLIENT -client=$CLIENT -data-dir="$work/c1" \
  -datacenter=dc1 -retry-join=$SERVER >"$work/c1.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  leader="$(curl -s "http://$SERVER:8500/v1/status/leader" || true)"
  [ -n "$leader" ] && [ "$leader" != '""' ] && break
  sleep 0.2
done
for n in 1 2 3; do
  curl -sf -X PUT "http://$SERVER:8500/v1/catalog/register" \
    -d "{\"Node\":\"n$n\",\"Address\":\"10.101.0.$n\",\"Service\":{\"Service\":\"web\",\"Port\":80}}" >/dev/null
done

# The same server with ACLs on (default_policy deny): DNS answers through the agent's
# default token, whose policy reads every node and service (Consul's DNS token).
ACL_SERVER=127.101.0.4
MANAGEMENT="$(cat /proc/sys/kernel/random/uuid)"
taskset -c "$SERVER_CPU" "$agent" agent -server -bootstrap-expect=1 -node=s2 -bind=$ACL_SERVER -client=$ACL_SERVER \
  -data-dir="$work/s2" -datacenter=dc1 \
  -hcl "acl { enabled = true default_policy = \"deny\" tokens { initial_management = \"$MANAGEMENT\" } }" \
  >"$work/s2.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -sf -H "X-Consul-Token: $MANAGEMENT" "http://$ACL_SERVER:8500/v1/acl/token/self" >/dev/null && break
  sleep 0.2
done
for n in 1 2 3; do
  curl -sf -X PUT -H "X-Consul-Token: $MANAGEMENT" "http://$ACL_SERVER:8500/v1/catalog/register" \
    -d "{\"Node\":\"n$n\",\"Address\":\"10.101.0.$n\",\"Service\":{\"Service\":\"web\",\"Port\":80}}" >/dev/null
done
curl -sf -X PUT -H "X-Consul-Token: $MANAGEMENT" "http://$ACL_SERVER:8500/v1/acl/policy" \
  -d '{"Name":"dns","Rules":"node_prefix \"\" { policy = \"read\" }\nservice_prefix \"\" { policy = \"read\" }"}' >/dev/null
dns_token="$(curl -sf -X PUT -H "X-Consul-Token: $MANAGEMENT" "http://$ACL_SERVER:8500/v1/acl/token" \
  -d '{"Description":"DNS","Policies":[{"Name":"dns"}]}' | sed -n 's/.*"SecretID":"\([^"]*\)".*/\1/p')"
curl -sf -X PUT -H "X-Consul-Token: $MANAGEMENT" "http://$ACL_SERVER:8500/v1/agent/token/default" \
  -d "{\"Token\":\"$dns_token\"}" >/dev/null
for addr in $SERVER $CLIENT $ACL_SERVER; do
  for _ in $(seq 100); do
    [ "$(dig @$addr -p 8600 +short web.service.consul | wc -l)" = 3 ] && break
    sleep 0.2
  done
  # A target that answers fewer records would be measured answering less: stop.
  if [ "$(dig @$addr -p 8600 +short web.service.consul | wc -l)" != 3 ]; then
    echo "$addr does not answer the three records; logs in $work" >&2
    exit 1
  fi
done

# NSD with the same answer: three A records, TTL 0, no rate limiting.
cat >"$work/consul.zone" <<'EOF'
$ORIGIN consul.
$TTL 0
@ IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0
@ IN NS ns.consul.
ns IN A 127.101.0.3
web.service IN A 10.101.0.1
web.service IN A 10.101.0.2
web.service IN A 10.101.0.3
EOF
cat >"$work/nsd.conf" <<EOF
server:
  ip-address: $NSD_ADDR@8600
  port: 8600
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$work"
  pidfile: "$work/nsd.pid"
  xfrdfile: "$work/xfrd.state"
  zonelistfile: "$work/zone.list"
  database: ""
  logfile: "$work/nsd.log"
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: consul
  zonefile: consul.zone
EOF
taskset -c "$SERVER_CPU" nsd -d -c "$work/nsd.conf" &
pids+=($!)
for _ in $(seq 50); do
  [ "$(dig @$NSD_ADDR -p 8600 +short web.service.consul | wc -l)" = 3 ] && break
  sleep 0.2
done

echo "web.service.consul A" >"$work/queries"
run() {
  taskset -c "$LOAD_CPU" dnsperf -s "$2" -p 8600 -d "$work/queries" -l "$SECONDS_PER_TARGET" -c 8 -q 64 >"$work/$1.out" 2>&1
  qps="$(awk '/Queries per second:/ {print $4}' "$work/$1.out")"
  lat="$(awk '/Average Latency/ {print $4}' "$work/$1.out")"
  lost="$(awk '/Queries lost:/ {print $3}' "$work/$1.out")"
  printf '| %s | %s | %.3f | %s |\n' "$1" "$qps" "$(echo "$lat * 1000" | bc -l)" "$lost"
}
rows="$(run "Isthmus server" $SERVER; run "Isthmus client agent" $CLIENT; run NSD $NSD_ADDR; run "Isthmus server, ACLs on (default token)" $ACL_SERVER)"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
server_qps="$(echo "$rows" | awk -F'|' 'NR==1 {print $3}')"
nsd_qps="$(echo "$rows" | awk -F'|' 'NR==3 {print $3}')"
client_qps="$(echo "$rows" | awk -F'|' 'NR==2 {print $3}')"
acl_qps="$(echo "$rows" | awk -F'|' 'NR==4 {print $3}')"
{
  echo
  echo "## $(date -u +%Y-%m-%d): DNS, Isthmus vs NSD"
  echo
  echo "Machine: $(nproc) cores, $cpu. \`bench/dns.sh $SECONDS_PER_TARGET\`: dnsperf $(dpkg-query -W -f="\${Version}" dnsperf 2>/dev/null)"
  echo "(8 clients, 64 outstanding, ${SECONDS_PER_TARGET}s per target) asking \`web.service.consul A\`"
  echo "(three instances, three A records); NSD $(nsd -v 2>&1 | head -1 | awk '{print $3}') serves the same records from a"
  echo "static zone with rate limiting off. Targets run one after the other on the same machine,"
  echo "each pinned to core $SERVER_CPU (taskset), dnsperf to core $LOAD_CPU."
  echo
  echo "| target | queries/s | mean latency (ms) | lost |"
  echo "|---|---|---|---|"
  echo "$rows"
  echo
  printf 'Isthmus server / NSD: %.2f; client agent / NSD: %.2f; server with ACLs / without: %.2f.\n' \
    "$(echo "$server_qps / $nsd_qps" | bc -l)" "$(echo "$client_qps / $nsd_qps" | bc -l)" \
    "$(echo "$acl_qps / $server_qps" | bc -l)"
} | tee -a bench/RESULTS.md
