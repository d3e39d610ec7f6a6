#!/usr/bin/env python3
"""How well Isthmus measures what a WAN adds: two datacenters (one server and one gateway
each) on loopback, each gateway reached only through a UDP relay that holds every datagram
for DELAY ms each way, so every WAN round trip takes 2 x DELAY more. Reports, once settled:

- the gateways' WAN link RTT (`isthmus_wan_rtt_seconds`, QUIC's smoothed RTT);
- `dc-agent rtt -wan dc2` (the datacenter's RTT as operators read it);
- `dc-agent rtt -wan s1.dc1 s1.dc2` (the servers' Vivaldi coordinates, learned from their
  own probes across both gateways);

each against the injected round trip, as a relative error. The end-to-end test
(`federation.rs`) only checks that the measures are there and not below the injected delay;
how close they come is measured here.

Appends to bench/RESULTS.md. Usage: bench/wan_rtt.py [DELAY_MS, default 30] [SECONDS to settle,
default 60]. Loopback 127.118.0.0/24 and 127.119.0.0/24 only; every process it starts is
stopped.
"""

import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target/release")
FILE = """
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.118.0.1" }]
gateways = [{ name = "gw1", address = "127.118.0.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.119.0.1" }]
gateways = [{ name = "gw1", address = "127.119.0.100" }]
"""


class DelayRelay:
    """UDP relay: datagrams to `listen` go to `target` after `delay` seconds, from one
    socket per sender; answers go back to that sender after the same delay."""

    def __init__(self, listen, target, delay):
        self.target = target
        self.delay = delay
        self.listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.listen.bind(listen)
        self.upstreams = {}
        self.queue = []
        self.cond = threading.Condition()
        self.stopped = False
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listen, selectors.EVENT_READ, None)
        threading.Thread(target=self.receive, daemon=True).start()
        threading.Thread(target=self.send, daemon=True).start()

    def receive(self):
        while not self.stopped:
            for key, _ in self.selector.select(timeout=0.05):
                sock = key.fileobj
                data, sender = sock.recvfrom(65536)
                due = time.monotonic() + self.delay
                if key.data is None:  # from a client: on to the target
                    upstream = self.upstreams.get(sender)
                    if upstream is None:
                        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        upstream.bind((self.listen.getsockname()[0], 0))
                        self.upstreams[sender] = upstream
                        self.selector.register(upstream, selectors.EVENT_READ, sender)
                    item = (due, upstream, self.target, data)
                else:  # from the target: back to that client
                    item = (due, self.listen, key.data, data)
                with self.cond:
                    self.queue.append(item)
                    self.cond.notify()

    def send(self):
        while not self.stopped:
            with self.cond:
                while not self.queue and not self.stopped:
                    self.cond.wait(0.05)
                if self.stopped:
                    return
                due, sock, to, data = self.queue.pop(0)
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                sock.sendto(data, to)
            except OSError:
                pass

    def stop(self):
        self.stopped = True


def relay_gateway(path, advertise, remote):
    """Makes a rendered gateway.toml advertise `advertise` and dial `remote`."""
    with open(path, "rb") as f:
        config = tomllib.load(f)
    text = open(path).read()
    text = re.sub(r'(?m)^advertise_addr\s*=.*$', "", text)
    text = f'advertise_addr = "{advertise}"\n' + text
    for entry in config.get("remote_gateways", []):
        text = text.replace(f'"{entry["address"]}"', f'"{remote}"')
    with open(path, "w") as f:
        f.write(text)


def wan_rtt(gateway, dst):
    body = urllib.request.urlopen(f"http://{gateway}:9100/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith("isthmus_wan_rtt_seconds{") and f'dst_dc="{dst}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def cli(args):
    out = subprocess.run([os.path.join(RELEASE, "dc-agent"), "-http-addr=127.118.0.1:8500", *args],
                         capture_output=True, text=True)
    match = re.search(r"rtt: ([0-9.]+) ms", out.stdout)
    return float(match.group(1)) / 1000 if out.returncode == 0 and match else None


def main():
    delay = (int(sys.argv[1]) if len(sys.argv) > 1 else 30) / 1000
    settle = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    expected = 2 * delay
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="wan-rtt-bench-")
    processes, relays = [], []
    samples = {"gateway dc1 -> dc2": [], "gateway dc2 -> dc1": [], "rtt -wan dc2": [],
               "rtt -wan s1.dc1 s1.dc2": []}
    try:
        with open(os.path.join(work, "federation.toml"), "w") as f:
            f.write(FILE)
        subprocess.run([os.path.join(RELEASE, "topology"), "render", "federation.toml", "--out", "out"],
                       cwd=work, check=True, capture_output=True)
        out = os.path.join(work, "out")
        relay_gateway(os.path.join(out, "dc1/gw1/gateway.toml"), "127.118.0.200:8443", "127.119.0.200:8443")
        relay_gateway(os.path.join(out, "dc2/gw1/gateway.toml"), "127.119.0.200:8443", "127.118.0.200:8443")
        relays = [DelayRelay(("127.118.0.200", 8443), ("127.118.0.100", 8443), delay),
                  DelayRelay(("127.119.0.200", 8443), ("127.119.0.100", 8443), delay)]
        for dc in ("dc1", "dc2"):
            for node, binary, sub, config in (("s1", "dc-agent", "agent", "agent.json"),
                                              ("gw1", "wan-gateway", "run", "gateway.toml")):
                log = open(os.path.join(work, f"{dc}-{node}.log"), "w")
                processes.append(subprocess.Popen(
                    [os.path.join(RELEASE, binary), sub, "--config", os.path.join(out, dc, node, config)],
                    stdout=log, stderr=log))
        # Let the links and coordinates settle, then sample once a second for 20 s.
        time.sleep(settle)
        for _ in range(20):
            for name, read in (("gateway dc1 -> dc2", lambda: wan_rtt("127.118.0.100", "dc2")),
                               ("gateway dc2 -> dc1", lambda: wan_rtt("127.119.0.100", "dc1")),
                               ("rtt -wan dc2", lambda: cli(["rtt", "-wan", "dc2"])),
                               ("rtt -wan s1.dc1 s1.dc2", lambda: cli(["rtt", "-wan", "s1.dc1", "s1.dc2"]))):
                try:
                    value = read()
                except OSError:
                    value = None
                if value is not None:
                    samples[name].append(value)
            time.sleep(1)
    finally:
        for relay in relays:
            relay.stop()
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
        f"## {time.strftime('%Y-%m-%d', time.gmtime())}: WAN round trips measured through a delay relay",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu}. `bench/wan_rtt.py {int(delay * 1000)} {settle}`: two",
        f"datacenters on loopback, each gateway behind a UDP relay holding datagrams {delay * 1000:.0f} ms",
        f"each way (injected round trip {expected * 1000:.0f} ms); {settle} s to settle, then 20 samples a second apart.",
        "",
        "| measure | samples | median (ms) | min (ms) | max (ms) | median error |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in samples.items():
        if not values:
            lines.append(f"| {name} | 0 | - | - | - | - |")
            continue
        values.sort()
        median = values[len(values) // 2]
        lines.append(f"| {name} | {len(values)} | {median * 1000:.1f} | {values[0] * 1000:.1f} | "
                     f"{values[-1] * 1000:.1f} | {(median - expected) / expected * 100:+.0f}% |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
