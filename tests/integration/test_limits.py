"""Per-connection limits: the connection that breaks one gets a precise ``error``
frame (or is dropped), and the other clients do not notice.

One server with small limits serves most of the module, with two well-behaved
clients B and C exchanging in the background; the slow-consumer test starts its
own server, since flooding needs large frames and no rate limit.

Note on ``--max-clock-entries 3``: the frontier holds an entry for every id whose
clock the server ever accepted, and B and C merge it. So in the shared server
only one id besides B and C (``R``, the rate-limit test) ever gets a clock
accepted; every other raw connection here only has frames refused.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from vclock.protocol import Error

from .conftest import (
    Bystanders,
    Processes,
    RawClient,
    frames_until_closed,
    rss_kib,
    wait_closed_by_server,
)

pytestmark = pytest.mark.timeout(90)

MAX_FRAME = 2048
LIMITS = [
    "--data", ":memory:",
    "--max-frame-size", str(MAX_FRAME),
    "--max-clock-entries", "3",
    "--max-id-length", "8",
    "--max-rate", "50",
    "--max-errors", "5",
]  # fmt: skip


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bystanders]:
    root = tmp_path_factory.mktemp("limits")
    procs = Processes(root)
    try:
        server = procs.server(*LIMITS)
        yield Bystanders(procs, server, root / "logs")
    finally:
        procs.stop_all()


@pytest.fixture
def raw(service: Bystanders, raw_client) -> RawClient:
    return raw_client(service.server.port)


def expect_error(raw: RawClient, code: str) -> Error:
    frame = raw.expect("error")
    assert frame.code == code, frame
    return frame


def refused_line(service: Bystanders, raw: RawClient, code: str) -> str:
    _, match = service.server.wait_for_line(rf"^{re.escape(raw.address)} refused: {code}: .*$")
    return match.group(0)


def padded_hello(client_id: str, size: int) -> bytes:
    """A valid hello of exactly ``size`` bytes (JSON whitespace before the brace)."""
    head = b'{"type":"hello","v":1,"id":"' + client_id.encode() + b'"'
    return head + b" " * (size - len(head) - 1) + b"}"


def test_welcome_announces_the_limits_the_server_was_started_with(raw: RawClient) -> None:
    welcome = raw.hello("lim")
    assert welcome.limits is not None
    announced = msgspec.structs.asdict(welcome.limits)
    assert announced == {
        "max_frame_size": MAX_FRAME, "max_clock_entries": 3, "max_id_length": 8,
        "max_rate": 50.0, "max_inbox": 10_000, "window": 256, "hold_for": 86_400.0,
        "max_inbox_bytes": 64 << 20, "max_ids": 65_536, "max_lead": 1_000_000,
        "hello_timeout": 10.0, "max_hello_size": 8192,
    }  # fmt: skip


def test_frame_over_the_size_limit_gets_frame_too_large_and_the_session_goes_on(
    service: Bystanders, raw: RawClient
) -> None:
    before = service.counts()
    raw.send_line(padded_hello("Big1", MAX_FRAME + 1))
    frame = expect_error(raw, "frame-too-large")
    assert f"limit of {MAX_FRAME} bytes" in frame.message, frame
    refused_line(service, raw, "frame-too-large")

    # A line of exactly the limit is accepted: the same hello, one byte shorter.
    raw.send_line(padded_hello("Big2", MAX_FRAME))
    welcome = raw.expect("welcome")
    assert welcome.id == "Big2"
    assert [f for f in raw.received if isinstance(f, Error)] == [frame]
    service.assert_unharmed(before)


def test_clock_with_too_many_entries_gets_bad_frame_naming_the_limit(
    service: Bystanders, raw: RawClient
) -> None:
    before = service.counts()
    raw.hello("E")
    raw.send_line({"type": "report", "seq": 1, "clock": {"E": 1, "a": 1, "b": 1, "c": 1}})
    frame = expect_error(raw, "bad-frame")
    assert "4 entries" in frame.message and "limit of 3" in frame.message, frame
    refused_line(service, raw, "bad-frame")
    # The frame was refused as a whole: nothing of it reached the frontier.
    assert not any(re.match(r"^  E: ", line) for line in service.server.lines())
    service.assert_unharmed(before)


def test_id_over_the_length_limit_gets_bad_frame(service: Bystanders, raw: RawClient) -> None:
    before = service.counts()
    # In a clock, --max-id-length (8) applies.
    raw.hello("L")
    raw.send_line({"type": "report", "seq": 1, "clock": {"L": 1, "NineChars": 1}})
    frame = expect_error(raw, "bad-frame")
    assert "limit of 8" in frame.message, frame
    # In hello, the protocol's 64-character limit applies.
    other = RawClient(service.server.port)
    try:
        other.send_line({"type": "hello", "v": 1, "id": "x" * 65})
        frame = expect_error(other, "bad-frame")
        assert "$.id" in frame.message, frame
    finally:
        other.close()
    service.assert_unharmed(before)


def test_hello_with_an_id_over_max_id_length_is_refused(
    service: Bystanders, raw: RawClient
) -> None:
    raw.send_line({"type": "hello", "v": 1, "id": "NineChars"})
    frame = raw.read_frame()
    if frame is not None and not isinstance(frame, Error):
        # Show the consequence: welcomed, yet its first report is refused.
        raw.send_line({"type": "report", "seq": 1, "clock": {"NineChars": 1}})
        refused = raw.expect("error")
        raise AssertionError(f"welcomed as {frame}; then its report got {refused}")
    assert isinstance(frame, Error) and frame.code in {"invalid-id", "bad-frame"}, frame


def test_blasting_frames_gets_rate_limited_errors_then_the_connection_is_closed(
    service: Bystanders, raw: RawClient
) -> None:
    before = service.counts()
    raw.hello("R")
    lines = [
        msgspec.json.encode({"type": "report", "seq": n, "clock": {"R": n}}) for n in range(1, 301)
    ]
    raw.send_bytes(b"\n".join(lines) + b"\n")
    frames = frames_until_closed(raw)
    codes = [f.code for f in frames if isinstance(f, Error)]
    assert codes and codes[0] == "rate-limited", frames
    # Refused frames count against --max-errors (5): the fifth one ends the session.
    assert codes[:5] == ["rate-limited"] * 5 and codes[5] == "too-many-errors", codes
    limited = next(f for f in frames if isinstance(f, Error))
    assert "50 frames per second" in limited.message, limited
    # Protocol section 5: rate-limited names the dropped frame's seq.
    dropped = [f.seq for f in frames if isinstance(f, Error) and f.code == "rate-limited"]
    assert all(seq is not None and seq > 90 for seq in dropped), dropped
    assert dropped == sorted(set(dropped)), dropped
    refused_line(service, raw, "rate-limited")
    refused_line(service, raw, "too-many-errors")
    # The first frames fit the burst (2 x rate = 100 frames, the hello included).
    accepted = service.server.count(r"^  R: ")
    assert 99 <= accepted < 300, accepted
    service.assert_unharmed(before)


def test_too_many_refused_frames_close_the_connection_and_the_console_says_why(
    service: Bystanders, raw: RawClient
) -> None:
    before = service.counts()
    for n in range(5):
        raw.send_line(f"not json {n}")
    frames = frames_until_closed(raw)
    codes = [f.code for f in frames if isinstance(f, Error)]
    assert codes == ["bad-frame"] * 5 + ["too-many-errors"], frames
    line = refused_line(service, raw, "too-many-errors")
    assert "5 refused frames; closing the connection" in line, line
    service.assert_unharmed(before)


# The slow consumer has its own server: default frame size and rate, small --max-pending.

FLOOD_CAP = 64 << 20  # bytes; if the server buffered them all, its RSS would show it
RSS_BOUND_KIB = 32 << 10


def test_client_that_never_reads_is_disconnected_and_memory_stays_bounded(
    processes: Processes, tmp_path: Path, raw_client
) -> None:
    server = processes.server("--data", ":memory:", "--max-pending", "4096")
    others = Bystanders(processes, server, tmp_path / "logs")
    before = others.counts()

    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # keep the kernel's share small
    try:
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(b'{"type":"hello","v":1,"id":"S"}\n')
        server.wait_for_line(r" joined as S$")
        flooder = raw_client(server.port)
        flooder.hello("F")
        rss_before = rss_kib(server.pid)

        body = "x" * 50_000
        sent, seq = 0, 0
        while sent < FLOOD_CAP and not server.count(r"refused: slow-consumer: "):
            seq += 1
            frame = {"type": "send", "to": "S", "seq": seq, "clock": {"F": seq}, "body": body}
            flooder.send_line(frame)
            sent += len(body)
        _, match = server.wait_for_line(r"refused: slow-consumer: (.*)$")
        assert "more than 4096 bytes waiting" in match.group(1), match.group(0)
        server.wait_for_line(r"^S \(127\.0\.0\.1:\d+\) disconnected$")
        wait_closed_by_server(slow)  # the server closed S's socket

        rss_after = rss_kib(server.pid)
        if rss_before is not None and rss_after is not None:
            grown = rss_after - rss_before
            assert grown < RSS_BOUND_KIB, (
                f"server RSS grew by {grown} KiB after {sent} bytes were sent to a"
                " client that never reads"
            )
        # The flooder itself is fine: its later sends to S are just unknown-peer.
        seq += 1
        flooder.send_line({"type": "send", "to": "S", "seq": seq, "clock": {"F": seq}})
        frame = flooder.expect("error")
        assert frame.code == "unknown-peer", frame
        others.assert_unharmed(before)
    finally:
        slow.close()
