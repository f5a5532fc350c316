"""Connections that take without giving: silent ones, slow hellos, unfinished lines,
blank-line floods, and a last line cut off by a half-close.

Each test runs a real server and speaks to it over real sockets. Where a test
needs many connections from one host, it opens them from another loopback
address (127.0.0.2 and up: Linux routes all of 127/8 to the loopback device), so
the honest clients on 127.0.0.1 are a different address to the server.
"""

from __future__ import annotations

import re
import selectors
import socket
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from vclock.protocol import Error, server_frame_decoder

from .conftest import (
    HOST,
    Bystanders,
    Processes,
    RawClient,
    ServerProcess,
    frames_until_closed,
    rss_kib,
    vclock_argv,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

HELLO = b'{"type":"hello","v":1,"id":"%s"}\n'


def connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect((HOST, port))
    return sock


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """A list to put raw sockets in; every one is closed at teardown."""
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def answered(socks: list[socket.socket], expected: int) -> list[socket.socket]:
    """Wait until ``expected`` of ``socks`` have something to read (a frame or EOF);
    return those, checking there are no more. (epoll, not select: the
    descriptors go past 1024.)"""
    ready: set[socket.socket] = set()
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)

        def enough() -> bool:
            for key, _ in selector.select(timeout=0.05):
                ready.add(key.fileobj)  # type: ignore[arg-type]
                selector.unregister(key.fileobj)
            return len(ready) >= expected

        wait_until(enough, what=f"{expected} connections to be answered")
        enough()  # and any that came at the same time
        assert len(ready) == expected, f"{len(ready)} answered, expected {expected}"
    return [sock for sock in socks if sock in ready]


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server wrote, until it closed the connection."""
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass  # closed with our bytes unread: what it wrote before was read first
    return data


def closed_by_server(
    socks: list[socket.socket], expected: int, at_most: int
) -> dict[socket.socket, bytes]:
    """Wait until at least ``expected`` of ``socks`` were closed by the server (read
    to EOF; the others may get frames meanwhile); return what each closed one got."""
    got: dict[socket.socket, bytes] = dict.fromkeys(socks, b"")
    closed: set[socket.socket] = set()
    for sock in socks:
        sock.setblocking(False)

    def enough() -> bool:
        for sock in socks:
            while sock not in closed:
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    break
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    closed.add(sock)
                got[sock] += chunk
        return len(closed) >= expected

    wait_until(enough, what=f"{expected} connections to be closed")
    assert len(closed) <= at_most, f"{len(closed)} closed, expected {expected}-{at_most}"
    return {sock: got[sock] for sock in closed}


def first_frame(sock: socket.socket) -> Error:
    """Read what the server wrote to a connection it refused: one error, then EOF."""
    data = read_to_end(sock)
    line, _, rest = data.partition(b"\n")
    assert rest == b"", data
    frame = server_frame_decoder().decode(line)
    assert isinstance(frame, Error), frame
    return frame


def refusals_reported(server: ServerProcess) -> int:
    """The sum of the server's ``refused N connection(s)`` console lines."""
    counts = (re.match(r"refused (\d+) connection", line) for line in server.lines())
    return sum(int(match[1]) for match in counts if match)


def limited_server(processes: Processes, nofile: int, *args: str) -> ServerProcess:
    """A server whose open-file limit, soft and hard, is ``nofile`` (as on a host
    with that ulimit): it cannot raise it, so it must fit its cap below it."""
    argv = vclock_argv("server", "--port", "0", "--sync-interval", "0.5", *args)
    wrapped = ["sh", "-c", f'ulimit -n {nofile} && exec "$@"', "sh", *argv]
    return processes.add(lambda: ServerProcess(wrapped, cwd=processes.cwd))


# Item 8: silent connections, the caps and the hello timeout


SILENT = 1100


def test_a_thousand_silent_connections_from_one_host_do_not_lock_out_the_others(
    processes: Processes, tmp_path: Path, sockets: list[socket.socket]
) -> None:
    # With 1024 open files at most, 1100 silent connections used to take every
    # descriptor: the server could accept nobody else. Now one address gets
    # max_connections_per_address (256) connections, and the total cap is lowered
    # to fit the limit, which the server says on stderr.
    server = limited_server(processes, 1024, "--data", ":memory:", "--hello-timeout", "60")
    wait_until(
        lambda: any("lowered from 10000 to 922" in line for line in server.err_lines()),
        what="the warning that --max-connections was lowered",
    )
    sockets += [connect_from("127.0.0.2", server.port) for _ in range(SILENT)]
    refused = answered(sockets, SILENT - 256)
    frame = first_frame(refused[-1])
    assert frame.code == "too-many-connections", frame
    assert "127.0.0.2 has the maximum of 256 connections from one address" in frame.message
    server.wait_for_line(r"^refused \d+ connection\(s\): too-many-connections: 127\.0\.0\.2 ")

    # The honest clients (on 127.0.0.1) join and exchange as usual.
    others = Bystanders(processes, server, tmp_path / "logs")
    others.assert_unharmed(others.counts())
    # Refusals are not printed one by one: a line a second at most, which counts them.
    wait_until(
        lambda: refusals_reported(server) == SILENT - 256,
        what="every refusal to be counted on the console",
    )
    assert server.count(r"too-many-connections") < 20, server.describe()


def test_the_total_cap_refuses_the_connection_over_it_and_frees_slots_on_close(
    processes: Processes, sockets: list[socket.socket], raw_client
) -> None:
    server = processes.server("--data", ":memory:", "--max-connections", "3")
    sockets += [connect_from(f"127.0.0.{3 + n}", server.port) for n in range(3)]
    server.wait_for_line(r"^127\.0\.0\.5:\d+ got connected successfully$")
    extra = connect_from("127.0.0.9", server.port)
    sockets.append(extra)
    frame = first_frame(extra)
    assert frame.code == "too-many-connections", frame
    assert "maximum of 3 connections" in frame.message, frame
    # A closed connection frees its slot.
    sockets[0].close()
    server.wait_for_line(r"^refused 1 connection")
    raw = wait_until(lambda: _welcomed(raw_client, server.port), what="a free slot")
    assert raw is not None


def _welcomed(raw_client, port: int) -> RawClient | None:
    raw = raw_client(port)
    raw.send_line({"type": "hello", "v": 1, "id": "Late"})
    frame = raw.read_frame()
    return raw if frame is not None and not isinstance(frame, Error) else None


def test_the_per_address_cap_counts_each_address_apart(
    processes: Processes, sockets: list[socket.socket], raw_client
) -> None:
    server = processes.server("--data", ":memory:", "--max-connections-per-address", "2")
    sockets += [connect_from("127.0.0.3", server.port) for _ in range(3)]
    (third,) = answered(sockets, 1)
    assert first_frame(third).code == "too-many-connections"
    # Another address is not affected: two welcomed clients from 127.0.0.1.
    for name in ("P1", "P2"):
        raw_client(server.port).hello(name)


def test_a_connection_not_welcomed_in_time_gets_hello_timeout(
    processes: Processes, tmp_path: Path, raw_client
) -> None:
    server = processes.server("--data", ":memory:", "--hello-timeout", "1")
    others = Bystanders(processes, server, tmp_path / "logs")  # welcomed: never timed out
    before = others.counts()
    silent, slow = raw_client(server.port), raw_client(server.port)
    slow.send_bytes(b'{"type":"hello",')  # ... and the rest never comes
    for raw in (silent, slow):
        frames = frames_until_closed(raw)
        assert [(f.code, f.message) for f in frames if isinstance(f, Error)] == [
            ("hello-timeout", "no hello welcomed within 1 s of connecting; closing")
        ], frames
        server.wait_for_line(rf"^{re.escape(raw.address)} refused: hello-timeout: ")
    others.assert_unharmed(before)


def test_a_hello_line_is_short_until_welcome_then_frames_may_be_full_size(
    processes: Processes, raw_client
) -> None:
    server = processes.server("--data", ":memory:", "--max-hello-size", "100")
    raw = raw_client(server.port)
    raw.send_line(b'{"type":"hello","v":1,"id":"H"' + b" " * 100 + b"}")
    frame = raw.expect("error")
    assert frame.code == "frame-too-large" and "limit of 100 bytes" in frame.message, frame
    # A hello followed at once (same write) by a frame of 10 KB: the welcome comes
    # first, so the frame is measured against the full limit, however TCP splits.
    report = msgspec.json.encode(
        {"type": "report", "seq": 1, "clock": {"H": 1}, "pad": "x" * 10_000}
    )
    raw.send_bytes(HELLO % b"H" + report + b"\n")
    raw.expect("welcome")
    server.wait_for_line(r"^  H: ")
    assert [f.code for f in raw.received if isinstance(f, Error)] == ["frame-too-large"]


UNFINISHED = 300
LINE = 1_000_000  # under the 1 MiB frame limit: each would be held in full
RSS_GROWTH_BOUND_KIB = 160 << 10  # max_buffered (64 MiB) plus reads and allocator slack


def test_many_unfinished_large_lines_are_bounded_by_max_buffered(
    processes: Processes, tmp_path: Path, sockets: list[socket.socket]
) -> None:
    server = processes.server("--data", ":memory:", "--max-connections-per-address", "1000")
    others = Bystanders(processes, server, tmp_path / "logs")
    before = others.counts()
    rss_before = rss_kib(server.pid)
    assert rss_before is not None
    payload = b'{"type":"report","seq":1,"clock":{},"pad":"' + b"x" * LINE
    for n in range(UNFINISHED):
        sock = connect_from("127.0.0.2", server.port)
        sockets.append(sock)
        try:
            sock.sendall(HELLO % f"U{n}".encode())
            sock.sendall(payload)  # no newline, ever
        except ConnectionError:
            pass  # closed (server-busy) while we were still sending
    # 64 MiB hold 67 such lines: the others are closed. Each time the total passes
    # 64 MiB, the largest are closed until it is down to 48 MiB (50 lines).
    fit, kept_at_least = (64 << 20) // len(payload), (48 << 20) // len(payload)
    closed = closed_by_server(sockets, UNFINISHED - fit, at_most=UNFINISHED - kept_at_least)
    growth = (rss_kib(server.pid) or 0) - rss_before
    assert growth < RSS_GROWTH_BOUND_KIB, f"server RSS grew by {growth} KiB"
    codes = set()
    for data in closed.values():
        errors = [line for line in data.splitlines() if b'"type":"error"' in line]
        codes.update(server_frame_decoder().decode(line).code for line in errors)  # type: ignore[union-attr]
    assert codes == {"server-busy"}, codes
    server.wait_for_line(r"refused: server-busy: the server holds more than 67108864 bytes")
    for sock in sockets:  # B and C pick whom to send to among every peer: leave them be
        sock.close()
    others.assert_unharmed(before)


# Item 9: blank lines spend rate-limit tokens


def test_a_blank_line_flood_is_rate_limited_and_closed_by_the_error_budget(
    processes: Processes, tmp_path: Path, raw_client
) -> None:
    server = processes.server("--data", ":memory:", "--max-rate", "50", "--max-errors", "5")
    others = Bystanders(processes, server, tmp_path / "logs")
    before = others.counts()
    welcomed, early = raw_client(server.port), raw_client(server.port)
    welcomed.hello("Blank")
    for raw in (welcomed, early):  # after welcome, and before hello
        raw.send_bytes(b"\n" * 100_000)
        frames = frames_until_closed(raw)
        codes = [f.code for f in frames if isinstance(f, Error)]
        assert codes == ["rate-limited"] * 5 + ["too-many-errors"], frames
        assert "blank line" in frames[0].message, frames[0]  # type: ignore[union-attr]
        server.wait_for_line(rf"^{re.escape(raw.address)} refused: too-many-errors: ")
    others.assert_unharmed(before)


# Item 17: a last line cut off by the end of the stream gets its bad-frame


def test_a_torn_last_line_before_a_half_close_gets_bad_frame(
    processes: Processes, raw_client
) -> None:
    server = processes.server("--data", ":memory:")
    for hello in (True, False):
        raw = raw_client(server.port)
        if hello:
            raw.hello("Torn")
        raw.send_bytes(b'{"type":"report","seq":1,"clo')
        raw.sock.shutdown(socket.SHUT_WR)  # we are done writing, still reading
        frames = frames_until_closed(raw)
        errors = [f for f in frames if isinstance(f, Error)]
        assert [e.code for e in errors] == ["bad-frame"], frames
        assert "connection closed in the middle of a 29-byte frame" in errors[0].message
        server.wait_for_line(
            rf"^{re.escape(raw.address)} refused: bad-frame: connection closed in the middle"
        )


def test_a_torn_last_line_before_a_full_close_is_logged(processes: Processes, raw_client) -> None:
    # Nobody is left to read the bad-frame; the server's console still says why.
    server = processes.server("--data", ":memory:")
    raw = raw_client(server.port)
    raw.hello("Gone")
    raw.send_bytes(b'{"type":"send","to":"X"')
    address = raw.address
    raw.sock.close()
    server.wait_for_line(
        rf"^{re.escape(address)} refused: bad-frame: connection closed in the middle of a"
        r" 23-byte frame"
    )
    server.wait_for_line(rf"^Gone \({re.escape(address)}\) disconnected$")
