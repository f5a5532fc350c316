"""The dashboard of a real ``vclock server --web`` process, over real HTTP.

Hostile or careless input reaches the dashboard two ways: through the clocks
clients send (shown on the page, written to the ShiViz log) and through HTTP
requests to the dashboard itself. Either must cost the server a bounded amount,
answer the offender precisely, and leave the dashboard working for everyone else.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from vclock.tracing import check_run, parse_runs

from .conftest import RawClient, ServerProcess, wait_until

pytestmark = pytest.mark.timeout(120)

DASHBOARD = r"^vclock dashboard at http://127\.0\.0\.1:(\d+)/"


def web_server(start_server: Callable[..., ServerProcess], *args: str) -> tuple[ServerProcess, int]:
    """A server with its dashboard on a free loopback port: (process, dashboard port)."""
    server = start_server("--data", ":memory:", "--web", "127.0.0.1:0", *args)
    _, match = server.wait_for_line(DASHBOARD)
    return server, int(match.group(1))


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One ``GET`` to the dashboard, read to the end: (status, body, chunks joined)."""
    head = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items()), "", ""]
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall("\r\n".join(lines).encode())
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in top.lower():
        body = _unchunk(body)
    return int(top.split()[1]), body


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


# Item 13: the ShiViz log and ids ShiViz cannot name


def test_a_clock_id_with_whitespace_does_not_break_the_shiviz_log(start_server, raw_client):
    server, web = web_server(start_server)
    raw: RawClient = raw_client(server.port)
    raw.hello("A")
    # ids in a clock may hold spaces (hello ids may not); ShiViz cannot name such a host
    raw.send_line({"type": "report", "seq": 1, "clock": {"A": 1, "x y": 1, "tab\tid": 2}})
    raw.send_line({"type": "report", "seq": 2, "clock": {"A": 2, "x y": 1}})

    def logged() -> bytes | None:
        status, body = http_get(web, "/shiviz.log")
        assert status == 200, (status, body[:300], server.describe())
        return body if b"send A#2" in body else None

    body = wait_until(logged, what="the ShiViz log to show A's two reports")
    [run] = parse_runs(body.decode())
    check_run(run.records)  # what ShiViz checks: a log it loads
    assert [r.clock.to_dict() for r in run.records if r.host == "A"] == [{"A": 1}, {"A": 2}]
    assert http_get(web, "/state")[0] == 200
    assert server.alive(), server.describe()
