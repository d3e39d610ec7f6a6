#!/usr/bin/env python3
"""Cross-DC benchmark: two datacenters (one server and one gateway each) on loopback.

1. DNS: dnsperf asks dc1's server for `web.service.consul` (local) and for
   `web.service.dc2.consul` (answered from dc1's view of dc2, kept current through the
   gateways), one after the other, the server pinned to one core and dnsperf to the other.
2. Uncached cross-DC latency: GET /v1/kv/key (local) and GET /v1/kv/key?dc=dc2 (through both
   gateways) on a kept-open HTTP connection, one at a time; p50 and p99 of each, and the
   latency the two gateway hops add.

Appends to bench/RESULTS.md. Usage: bench/federation.py [SECONDS per DNS target, default 10].
Loopback 127.111.0.0/24 and 127.112.0.0/24 only; every process it starts is stopped.
"""

import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target/release")
FILE = """
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.111.0.1" }]
gateways = [{ name = "gw1", address = "127.111.0.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.112.0.1" }]
gateways = [{ name = "gw1", address = "127.112.0.100" }]
"""


def request(conn, method, path, body=None):
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as e:
        conn.close()
        raise OSError(str(e)) from e


def wait(what, condition, limit=60):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def dnsperf(server, name, seconds, work):
    queries = os.path.join(work, "queries")
    with open(queries, "w") as f:
        f.write(f"{name} A\n")
    out = subprocess.run(
        ["taskset", "-c", "0", "dnsperf", "-s", server, "-p", "8600", "-d", queries,
         "-l", str(seconds), "-c", "8", "-q", "64"],
        capture_output=True, text=True, check=True,
    ).stdout
    qps = lat = None
    for line in out.splitlines():
        if "Queries per second:" in line:
            qps = float(line.split()[-1])
        if "Average Latency" in line:
            lat = float(line.split()[3]) * 1000
    return qps, lat


def latencies(path, n=2000):
    conn = http.client.HTTPConnection("127.111.0.1", 8500, timeout=10)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        status, _ = request(conn, "GET", path)
        samples.append((time.perf_counter() - start) * 1000)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    if shutil.which("dnsperf") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "dnsperf"], check=True)
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="federation-bench-")
    processes = []
    try:
        with open(os.path.join(work, "federation.toml"), "w") as f:
            f.write(FILE)
        subprocess.run(
            [os.path.join(RELEASE, "topology"), "render", "federation.toml", "--out", "out"],
            cwd=work, check=True, capture_output=True,
        )
        for dc in ("dc1", "dc2"):
            for node, binary, sub, config in (
                ("s1", "dc-agent", "agent", "agent.json"),
                ("gw1", "wan-gateway", "run", "gateway.toml"),
            ):
                log = open(os.path.join(work, f"{dc}-{node}.log"), "w")
                processes.append(subprocess.Popen(
                    ["taskset", "-c", "1", os.path.join(RELEASE, binary), sub, "--config",
                     os.path.join(work, "out", dc, node, config)],
                    stdout=log, stderr=log,
                ))
        local = http.client.HTTPConnection("127.111.0.1", 8500, timeout=10)
        remote = http.client.HTTPConnection("127.112.0.1", 8500, timeout=10)
        for conn, address in ((local, "10.111.0.1"), (remote, "10.112.0.1")):
            wait("a leader", lambda c=conn: request(c, "GET", "/v1/status/leader")[1] not in (b'""', b""))
            body = ('{"Node":"web-node","Address":"%s","Service":{"Service":"web","Port":80}}' % address)
            wait("a registration", lambda c=conn, b=body: request(c, "PUT", "/v1/catalog/register", b)[0] == 200)
        wait("the key in dc2", lambda: request(local, "PUT", "/v1/kv/bench?dc=dc2", b"v")[0] == 200)
        wait("the key in dc1", lambda: request(local, "PUT", "/v1/kv/bench", b"v")[0] == 200)
        for name in ("web.service.consul", "web.service.dc2.consul"):
            wait(name, lambda n=name: subprocess.run(
                ["dig", "+short", "@127.111.0.1", "-p", "8600", n],
                capture_output=True, text=True).stdout.strip() != "")
        local_qps, local_lat = dnsperf("127.111.0.1", "web.service.consul", seconds, work)
        cross_qps, cross_lat = dnsperf("127.111.0.1", "web.service.dc2.consul", seconds, work)
        local_p50, local_p99 = latencies("/v1/kv/bench")
        cross_p50, cross_p99 = latencies("/v1/kv/bench?dc=dc2")
    finally:
        for p in processes:
            p.kill()
        for p in processes:
            p.wait()
        shutil.rmtree(work, ignore_errors=True)
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    lines = [
        "",
        f"## {time.strftime('%Y-%m-%d', time.gmtime())}: cross-DC DNS and requests",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu}. `bench/federation.py {seconds}`: two datacenters",
        "(one server and one gateway each) on loopback; agents and gateways pinned to core 1,",
        "the load to core 0.",
        "",
        "DNS, dnsperf (8 clients, 64 outstanding) asking dc1's server:",
        "",
        "| name | queries/s | mean latency (ms) |",
        "|---|---|---|",
        f"| `web.service.consul` (local) | {local_qps:.0f} | {local_lat:.3f} |",
        f"| `web.service.dc2.consul` (cached view of dc2) | {cross_qps:.0f} | {cross_lat:.3f} |",
        "",
        f"Cross-DC / local throughput: {cross_qps / local_qps:.2f}.",
        "",
        "Uncached requests, one at a time on a kept-open connection (2000 each):",
        "",
        "| request | p50 (ms) | p99 (ms) |",
        "|---|---|---|",
        f"| `GET /v1/kv/bench` (local) | {local_p50:.3f} | {local_p99:.3f} |",
        f"| `GET /v1/kv/bench?dc=dc2` (two gateway hops) | {cross_p50:.3f} | {cross_p99:.3f} |",
        "",
        f"Added by the cross-DC path at p50: {cross_p50 - local_p50:.3f} ms.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
