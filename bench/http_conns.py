#!/usr/bin/env python3
"""HTTP connection costs of one agent under idle and hostile clients.

One server agent (release build) on 127.172.0.1, -bootstrap-expect=1.

1. Idle keep-alive: N connections (default 5000) each send one request, read the answer and
   stay open. RSS before, with all N open (and per 1,000 connections), and 8 s after they
   close; p50/p99 of 200 ordinary requests on fresh connections while they are open. The
   agent runs with `limits.http_max_conns_per_client = 0` (no limit: all come from one
   address) and a 5 minute header-read timeout, so that nothing is closed under it.
2. Slowloris: S connections (default 3000) send a request line, then a header line every
   5 s. With the default header-read timeout (30 s), how many are still open after 40 s.
3. Per-client limit: with Consul's default (200), how many of 1,000 connections from one
   address are served, and how many answered 429.

Usage: bench/http_conns.py [N] [S]. Appends the figures to bench/RESULTS.md. Every process
it starts is stopped at the end.
"""

import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(ROOT, "target/release/dc-agent")
ADDR = "127.172.0.1"
PORT = 8500


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def request(sock, path="/v1/status/leader"):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head.split(b"\r\n")[0].decode(errors="replace")


def start_agent(work, config):
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "config.json")
    with open(path, "w") as f:
        json.dump(config, f)
    log = open(os.path.join(work, "agent.log"), "w")
    agent = subprocess.Popen(
        [AGENT, "agent", "-server", "-bootstrap-expect=1", "-node=n1", f"-bind={ADDR}",
         f"-client={ADDR}", f"-data-dir={work}/data", f"-config-file={path}"],
        stdout=log, stderr=log, preexec_fn=raise_fd_limit)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection((ADDR, PORT), timeout=1) as s:
                status = request(s)
                if status.startswith("HTTP/1.1 200"):
                    return agent
        except OSError:
            pass
        time.sleep(0.2)
    agent.kill()
    raise SystemExit("the agent did not come up; see its log in " + work)


def stop(agent):
    agent.terminate()
    try:
        agent.wait(timeout=20)
    except subprocess.TimeoutExpired:
        agent.kill()


def latencies(count=200):
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection((ADDR, PORT), timeout=5) as s:
            request(s, "/v1/kv/bench?stale")
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def idle(work, n):
    agent = start_agent(work, {"limits": {"http_max_conns_per_client": 0},
                               "isthmus": {"config_version": 1,
                                           "http_header_read_timeout": "5m"}})
    try:
        for _ in range(50):
            with socket.create_connection((ADDR, PORT)) as s:
                request(s)
        time.sleep(1)
        before = rss_kib(agent.pid)
        held = []
        for _ in range(n):
            s = socket.create_connection((ADDR, PORT))
            request(s)
            held.append(s)
        time.sleep(1)
        during = rss_kib(agent.pid)
        p50, p99 = latencies()
        for s in held:
            s.close()
        # The agent gives freed memory back when it next looks (every 5 s).
        time.sleep(8)
        after = rss_kib(agent.pid)
        return before, during, after, p50, p99
    finally:
        stop(agent)


def slowloris(work, count):
    agent = start_agent(work, {})
    socks = []
    try:
        for _ in range(count):
            try:
                s = socket.create_connection((ADDR, PORT))
                s.sendall(b"GET /v1/status/leader HTTP/1.1\r\n")
                socks.append(s)
            except OSError:
                break
        opened = len(socks)
        started = time.time()
        line = 0
        while time.time() - started < 40:
            time.sleep(5)
            line += 1
            alive = []
            for s in socks:
                try:
                    s.sendall(f"X-Slow-{line}: x\r\n".encode())
                    alive.append(s)
                except OSError:
                    s.close()
            socks = alive
        # A closed connection may still take one write: read to see the close.
        still_open = 0
        for s in socks:
            s.setblocking(False)
            try:
                if s.recv(1) != b"":
                    still_open += 1
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        return opened, still_open, rss_kib(agent.pid)
    finally:
        for s in socks:
            s.close()
        stop(agent)


def per_client(work, count=1000):
    agent = start_agent(work, {})
    socks = []
    served = refused = 0
    try:
        for _ in range(count):
            s = socket.create_connection((ADDR, PORT))
            status = request(s)
            if status.startswith("HTTP/1.1 200"):
                served += 1
            elif status.startswith("HTTP/1.1 429"):
                refused += 1
            socks.append(s)
        return served, refused
    finally:
        for s in socks:
            s.close()
        stop(agent)


def main():
    raise_fd_limit()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    slow = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "dc-agent"], cwd=ROOT,
                   check=True)
    with tempfile.TemporaryDirectory() as work:
        before, during, after, p50, p99 = idle(os.path.join(work, "idle"), n)
    with tempfile.TemporaryDirectory() as work:
        opened, still_open, slow_rss = slowloris(os.path.join(work, "slow"), slow)
    with tempfile.TemporaryDirectory() as work:
        served, refused = per_client(os.path.join(work, "limit"))
    per_thousand = (during - before) / n * 1000 / 1024
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    text = f"""
## {time.strftime('%Y-%m-%d')}: HTTP connections, idle and hostile

Machine: {cpus} cores, {mem:.0f} GiB RAM, Linux {platform.release()}; agent and clients on one machine, loopback.
Command: `bench/http_conns.py {n} {slow}` (release build, one server agent).

| measure | figure |
|---|---:|
| RSS before | {before / 1024:.1f} MiB |
| RSS with {n} idle keep-alive connections | {during / 1024:.1f} MiB |
| RSS per 1,000 idle connections | {per_thousand:.2f} MiB |
| RSS 8 s after they closed | {after / 1024:.1f} MiB |
| ordinary requests while they are open, p50 / p99 | {p50:.2f} / {p99:.2f} ms |
| slowloris connections opened | {opened} |
| still open after 40 s (header-read timeout 30 s) | {still_open} |
| RSS at the end of the slowloris run | {slow_rss / 1024:.1f} MiB |
| 1,000 connections from one address, default limit 200: served / 429 | {served} / {refused} |
"""
    print(text)
    with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
