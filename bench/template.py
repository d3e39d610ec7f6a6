#!/usr/bin/env python3
"""`dc-agent template` figures, release builds, one server agent (127.184.0.1):

1. Render latency: one template of `key "bench/value"` (no -wait); the time from an
   acknowledged `PUT /v1/kv/bench/value` to the file holding the new value, N rounds
   (default 30): p50, p99, max.
2. Idle cost: one runner with 50 templates, each watching a service of its own and a key
   (100 queries, 100 blocking reads held on the agent): the runner's CPU time (user +
   system, from /proc) and RSS over 30 s with nothing changing, and the agent's CPU meanwhile.

Usage: bench/template.py [N]. Appends to bench/RESULTS.md. Every process it starts is stopped.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from agentlib import AGENT, ROOT, rss_mib
from agentlib import call as call_at
from agentlib import wait_until as wait_at

SERVER = "127.184.0.1"
TEMPLATES = 50
IDLE_SECONDS = 30


def call(method, path, body=b""):
    status, _, body = call_at(SERVER, method, path, body)
    return status, body


def wait_until(what, test, limit=60, poll=0.05):
    wait_at(what, test, limit, poll)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "dc-agent"], cwd=ROOT, check=True)
    procs = []
    with tempfile.TemporaryDirectory() as work:
        log = open(os.path.join(work, "agent.log"), "w")
        agent = subprocess.Popen([AGENT, "agent", "-server", "-bootstrap-expect=1", "-node=s1",
                                  f"-bind={SERVER}", f"-client={SERVER}", f"-data-dir={work}/s1"],
                                 stdout=log, stderr=log)
        procs.append(agent)
        try:
            wait_until("the agent", lambda: call("PUT", "/v1/kv/bench/value", b"0")[1] == b"true")

            # 1. Render latency.
            source = os.path.join(work, "value.ctmpl")
            with open(source, "w") as f:
                f.write('{{ key "bench/value" }}')
            out = os.path.join(work, "value.txt")
            rlog = open(os.path.join(work, "runner.log"), "w")
            runner = subprocess.Popen([AGENT, "-http-addr", f"{SERVER}:8500", "template",
                                       "-template", f"{source}:{out}"], stdout=rlog, stderr=rlog)
            procs.append(runner)
            wait_until("the first render", lambda: read(out) == "0")
            samples = []
            for i in range(1, rounds + 1):
                time.sleep(0.1)
                start = time.perf_counter()
                if call("PUT", "/v1/kv/bench/value", str(i).encode())[1] != b"true":
                    raise SystemExit("a write failed")
                wait_until(f"render {i}", lambda: read(out) == str(i), limit=30, poll=0.001)
                samples.append((time.perf_counter() - start) * 1000)
            runner.terminate()
            runner.wait()
            samples.sort()
            p50 = statistics.median(samples)
            p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]

            # 2. Idle cost of 50 templates.
            blocks = []
            for i in range(TEMPLATES):
                body = json.dumps({"Node": f"node{i}", "Address": f"10.0.{i // 250}.{i % 250 + 1}",
                                   "Service": {"Service": f"svc{i}", "Port": 80}}).encode()
                if call("PUT", "/v1/catalog/register", body)[1] != b"true":
                    raise SystemExit("a registration failed")
                call("PUT", f"/v1/kv/bench/k{i}", b"v")
                src = os.path.join(work, f"t{i}.ctmpl")
                with open(src, "w") as f:
                    f.write(f'{{{{ range service "svc{i}" }}}}{{{{ .Address }}}}:{{{{ .Port }}}}'
                            f'{{{{ end }}}} {{{{ key "bench/k{i}" }}}}\n')
                blocks.append(f'template {{\n  source = "{src}"\n  destination = "{work}/t{i}.out"\n}}\n')
            config = os.path.join(work, "templates.hcl")
            with open(config, "w") as f:
                f.write("".join(blocks))
            runner = subprocess.Popen([AGENT, "-http-addr", f"{SERVER}:8500", "template",
                                       "-config", config], stdout=rlog, stderr=rlog)
            procs.append(runner)
            wait_until("50 renders", lambda: all(read(f"{work}/t{i}.out").endswith(" v\n")
                                                 for i in range(TEMPLATES)))
            time.sleep(2)
            r0, a0 = cpu_seconds(runner.pid), cpu_seconds(agent.pid)
            time.sleep(IDLE_SECONDS)
            r1, a1 = cpu_seconds(runner.pid), cpu_seconds(agent.pid)
            runner_cpu = (r1 - r0) / IDLE_SECONDS * 100
            agent_cpu = (a1 - a0) / IDLE_SECONDS * 100
            runner_rss = rss_mib(runner.pid)
            threads = len(os.listdir(f"/proc/{runner.pid}/task"))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.release()}"
    lines = [
        "",
        f"## dc-agent template ({time.strftime('%Y-%m-%d')}, {machine}, release build, loopback)",
        "",
        f"`python3 bench/template.py {rounds}`:",
        "",
        f"- Render latency, KV write acknowledged -> file rewritten (no -wait), {rounds} rounds: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {samples[-1]:.1f} ms.",
        f"- {TEMPLATES} templates watching {TEMPLATES * 2} queries, idle for {IDLE_SECONDS} s: "
        f"runner CPU {runner_cpu:.2f}% of one core, RSS {runner_rss:.1f} MiB, {threads} threads; "
        f"the agent holding the {TEMPLATES * 2} blocking reads: CPU {agent_cpu:.2f}%.",
    ]
    print("\n".join(lines))
    with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
