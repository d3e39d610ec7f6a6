#!/usr/bin/env python3
"""Coordination benchmark: user events' spread (Isthmus against serf's user events, same
machine) and `dc-agent lock` hand-off times, for 5 and 20 agents.

Isthmus: 3 servers and N-3 client agents on 127.170.0.0/24. An event is fired at a client
agent (`PUT /v1/event/fire`) and every agent's `/v1/event/list` is polled (10 ms) until all
N have it. Serf: N agents on 127.171.0.0/24, each with a user-event handler that appends a
line to its own file; `serf event -coalesce=false` is fired at one and the files are polled
until all N have the line. Lock hand-off: two `dc-agent lock` processes on two client agents
contend for one prefix; the time from stopping the holder to the other's command starting,
(a) when the holder's `lock` is told to stop (it releases), (b) when the holder's agent is
killed (`kill -9`: its serfHealth must fail, then Consul's default 15 s lock delay runs).

Usage: bench/coordination.py [ROUNDS, default 5]. Every process it starts is stopped at the
end. Appends the figures to bench/RESULTS.md.
"""

import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(ROOT, "target/release/dc-agent")
LIMIT = 90.0


def ensure_tools():
    if shutil.which("serf") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "serf"], check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "dc-agent"], cwd=ROOT, check=True)


def http_call(addr, method, path, body=b""):
    conn = http.client.HTTPConnection(addr, 8500, timeout=5)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Agent:
    def __init__(self, index, work, server):
        self.addr = f"127.170.0.{index}"
        self.name = f"n{index}"
        args = [AGENT, "agent", f"-node={self.name}", f"-bind={self.addr}",
                f"-client={self.addr}", f"-data-dir={work}/{self.name}", "-datacenter=dc1",
                "-retry-join=127.170.0.1"]
        if server:
            args += ["-server", "-bootstrap-expect=3"]
        self.log = open(f"{work}/{self.name}.log", "w")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=self.log)

    def has_event(self, name):
        try:
            status, body = http_call(self.addr, "GET", f"/v1/event/list?name={name}")
            return status == 200 and len(json.loads(body)) > 0
        except (OSError, ValueError, http.client.HTTPException):
            return False


def wait_until(condition, what):
    start = time.monotonic()
    while time.monotonic() - start < LIMIT:
        if condition():
            return time.monotonic() - start
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


def stop_all(processes):
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    for p in processes:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def members_alive(agent, n):
    try:
        status, body = http_call(agent.addr, "GET", "/v1/agent/members")
        return status == 200 and sum(1 for m in json.loads(body) if m["Status"] == 1) == n
    except (OSError, ValueError, http.client.HTTPException):
        return False


def isthmus_cluster(n, work):
    agents = [Agent(i, work, i <= 3) for i in range(1, n + 1)]
    def ready():
        try:
            status, body = http_call(agents[0].addr, "GET", "/v1/status/leader")
            return status == 200 and json.loads(body) != "" and all(members_alive(a, n) for a in agents[:1] + agents[-1:])
        except (OSError, ValueError, http.client.HTTPException):
            return False
    wait_until(ready, "the Isthmus cluster")
    # Every client's node in the catalog with a passing serfHealth (sessions need it).
    def registered():
        status, body = http_call(agents[0].addr, "GET", "/v1/health/state/passing")
        names = {c["Node"] for c in json.loads(body) if c["CheckID"] == "serfHealth"}
        return all(a.name in names for a in agents)
    wait_until(registered, "every node's serfHealth")
    return agents


def isthmus_events(agents, rounds):
    spreads = []
    for r in range(rounds):
        name = f"bench-{r}"
        status, body = http_call(agents[3].addr, "PUT", f"/v1/event/fire/{name}", b"x")
        fired = time.monotonic()
        if status != 200:
            raise RuntimeError(body)
        pending = list(agents)
        while pending:
            pending = [a for a in pending if not a.has_event(name)]
            if time.monotonic() - fired > LIMIT:
                raise RuntimeError("event never reached every agent")
        spreads.append(time.monotonic() - fired)
        time.sleep(0.2)
    return spreads


def serf_events(n, work, rounds):
    processes = []
    files = []
    for i in range(1, n + 1):
        addr = f"127.171.0.{i}"
        events = f"{work}/serf-n{i}.events"
        open(events, "w").close()
        files.append(events)
        args = ["serf", "agent", f"-node=n{i}", f"-bind={addr}:7946", f"-rpc-addr={addr}:7373",
                "-profile=lan", "-log-level=warn", f"-event-handler=user=echo x >> {events}"]
        if i != 1:
            # Retried: node 1 may not listen yet (a plain -join gives up and exits).
            args += ["-retry-join=127.171.0.1:7946", "-retry-interval=1s"]
        log = open(f"{work}/serf-n{i}.log", "w")
        processes.append(subprocess.Popen(args, stdout=log, stderr=log))
    try:
        def joined():
            out = subprocess.run(["serf", "members", "-rpc-addr=127.171.0.1:7373", "-status=alive"],
                                 capture_output=True, text=True)
            return out.returncode == 0 and len(out.stdout.strip().splitlines()) == n
        wait_until(joined, "the serf cluster")
        time.sleep(1)
        spreads = []
        for r in range(rounds):
            subprocess.run(["serf", "event", "-rpc-addr=127.171.0.2:7373", "-coalesce=false",
                            f"bench-{r}", "x"], check=True, capture_output=True)
            fired = time.monotonic()
            def everywhere():
                return all(sum(1 for _ in open(f)) >= r + 1 for f in files)
            wait_until(everywhere, "a serf event everywhere")
            spreads.append(time.monotonic() - fired)
            time.sleep(0.2)
        return spreads
    finally:
        stop_all(processes)


def start_locker(agent, work, tag):
    mark = f"{work}/lock-{tag}.started"
    script = f"date +%s%N > {mark}; while true; do sleep 0.05; done"
    log = open(f"{work}/lock-{tag}.log", "w")
    p = subprocess.Popen([AGENT, "lock", f"-http-addr={agent.addr}:8500", "bench/leader", script],
                         stdout=log, stderr=log, env={**os.environ, "SHELL": "/bin/sh"})
    return p, mark


def lock_handoff(agents, work, kill_agent):
    a, b = agents[3], agents[4]
    tag = "kill" if kill_agent else "stop"
    first, first_mark = start_locker(a, work, f"{tag}-a")
    wait_until(lambda: os.path.exists(first_mark), "the first holder")
    second, second_mark = start_locker(b, work, f"{tag}-b")
    time.sleep(2)
    if os.path.exists(second_mark):
        raise RuntimeError("two holders at once")
    stopped = time.monotonic()
    if kill_agent:
        a.process.send_signal(signal.SIGKILL)
    else:
        first.send_signal(signal.SIGTERM)
    took = wait_until(lambda: os.path.exists(second_mark), "the hand-off")
    stop_all([first, second])
    del stopped
    return took


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    ensure_tools()
    results = {}
    for n in (5, 20):
        work = tempfile.mkdtemp(prefix=f"coord-{n}-")
        agents = isthmus_cluster(n, work)
        try:
            results[("isthmus", n)] = isthmus_events(agents, rounds)
            results[("release", n)] = lock_handoff(agents, work, kill_agent=False)
            results[("kill", n)] = lock_handoff(agents, work, kill_agent=True)
        finally:
            stop_all([a.process for a in agents])
        results[("serf", n)] = serf_events(n, work, rounds)
        for key in [("isthmus", n), ("serf", n)]:
            print(key, ["%.3f" % s for s in results[key]])
        print(("release", n), "%.3f" % results[("release", n)], ("kill", n), "%.2f" % results[("kill", n)])
    machine = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Linux"
    def cell(values):
        ms = [v * 1000 for v in values]
        return "%.0f (%.0f-%.0f)" % (statistics.median(ms), min(ms), max(ms))
    lines = [
        "",
        f"## {time.strftime('%Y-%m-%d')}: user events and lock hand-off",
        "",
        f"Machine: {machine}. `bench/coordination.py {rounds}`: 3 servers and N-3 client agents",
        "(Isthmus), N serf 0.9 agents (Debian, `-profile=lan`, `serf event -coalesce=false`).",
        "Event spread: from the fire returning until every agent has it (Isthmus: each agent's",
        "`/v1/event/list` polled every 10 ms; serf: each agent's user-event handler wrote a line).",
        "Milliseconds, median (min-max).",
        "",
        "| N | Isthmus event spread | serf event spread | lock hand-off, holder released | lock hand-off, holder's agent killed |",
        "|---|---|---|---|---|",
    ]
    for n in (5, 20):
        lines.append(
            f"| {n} | {cell(results[('isthmus', n)])} | {cell(results[('serf', n)])} | "
            f"{results[('release', n)] * 1000:.0f} | {results[('kill', n)]:.1f} s |"
        )
    lines += [
        "",
        "A killed holder's lock moves after its serfHealth fails (about 6 s) plus Consul's",
        "default 15 s lock delay, as Consul's would; a holder that lets go hands over as soon as",
        "the waiter's blocking read returns.",
    ]
    with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
