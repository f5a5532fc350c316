"""Fuzzing a live server over real sockets.

The invariant, stated first (habit 10): whatever bytes one connection sends, the
server answers with ``error`` frames or closes that connection, and nothing else
happens. It stays up, a fresh connection still gets ``welcome``, the two
well-behaved clients B and C keep exchanging, and no traceback reaches the
console.

One server (and B, C) serves the module. Each hypothesis example opens a raw
connection, maybe says hello, sends a mix of valid frames, nearly valid ones
(a field dropped or given a wrong type, numbers like 10**30, nesting up to 5000
deep, invalid UTF-8, unknown tags) and random bytes, split in random chunks; then
it either half-closes and reads until the server closes (so the server has
handled every byte before the check), or resets the connection.

Valid frames only use the ids F1..F3 in clocks: the server trusts the other
entries of a clock (docs/protocol.md 7.4), so a fuzzer that wrote B's or C's
entry could legitimately derail B and C; that is not what this test is about.
"""

from __future__ import annotations

import itertools
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import HOST, Bystanders, Processes, RawClient

pytestmark = pytest.mark.timeout(120)

FUZZ_IDS = ["F1", "F2", "F3"]
MAX_COUNTER = 2**63 - 1


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bystanders, dict]]:
    root = tmp_path_factory.mktemp("fuzz-live")
    procs = Processes(root)
    try:
        server = procs.server("--data", ":memory:")
        bystanders = Bystanders(procs, server, root / "logs")
        yield bystanders, bystanders.counts()
    finally:
        procs.stop_all()


# Strategies

counters = st.one_of(st.integers(0, 1000), st.sampled_from([0, 1, MAX_COUNTER - 1, MAX_COUNTER]))
clock_ids = st.sampled_from(FUZZ_IDS)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
bodies = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)
WEIRD: list[Any] = [
    10**30,
    -(10**30),
    -1,
    0,
    1.5,
    True,
    None,
    "",
    "x" * 300,
    [],
    {},
    [1, 2],
    {"A": 1},
    {"F1": -1},
    {"F1": 10**30},
    {"": 1},
    {"F1": "1"},
]


@st.composite
def valid_frames(draw: st.DrawFn, own: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["send", "send", "report", "hello", "delivered", "bye"]))
    if kind == "hello":
        frame: dict[str, Any] = {"type": "hello", "v": 1}
        if draw(st.booleans()):
            frame["id"] = draw(st.sampled_from([*FUZZ_IDS, "B", "server", "x-1.y_2"]))
        if draw(st.booleans()):
            frame["resume"] = draw(st.booleans())
        return frame
    if kind == "delivered":
        return {"type": "delivered", "upto": draw(st.integers(0, 10))}
    if kind == "bye":
        return {"type": "bye", "reason": draw(st.text(max_size=10))}
    seq = draw(st.integers(1, MAX_COUNTER) | st.integers(1, 50))
    clock = draw(st.dictionaries(clock_ids, counters, max_size=3))
    clock[own] = seq
    frame = {"type": kind, "seq": seq, "clock": clock}
    if kind == "send":
        frame["to"] = draw(st.sampled_from(["B", "C", *FUZZ_IDS, "nobody", "server"]))
        if draw(st.booleans()):
            frame["body"] = draw(bodies)
    return frame


def nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def lines(draw: st.DrawFn, own: str) -> bytes:
    """One line (without its newline): valid, nearly valid, or garbage."""
    choice = draw(st.integers(0, 9))
    if choice <= 2:
        return msgspec.json.encode(draw(valid_frames(own)))
    if choice <= 5:  # nearly valid: one field dropped, retyped or added
        frame = draw(valid_frames(own))
        key = draw(st.sampled_from(sorted(frame)))
        how = draw(st.sampled_from(["drop", "retype", "add", "deep"]))
        if how == "drop":
            del frame[key]
        elif how == "retype":
            frame[key] = draw(st.sampled_from(WEIRD))
        elif how == "add":
            frame[draw(st.text(max_size=8))] = draw(bodies)
        else:
            depth = draw(st.integers(1, 5000))
            raw = msgspec.json.encode({**frame, key: None})
            hole = b'"' + key.encode() + b'":null'
            return raw.replace(hole, b'"' + key.encode() + b'":' + nested(depth, "list"), 1)
        return msgspec.json.encode(frame)
    if choice == 6:  # deep nesting as the whole line
        return nested(draw(st.integers(1, 5000)), draw(st.sampled_from(["list", "dict"])))
    if choice == 7:  # invalid UTF-8 inside an otherwise valid frame
        frame = msgspec.json.encode(draw(valid_frames(own)))
        at = draw(st.integers(0, len(frame)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        return frame[:at] + bad + frame[at:]
    if choice == 8:
        return draw(st.sampled_from([b"", b"   ", b"\r", b"null", b"1e999", b'"hello"', b"{}"]))
    return draw(st.binary(max_size=300)).replace(b"\n", b" ")


@st.composite
def sessions(draw: st.DrawFn) -> tuple[list[bytes], str]:
    """The bytes one connection sends, as chunks, and how it ends."""
    own = draw(st.sampled_from(FUZZ_IDS))
    body = [draw(lines(own)) for _ in range(draw(st.integers(1, 8)))]
    if draw(st.booleans()):
        hello: dict[str, Any] = {"type": "hello", "v": 1, "id": own, "resume": draw(st.booleans())}
        body.insert(0, msgspec.json.encode(hello))
    data = b"\n".join(body)
    if draw(st.booleans()):
        data += b"\n"  # otherwise the last line is cut off by the end of the stream
    if draw(st.booleans()):
        data += draw(st.binary(max_size=200))  # raw bytes, newlines and all
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    chunks = [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]
    return [c for c in chunks if c], draw(st.sampled_from(["half-close", "reset"]))


# The test

probe_ids = itertools.count(1)


def send_session(port: int, chunks: list[bytes], ending: str) -> None:
    sock = socket.create_connection((HOST, port), timeout=10)
    try:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:
            return  # the server closed on us (a fatal error, a bye): allowed
        if ending == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return  # already closed by the server (after a bye, say)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the server must close after our EOF
            try:
                if not sock.recv(65536):
                    return
            except OSError:
                return
        raise AssertionError("the server did not close the connection after EOF")
    finally:
        sock.close()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(session=sessions())
def test_any_bytes_get_errors_or_a_close_and_the_server_stays_up(
    service: tuple[Bystanders, dict], session: tuple[list[bytes], str]
) -> None:
    bystanders, _ = service
    server = bystanders.server
    chunks, ending = session
    send_session(server.port, chunks, ending)
    assert server.alive(), server.describe()
    probe = RawClient(server.port, timeout=10)
    try:
        probe.hello(f"Probe{next(probe_ids)}")
    finally:
        probe.close()


def unexpected_tracebacks(lines: list[str]) -> list[list[str]]:
    """The traceback blocks in ``lines``."""
    blocks: list[list[str]] = []
    for line in lines:
        # asyncio writes "Exception in callback ...", "handle: ...", then "Traceback".
        starts_block = line.startswith(("Exception in callback", "Task exception")) or (
            line.startswith("Traceback")
            and (not blocks or any(x.startswith("Traceback") for x in blocks[-1]))
        )
        if starts_block:
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
    return blocks


def test_after_the_fuzzing_b_and_c_still_exchange_and_no_traceback(
    service: tuple[Bystanders, dict],
) -> None:
    bystanders, at_start = service
    bystanders.assert_unharmed(at_start)
    server = bystanders.server
    assert not [line for line in server.lines() if "Traceback" in line], server.describe(80)
    assert not unexpected_tracebacks(server.err_lines()), server.describe(80)
    for client in bystanders.clients.values():
        assert not [line for line in client.lines() if "server broke the protocol" in line]


def test_clients_that_reset_right_after_sending_cause_no_traceback(processes: Processes) -> None:
    server = processes.server("--data", ":memory:")
    for n in range(20):
        sock = socket.create_connection((HOST, server.port), timeout=10)
        sock.sendall(b'{"type":"hello","v":1,"id":"X%d"}\nnot json\n' % n)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    probe = RawClient(server.port)
    probe.hello("Probe")  # the server is up, and has handled the twenty connections
    probe.close()
    server.stop()
    assert not [line for line in server.err_lines() if "Traceback" in line], server.describe()
