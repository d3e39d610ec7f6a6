#!/usr/bin/env python3
"""How long cross-DC requests stall when the gateway carrying them is killed with kill -9.

Two datacenters on loopback (release builds, `topology up --detach`): dc1 with one server
and two gateways, dc2 with one server and one gateway. A client sends
`GET /v1/kv/bench?dc=dc2` to dc1's server one after the other (2 s client timeout). In each
round, the dc1 gateway that carried the most requests so far is killed with `kill -9`;
the stall is the time from the kill to the first answer begun after it, and the round
also records the longest single request and any errors. `topology up` starts the killed
gateway again before the next round.

Usage: bench/gateway_kill.py [ROUNDS, default 5]. Appends to bench/RESULTS.md; 127.173.0.0/24
and 127.174.0.0/24 only; every process it starts is stopped (`topology down`).
"""

import http.client
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target/release")
FILE = """
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.173.0.1" }]
gateways = [{ name = "gw1", address = "127.173.0.100" }, { name = "gw2", address = "127.173.0.101" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.174.0.1" }]
gateways = [{ name = "gw1", address = "127.174.0.100" }]
"""


def topology(work, *args):
    return subprocess.run([os.path.join(RELEASE, "topology"), *args, "federation.toml"],
                          cwd=work, capture_output=True, text=True)


def get(path, timeout=2.0):
    conn = http.client.HTTPConnection("127.173.0.1", 8500, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def put(path, body):
    conn = http.client.HTTPConnection("127.173.0.1", 8500, timeout=5)
    try:
        conn.request("PUT", path, body=body)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def carried(address):
    """Cross-DC streams a gateway routed so far (its metrics)."""
    try:
        conn = http.client.HTTPConnection(address, 9100, timeout=2)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith("isthmus_cross_dc_requests_total"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


class Client(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.records = []  # (start, seconds, ok)
        self.stop = False

    def run(self):
        while not self.stop:
            started = time.time()
            try:
                ok = get("/v1/kv/bench?dc=dc2") == 200
            except OSError:
                ok = False
            self.records.append((started, time.time() - started, ok))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "dc-agent", "-p", "wan-gateway",
                    "-p", "topology"], cwd=ROOT, check=True)
    stalls, longest, errors = [], [], []
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "federation.toml"), "w") as f:
            f.write(FILE)
        up = topology(work, "up", "--detach")
        if up.returncode != 0:
            raise SystemExit(up.stdout + up.stderr)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if put("/v1/kv/bench?dc=dc2", b"v") == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            for _ in range(rounds):
                client = Client()
                client.start()
                time.sleep(3)
                counts = {name: carried(addr) for name, addr in
                          (("gw1", "127.173.0.100"), ("gw2", "127.173.0.101"))}
                victim = max(counts, key=counts.get)
                pid_file = os.path.join(work, ".isthmus/federation/dc1", victim, "agent.pid")
                with open(pid_file) as f:
                    pid = int(f.read().strip())
                killed = time.time()
                os.kill(pid, signal.SIGKILL)
                time.sleep(6)
                client.stop = True
                client.join()
                after = [r for r in client.records if r[0] >= killed and r[2]]
                stall = (after[0][0] - killed) if after else float("inf")
                around = [r for r in client.records if r[0] + r[1] >= killed]
                stalls.append(stall * 1000)
                longest.append(max(r[1] for r in around) * 1000 if around else 0)
                errors.append(sum(1 for r in around if not r[2]))
                topology(work, "up", "--detach")
                time.sleep(5)
        finally:
            topology(work, "down")
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    text = f"""
## {time.strftime('%Y-%m-%d')}: cross-DC requests when a gateway dies (kill -9)

Machine: {cpus} cores, {mem:.0f} GiB RAM, Linux {platform.release()}; loopback, release builds.
Command: `bench/gateway_kill.py {rounds}`: dc1 (one server, two gateways) asks dc2 one request
at a time; the dc1 gateway carrying the traffic is killed each round.

| round | stall after the kill (ms) | longest request around it (ms) | errors |
|---:|---:|---:|---:|
""" + "".join(f"| {i + 1} | {s:.0f} | {l:.0f} | {e} |\n"
              for i, (s, l, e) in enumerate(zip(stalls, longest, errors))) + f"""
Median stall {statistics.median(stalls):.0f} ms; worst longest request {max(longest):.0f} ms.
"""
    print(text)
    with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
