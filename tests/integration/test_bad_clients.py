"""Misbehaving connections get an ``error`` frame, or are dropped, and nobody else notices.

One server with two well-behaved clients, B and C, serves the whole module. Each
test lets a raw socket misbehave, checks what that socket got back, then checks
that B and C are still connected and still exchanging clocks, and that the
server is still up.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vclock.protocol import Error

from .conftest import (
    ClientProcess,
    Processes,
    RawClient,
    ServerProcess,
    count_kinds,
    wait_for_exchanges,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

GOOD = ["B", "C"]
TEN_MB = 10 * 1024 * 1024


@dataclass
class Service:
    server: ServerProcess
    clients: dict[str, ClientProcess]
    logs: Path

    def counts(self) -> dict[str, tuple[int, int]]:
        return {
            i: (count_kinds(self.logs, i, "send"), count_kinds(self.logs, i, "receive"))
            for i in GOOD
        }

    def assert_unharmed(self, before: dict[str, tuple[int, int]]) -> None:
        """B and C go on sending and receiving after ``before``; nobody went down."""
        wait_for_exchanges(self.logs, GOOD, more_than=before, n=3)
        assert self.server.alive(), self.server.describe()
        for client in self.clients.values():
            assert client.alive(), client.describe()
            assert client.err_lines() == [] or all(
                "unknown-peer" in line for line in client.err_lines()
            ), (
                client.describe()  # only a send racing a raw peer's departure may be refused
            )
        assert self.server.count(r"^[BC] \(") == 0, (
            "B or C was disconnected\n" + self.server.describe()
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("bad-clients")
    logs = root / "logs"
    procs = Processes(root)
    try:
        server = procs.server()
        clients = {i: procs.client(i, server.port, "--log", str(logs)) for i in GOOD}
        wait_for_exchanges(logs, GOOD, n=2)
        yield Service(server, clients, logs)
    finally:
        procs.stop_all()


@pytest.fixture
def raw(service: Service, raw_client) -> Iterator[RawClient]:
    yield raw_client(service.server.port)


def expect_error(raw: RawClient, code: str) -> Error:
    frame = raw.expect("error")
    assert frame.code == code, frame
    return frame


def refused_line(service: Service, raw: RawClient, code: str) -> str:
    _, match = service.server.wait_for_line(rf"^{re.escape(raw.address)} refused: {code}: .*$")
    return match.group(0)


GARBAGE = [
    b"hello world",
    b"{not json",
    b'{"type": "nope"}',
    b"[1, 2, 3]",
    b'{"type": "hello", "v": "one"}',
    b'{"type": "send", "to": "B", "seq": -1, "clock": {}}',
    b"\xff\xfe\x00 not utf-8",
]


def test_garbage_lines_get_bad_frame_errors_and_hello_still_works(
    service: Service, raw: RawClient
) -> None:
    before = service.counts()
    for line in GARBAGE:
        raw.send_line(line)
        frame = raw.read_frame()
        assert isinstance(frame, Error) and frame.code == "bad-frame", (line, frame)
    assert "$.v" in raw.received[4].message  # validation errors name the bad field
    refused_line(service, raw, "bad-frame")

    welcome = raw.hello("G")
    assert set(GOOD) <= set(welcome.peers)
    service.assert_unharmed(before)


def _peak_rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else None


def test_ten_megabyte_line_gets_frame_too_large_and_is_not_buffered(
    service: Service, raw: RawClient
) -> None:
    before = service.counts()
    peak_before = _peak_rss_kib(service.server.pid)
    raw.send_bytes(b"x" * TEN_MB)
    raw.send_bytes(b"\n")
    frame = expect_error(raw, "frame-too-large")
    assert "exceeds the limit" in frame.message
    refused_line(service, raw, "frame-too-large")

    # The rest of the line was skipped, not reported again, and the session goes on.
    raw.hello("Big")
    errors = [f for f in raw.received if isinstance(f, Error)]
    assert len(errors) == 1, raw.received
    peak_after = _peak_rss_kib(service.server.pid)
    if peak_before is not None and peak_after is not None:
        grown = (peak_after - peak_before) * 1024
        assert grown < TEN_MB * 0.8, (
            f"the server's peak memory grew by {grown} bytes: it held the line"
        )
    service.assert_unharmed(before)


def test_disconnect_mid_frame_drops_the_connection(
    service: Service, raw: RawClient, raw_client
) -> None:
    before = service.counts()
    raw.hello("H")
    b = service.clients["B"]
    b.wait_for_line(r"peer joined: H\s")
    start = len(b.lines())
    raw.send_bytes(b'{"type": "send", "to": "B", "seq": 1, "clo')
    # FIN, not close(): with frames unread, close() resets the connection, and a
    # reset may drop the half frame before the server reads it
    raw.sock.shutdown(socket.SHUT_WR)
    service.server.wait_for_line(rf"^H \({re.escape(raw.address)}\) disconnected$")
    raw.close()
    line = refused_line(service, raw, "bad-frame")
    assert "connection closed in the middle" in line
    b.wait_for_line(r"peer left: H\s", start=start)
    assert b.count(r"receive <- H ") == 0

    # The same before hello: refused and dropped, no one to announce.
    early = raw_client(service.server.port)
    early.send_bytes(b'{"type": "hello", "v": 1, "id": "Ha')
    early.close()
    assert "connection closed in the middle" in refused_line(service, early, "bad-frame")
    service.assert_unharmed(before)


def test_send_to_unknown_peer_gets_unknown_peer_naming_it(service: Service, raw: RawClient) -> None:
    before = service.counts()
    raw.hello("U")
    raw.send_line({"type": "send", "to": "Nobody", "seq": 1, "clock": {"U": 1}})
    frame = expect_error(raw, "unknown-peer")
    assert frame.peer == "Nobody" and frame.seq == 1, frame
    assert "Nobody" in frame.message
    refused_line(service, raw, "unknown-peer")

    # The session goes on: a send to a real peer is delivered with its body.
    raw.send_line({"type": "send", "to": "B", "seq": 2, "clock": {"U": 2}, "body": "hi"})
    service.clients["B"].wait_for_line(r"receive <- U \(U#2\)")
    service.assert_unharmed(before)


def test_send_before_hello_gets_unexpected_frame(service: Service, raw: RawClient) -> None:
    before = service.counts()
    raw.send_line({"type": "send", "to": "B", "seq": 1, "clock": {"X": 1}})
    frame = expect_error(raw, "unexpected-frame")
    assert "'send'" in frame.message and "hello" in frame.message, frame
    refused_line(service, raw, "unexpected-frame")
    raw.send_line({"type": "report", "seq": 1, "clock": {"X": 1}})
    expect_error(raw, "unexpected-frame")

    # Nothing was relayed, and the connection may still say hello.
    raw.hello("Late")
    service.assert_unharmed(before)
    assert service.clients["B"].count(r"receive <- (X|Late) ") == 0


def _tcp_timer(local_port: int, remote_port: int) -> str | None:
    """The kernel's timer field (``tr``) of the IPv4 socket ``local -> remote``
    on loopback, from /proc/net/tcp: ``02`` is the keepalive timer."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if (int(local, 16), int(remote, 16)) == (local_port, remote_port):
            return fields[5].split(":")[0]
    return None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_the_server_keeps_idle_connections_alive_with_tcp_probes(
    service: Service, raw: RawClient
) -> None:
    """A client that vanishes without a FIN (power loss) is found out by TCP
    keepalive probes, so its id is freed; the server turns them on per connection."""
    raw.hello("idle")
    port, client_port = service.server.port, raw.sock.getsockname()[1]
    # between frames (syncs arrive every 0.5 s): the server's side has the keepalive
    # timer, ours (keepalive off, the default) none
    wait_until(
        lambda: (_tcp_timer(port, client_port), _tcp_timer(client_port, port)) == ("02", "00"),
        what="the keepalive timer on the server's side of an idle connection",
    )
