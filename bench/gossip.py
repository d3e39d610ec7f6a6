#!/usr/bin/env python3
"""Gossip benchmark: Isthmus LAN gossip against HashiCorp's serf (Debian), same machine.

For N in (5, 20) and each system: start node 1, then the other N-1 at once, joining node 1,
and time until every node sees all N alive; then `kill -9` the last node and time until
every other node sees it failed. Both systems use their LAN timings and a 32-byte gossip
key; every node is polled over a kept-open connection every 50 ms (Isthmus: HTTP
/v1/agent/members; serf: its msgpack RPC). Appends the figures to bench/RESULTS.md.

Usage: bench/gossip.py [ROUNDS, default 3]. Loopback 127.102.0.0/24 (Isthmus) and
127.103.0.0/24 (serf) only; every process it starts is stopped at the end.
"""

import base64
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = base64.b64encode(bytes(range(32))).decode()
POLL = 0.05
LIMIT = 60.0


def ensure_tools():
    if shutil.which("serf") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "serf"], check=True)
    try:
        import msgpack  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "msgpack"], check=True)
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "dc-agent"], cwd=ROOT, check=True
    )


class IsthmusNode:
    def __init__(self, index, work, first):
        self.addr = f"127.102.0.{index}"
        self.name = f"n{index}"
        args = [
            os.path.join(ROOT, "target/release/dc-agent"), "agent",
            f"-node={self.name}", f"-bind={self.addr}", f"-client={self.addr}",
            f"-data-dir={work}/{self.name}", "-datacenter=dc1", f"-encrypt={KEY}",
        ]
        if index == 1:
            args += ["-server", "-bootstrap-expect=1"]
        else:
            args += [f"-retry-join={first}"]
        log = open(f"{work}/{self.name}.log", "w")
        self.process = subprocess.Popen(args, stdout=log, stderr=log)
        self.connection = None

    def statuses(self):
        """Member name -> 'alive' / 'failed' / 'left', or None when the node does not answer."""
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.addr, 8500, timeout=2)
            self.connection.request("GET", "/v1/agent/members")
            response = self.connection.getresponse()
            members = json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError):
            self.connection = None
            return None
        names = {1: "alive", 3: "left", 4: "failed"}
        return {m["Name"]: names.get(m["Status"], "?") for m in members}


class SerfNode:
    def __init__(self, index, work, first):
        self.addr = f"127.103.0.{index}"
        self.name = f"n{index}"
        args = [
            "serf", "agent", f"-node={self.name}", f"-bind={self.addr}:7946",
            f"-rpc-addr={self.addr}:7373", f"-encrypt={KEY}", "-profile=lan",
            "-log-level=warn",
        ]
        if index != 1:
            args += [f"-join={first}:7946"]
        log = open(f"{work}/serf-{self.name}.log", "w")
        self.process = subprocess.Popen(args, stdout=log, stderr=log)
        self.sock = None
        self.seq = 0

    def _call(self, command, body=None):
        import msgpack
        self.seq += 1
        self.sock.sendall(msgpack.packb({"Command": command, "Seq": self.seq}))
        if body is not None:
            self.sock.sendall(msgpack.packb(body))
        want = 2 if command == "members" else 1
        out = []
        while len(out) < want:
            for item in self.unpacker:
                out.append(item)
                if len(out) == want:
                    break
            else:
                data = self.sock.recv(65536)
                if not data:
                    raise OSError("closed")
                self.unpacker.feed(data)
        if out[0].get("Error"):
            raise OSError(out[0]["Error"])
        return out[-1]

    def statuses(self):
        import msgpack
        try:
            if self.sock is None:
                self.sock = socket.create_connection((self.addr, 7373), timeout=2)
                self.unpacker = msgpack.Unpacker(raw=False)
                self._call("handshake", {"Version": 1})
            reply = self._call("members")
        except OSError:
            self.sock = None
            return None
        return {m["Name"]: m["Status"] for m in reply["Members"]}


def wait(nodes, condition):
    start = time.monotonic()
    while time.monotonic() - start < LIMIT:
        views = [node.statuses() for node in nodes]
        if all(v is not None and condition(v) for v in views):
            return time.monotonic()
        time.sleep(POLL)
    raise RuntimeError("no convergence within %ss" % LIMIT)


def stop(nodes):
    for node in nodes:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
    for node in nodes:
        node.process.wait()


def round_of(kind, n):
    work = tempfile.mkdtemp(prefix=f"gossip-{kind.__name__}-")
    first = kind(1, work, None)
    nodes = [first]
    try:
        wait([first], lambda v: v.get(first.name) == "alive")
        started = time.monotonic()
        nodes += [kind(i, work, first.addr) for i in range(2, n + 1)]
        names = {node.name for node in nodes}
        converged = wait(
            nodes, lambda v: names <= set(v) and all(v[m] == "alive" for m in names)
        )
        victim = nodes[-1]
        killed = time.monotonic()
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        detected = wait(nodes[:-1], lambda v: v.get(victim.name) == "failed")
        return converged - started, detected - killed
    finally:
        stop(nodes)
        shutil.rmtree(work, ignore_errors=True)
        time.sleep(1)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    ensure_tools()
    serf_version = subprocess.run(
        ["serf", "version"], capture_output=True, text=True
    ).stdout.split("\n")[0]
    rows = []
    for n in (5, 20):
        for label, kind in (("Isthmus", IsthmusNode), ("serf", SerfNode)):
            joins, failures = [], []
            for _ in range(rounds):
                join, failure = round_of(kind, n)
                joins.append(join)
                failures.append(failure)
                print(f"{label} N={n}: all alive {join:.2f}s, failure seen {failure:.2f}s",
                      flush=True)
            rows.append((n, label, joins, failures))
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    fmt = lambda xs: f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"
    lines = [
        "",
        f"## {time.strftime('%Y-%m-%d', time.gmtime())}: LAN gossip, Isthmus vs serf",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()}. `bench/gossip.py {rounds}`:",
        f"serf {serf_version} (Debian) with `-profile=lan`, Isthmus with its LAN settings; both with a",
        "32-byte key.",
        "Node 1 first, then N-1 nodes at once joining it; every node polled every 50 ms over a",
        "kept-open connection. Seconds, median (min-max) of the rounds.",
        "",
        "| N | system | all see all alive | all see a `kill -9` as failed |",
        "|---|---|---|---|",
    ]
    for n, label, joins, failures in rows:
        lines.append(f"| {n} | {label} | {fmt(joins)} | {fmt(failures)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
