#!/usr/bin/env python3
"""Blocking queries at scale through one client agent.

One server (127.175.0.1) and one client agent (127.175.0.2), release builds; the client
agent runs with `limits.http_max_conns_per_client = 0` (every query comes from one address).

1. Shared: N clients (default 10,000) each hold `GET /v1/kv/watched?index=X&wait=5m` on the
   client agent, the same query: RSS of both agents before and while they wait (and per
   1,000 queries), p50/p99 of ordinary requests through the client agent meanwhile, how
   many upstream queries the client agent holds, then the time from a write of the key to
   the last of the N answers, and RSS 8 s after the connections closed.
2. Distinct: N clients each hold a blocking query on a key of its own (none can share):
   ordinary requests must still be answered (p50/p99), and RSS is reported.

Usage: bench/blocking.py [N]. Appends to bench/RESULTS.md. Every process it starts is stopped.
"""

import json
import os
import platform
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from agentlib import AGENT, ROOT, call, raise_fd_limit, rss_mib, wait_until

SERVER, CLIENT = "127.175.0.1", "127.175.0.2"


def metric(addr, name):
    _, _, body = call(addr, "GET", "/v1/agent/metrics?format=prometheus")
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def start(work, name, addr, server, config):
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, f"{name}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    args = [AGENT, "agent", f"-node={name}", f"-bind={addr}", f"-client={addr}",
            f"-data-dir={work}/{name}", f"-config-file={path}", f"-retry-join={SERVER}"]
    if server:
        args += ["-server", "-bootstrap-expect=1"]
    log = open(os.path.join(work, f"{name}.log"), "w")
    return subprocess.Popen(args, stdout=log, stderr=log, preexec_fn=raise_fd_limit)


def latencies(count=200):
    times = []
    for i in range(count):
        started = time.perf_counter()
        status, _, _ = call(CLIENT, "GET", "/v1/kv/other")
        if status not in (200, 404):
            raise SystemExit(f"an ordinary request failed: {status}")
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def hold(paths):
    socks = []
    for path in paths:
        s = socket.create_connection((CLIENT, 8500))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        socks.append(s)
    return socks


def main():
    raise_fd_limit()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "dc-agent"], cwd=ROOT, check=True)
    client_config = {"limits": {"http_max_conns_per_client": 0}}
    with tempfile.TemporaryDirectory() as work:
        server = start(work, "s1", SERVER, True, {})
        client = start(work, "c1", CLIENT, False, client_config)
        try:
            wait_until("a leader", lambda: call(SERVER, "GET", "/v1/status/leader")[2] not in (b"", b'""'))
            wait_until("the client agent", lambda: call(CLIENT, "PUT", "/v1/kv/watched", b"0")[0] == 200)
            _, headers, _ = call(CLIENT, "GET", "/v1/kv/watched")
            index = headers.get("x-consul-index", "1")
            time.sleep(2)
            before_client, before_server = rss_mib(client.pid), rss_mib(server.pid)

            # 1. The same query, N times.
            socks = hold([f"/v1/kv/watched?index={index}&wait=5m"] * n)
            time.sleep(3)
            shared_client, shared_server = rss_mib(client.pid), rss_mib(server.pid)
            upstream = metric(CLIENT, "isthmus_blocking_queries_upstream")
            coalesced = metric(CLIENT, "isthmus_blocking_queries_coalesced_total")
            p50, p99 = latencies()
            selector = selectors.DefaultSelector()
            for s in socks:
                s.setblocking(False)
                selector.register(s, selectors.EVENT_READ)
            written = time.perf_counter()
            call(CLIENT, "PUT", "/v1/kv/watched", b"1")
            answered = 0
            last = written
            deadline = time.time() + 60
            while answered < n and time.time() < deadline:
                for key, _ in selector.select(timeout=1):
                    try:
                        data = key.fileobj.recv(65536)
                    except BlockingIOError:
                        continue
                    if data.startswith(b"HTTP/1.1 200"):
                        answered += 1
                        last = time.perf_counter()
                    selector.unregister(key.fileobj)
            wake_ms = (last - written) * 1000
            for s in socks:
                s.close()
            time.sleep(8)
            after_client = rss_mib(client.pid)

            # 2. N different queries: none can share.
            _, headers, _ = call(CLIENT, "GET", "/v1/kv/watched")
            index = headers.get("x-consul-index", "1")
            socks = hold([f"/v1/kv/distinct/{i}?index={index}&wait=5m" for i in range(n)])
            time.sleep(5)
            distinct_client, distinct_server = rss_mib(client.pid), rss_mib(server.pid)
            distinct_upstream = metric(CLIENT, "isthmus_blocking_queries_upstream")
            d50, d99 = latencies()
            for s in socks:
                s.close()
        finally:
            for agent in (client, server):
                agent.terminate()
                try:
                    agent.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    agent.kill()
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    text = f"""
## {time.strftime('%Y-%m-%d')}: blocking queries through one client agent

Machine: {cpus} cores, {mem:.0f} GiB RAM, Linux {platform.release()}; loopback, release builds.
Command: `bench/blocking.py {n}` (one server, one client agent; every query through the client agent).

| measure | figure |
|---|---:|
| client agent RSS before | {before_client:.1f} MiB |
| {n} waiting on the same key: client agent RSS | {shared_client:.1f} MiB ({(shared_client - before_client) / n * 1024 * 1024 / 1024:.1f} KiB a query) |
| server RSS meanwhile (before) | {shared_server:.1f} MiB ({before_server:.1f} MiB) |
| upstream queries the client agent holds for them / joined to one | {upstream:.0f} / {coalesced:.0f} |
| ordinary requests through the client agent meanwhile, p50 / p99 | {p50:.2f} / {p99:.2f} ms |
| a write, to the last of the {n} answers | {wake_ms:.0f} ms ({answered} answered) |
| client agent RSS 8 s after they closed | {after_client:.1f} MiB |
| {n} waiting on {n} different keys: client agent RSS / server RSS | {distinct_client:.1f} / {distinct_server:.1f} MiB |
| upstream queries held for them (at most 3,072) | {distinct_upstream:.0f} |
| ordinary requests meanwhile, p50 / p99 | {d50:.2f} / {d99:.2f} ms |
"""
    print(text)
    with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
