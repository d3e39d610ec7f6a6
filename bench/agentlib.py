"""What the Python benchmarks share: where the release agent is, raw HTTP calls on a fresh
connection, an agent's RSS, waiting for a condition, and a higher open-file limit."""

import os
import resource
import socket
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(ROOT, "target/release/dc-agent")


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def call(addr, method, path, body=b"", timeout=10):
    """One request on its own connection to ADDR:8500: (status, headers, body)."""
    with socket.create_connection((addr, 8500), timeout=timeout) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n".encode() + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    return status, headers, body


def wait_until(what, test, limit=60, poll=0.3):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if test():
                return
        except OSError:
            pass
        time.sleep(poll)
    raise SystemExit(f"timed out waiting for {what}")
