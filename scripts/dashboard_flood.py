"""What N ``GET /events`` that never read cost a ``vclock server --web`` (issue 12, item 10).

    python scripts/dashboard_flood.py [N] [extra vclock server options]

Starts a server with its dashboard, fills it with 39 reports of 1,500-entry clocks
(a snapshot of several megabytes), waits until it is quiet, then opens N event
streams with a 4 KiB receive buffer that never read. Prints the server's RSS and
CPU growth after 5 s and the status each request got. Stops the server by PID.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.procs import cpu_seconds, rss_bytes  # noqa: E402


def main(n: int, extra: list[str]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="vclock-flood-"))
    out = folder / "server.out"
    argv = [sys.executable, "-m", "vclock", "server", "--port", "0", "--data", ":memory:"]
    argv += ["--web", "127.0.0.1:0", "--max-rate", "0", "--quiet", *extra]
    with out.open("w") as sink:
        server = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    try:
        port, web = _ports(out, server)
        _fill(port, web)
        time.sleep(2)
        rss, cpu = _rss_mib(server.pid), cpu_seconds(server.pid)
        streams = [_never_reading(web) for _ in range(n)]
        time.sleep(5)
        print(
            f"{n} non-reading /events: RSS +{_rss_mib(server.pid) - rss} MiB,"
            f" CPU +{cpu_seconds(server.pid) - cpu:.2f} s"
        )
        statuses: dict[str, int] = {}
        for sock in streams:
            sock.settimeout(0.3)
            try:
                status = sock.recv(12)[9:12].decode() or "closed"
            except OSError as exc:
                status = type(exc).__name__
            statuses[status] = statuses.get(status, 0) + 1
            sock.close()
        print("statuses:", statuses)
    finally:
        server.terminate()
        server.wait(10)


def _ports(out: Path, server: subprocess.Popen[bytes]) -> tuple[int, int]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and server.poll() is None:
        text = out.read_text()
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        web = re.search(r"dashboard at http://127\.0\.0\.1:(\d+)/", text)
        if port and web:
            return int(port.group(1)), int(web.group(1))
        time.sleep(0.1)
    raise SystemExit(f"the server did not start:\n{out.read_text()}")


def _fill(port: int, web: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b'{"type":"hello","v":1,"id":"A"}\n')
    sock.recv(1 << 16)
    clock = {f"id-{n:05d}-{'x' * 40}": 1 for n in range(1500)}
    for seq in range(1, 40):
        clock["A"] = seq
        sock.sendall(json.dumps({"type": "report", "seq": seq, "clock": clock}).encode() + b"\n")
    last = None
    while True:  # until the dashboard has taken every report in
        time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/state") as reply:
            seen = json.loads(reply.read())["events_seen"]
        if seen == last:
            return
        last = seen


def _never_reading(web: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", web))
    sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{web}\r\n\r\n".encode())
    return sock


def _rss_mib(pid: int) -> int:
    return rss_bytes(pid) // 2**20


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 150, sys.argv[2:])
