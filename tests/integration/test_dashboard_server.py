"""The dashboard of a real ``vclock server --web`` process, over real HTTP.

Hostile or careless input reaches the dashboard two ways: through the clocks
clients send (shown on the page, written to the ShiViz log) and through HTTP
requests to the dashboard itself. Either must cost the server a bounded amount,
answer the offender precisely, and leave the dashboard working for everyone else.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest

from vclock.tracing import check_run, parse_runs

from ..helpers import unchunk, wait_until
from .conftest import RawClient, ServerProcess, rss_kib

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
        body = unchunk(body)
    return int(top.split()[1]), body


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


# Item 10: /events streams (shared snapshot, a cap, bounded buffers) and other origins


def fill_the_dashboard(port: int, raw_client: Callable[[int], RawClient]) -> None:
    """Reports with 1,500-entry clocks: a snapshot of about two megabytes."""
    raw = raw_client(port)
    raw.hello("big")
    clock = {f"id-{n:05d}-{'x' * 40}": 1 for n in range(1500)}
    for seq in range(1, 13):
        clock["big"] = seq
        raw.send_line({"type": "report", "seq": seq, "clock": clock})


def open_event_stream(port: int, headers: dict[str, str] | None = None) -> socket.socket:
    """A GET /events whose reply is never read: a tiny receive buffer, no recv."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    head = {"Host": f"127.0.0.1:{port}", "Accept": "text/event-stream", **(headers or {})}
    lines = ["GET /events HTTP/1.1", *(f"{k}: {v}" for k, v in head.items()), "", ""]
    sock.sendall("\r\n".join(lines).encode())
    return sock


def status_of(sock: socket.socket) -> int:
    """The status code: reads only the status line's first bytes."""
    sock.settimeout(20)
    return int(sock.recv(12)[9:12])


def streams(port: int) -> dict[str, int]:
    status, body = http_get(port, "/state")
    assert status == 200, body
    return dict(json.loads(body)["streams"])


def test_event_streams_that_never_read_are_capped_bounded_and_dropped(
    start_server, start_client, raw_client
):
    server, web = web_server(start_server, "--web-max-streams", "4", "--max-rate", "0")
    fill_the_dashboard(server.port, raw_client)

    def all_in() -> bool:
        state = json.loads(http_get(web, "/state")[1])
        return any(c["id"] == "big" and c["clock"].get("big") == 12 for c in state["clients"])

    wait_until(all_in, what="the big clocks to be taken in")
    socks = [open_event_stream(web) for _ in range(4)]
    try:
        wait_until(lambda: streams(web)["open"] == 4, what="four streams")
        before = rss_kib(server.pid)
        assert before is not None
        socks += [open_event_stream(web) for _ in range(56)]
        for sock in socks[4:]:
            assert status_of(sock) == 503
        rest = socks[5].recv(4096).decode()
        assert "streams to 4 pages" in rest and "--web-max-streams" in rest, rest
        assert streams(web) == {"open": 4, "max": 4}
        grown = (rss_kib(server.pid) or 0) - before
        print(f"RSS growth for 56 more non-reading /events requests: {grown} KiB")
        # Before the fix every request built and buffered its own snapshot (~2 MB each).
        assert grown < 8 * 1024, f"the server grew by {grown} KiB for 56 more requests"

        # Activity makes pushes; the four that do not read fall behind and are dropped.
        start_client("A", server.port)
        start_client("B", server.port)
        wait_until(lambda: streams(web)["open"] == 0, "the non-reading streams to go", timeout=60)
    finally:
        for sock in socks:
            sock.close()

    # An honest page is served again, from a snapshot.
    sock = open_event_stream(web)
    try:
        data = b""
        while b"event: snapshot" not in data:
            chunk = sock.recv(1 << 16)
            assert chunk, data[:300]
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    assert server.alive(), server.describe()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:1"},  # another port of the same host: another origin
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_requests_from_another_web_page_are_refused_without_a_token(start_server, headers):
    server, web = web_server(start_server)
    stream = open_event_stream(web, headers)  # read only its status: a stream never ends
    try:
        assert status_of(stream) == 403
    finally:
        stream.close()
    for path in ("/state", "/shiviz.log"):
        status, body = http_get(web, path, headers)
        assert status == 403, (path, status, body[:200])
        assert b"only to its own page" in body
    assert http_get(web, "/", headers)[0] == 200  # a link to the page still works
    # the dashboard's own page, and clients that are no web page, are served
    own = {"Origin": f"http://127.0.0.1:{web}", "Sec-Fetch-Site": "same-origin"}
    assert http_get(web, "/state", own)[0] == 200
    assert http_get(web, "/state", {"Sec-Fetch-Site": "none"})[0] == 200
    assert http_get(web, "/shiviz.log")[0] == 200
    assert streams(web)["open"] == 0
