"""The reference client loses no acknowledged message and corrupts no clock, with
real server and client processes (issue 12: items 2 and 11, defects A and B).

- A resume client whose inbox is new (a server without durable storage that
  restarted, or its own ``bye``) starts its delivery numbers again.
- A frame refused with an error carrying its ``seq`` is never resent.
- A frame over the server's limits is refused by the client itself, before it
  moves the connection's delta encoding.
- The hold-back queue has a cap; the state file grows by a little per event.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import signal
import socket
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest

from vclock import LimitExceeded, Message, ServerError
from vclock.asyncio.client import Client, SessionEnded, connect, load_state
from vclock.client import Acked, Welcomed
from vclock.tools.checker import check, format_report
from vclock.tools.eventlog import EventLog

from .conftest import (
    HOST,
    WAIT,
    ClientProcess,
    Processes,
    RawClient,
    events_of,
    start_server_on_port,
    wait_for_exchanges,
)
from .test_crash import GRACE, HoldingProxy, start_resilient, stop_clients, ts

pytestmark = pytest.mark.timeout(120)

IDS = ["A", "B", "C"]
T = TypeVar("T")


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def lost_between(run: Path, ids: list[str], since: _dt.datetime, before: _dt.datetime) -> list[str]:
    """Sends to a peer logged between ``since`` and ``before`` that it never received."""
    received = {(e.pid, e.msg) for i in ids for e in events_of(run, i) if e.kind == "receive"}
    return [
        f"{e.pid} -> {e.peer}: {e.msg} at {e.ts}"
        for i in ids
        for e in events_of(run, i)
        if e.kind == "send"
        and e.peer in ids
        and since <= ts(e) < before
        and (e.peer, e.msg) not in received
    ]


def assert_nothing_lost_since(run: Path, since: _dt.datetime, stopped_at: _dt.datetime) -> None:
    lost = lost_between(run, IDS, since, stopped_at - GRACE)
    sent = sum(1 for i in IDS for e in events_of(run, i) if e.kind == "send" and since <= ts(e))
    assert sent >= 20, f"too few sends to tell: {sent}"
    assert not lost, f"{len(lost)} of {sent} messages sent after {since} never received:\n" + (
        "\n".join(lost[:20])
    )
    report = check(run)
    assert report.ok, format_report(report)


# Item 2: a new inbox numbers its deliveries from 1 again


def test_after_a_restart_of_a_server_without_durable_storage_no_new_message_is_lost(
    processes: Processes, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    # No server log: the restarted server numbers its sync cycles from 1 again,
    # and the checker would take the second sync#1 for the first.
    server = processes.server("--data", ":memory:")
    port = server.port
    clients = [start_resilient(processes, run, port, i) for i in IDS]
    wait_for_exchanges(run, IDS, n=15)  # each has handled over a dozen numbers

    server.proc.kill()  # everything it held is gone: inboxes, numbers, clocks
    server.wait()
    for client in clients:
        client.wait_for_line(rf"^{client.id}: connection lost \(.*\); reconnecting\.\.\.$")
    marks = {c.id: len(c.lines()) for c in clients}
    server = start_server_on_port(processes, port, "--data", ":memory:")
    for client in clients:
        client.wait_for_line(r"reconnected \(\d+ to resend\)", start=marks[client.id])
    since = now()  # every client is back: whatever is sent from now on is kept
    counts = wait_for_exchanges(run, IDS, n=0)
    wait_for_exchanges(run, IDS, more_than=counts, n=15)

    stopped_at = stop_clients(clients)
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()
    assert_nothing_lost_since(run, since, stopped_at)


def test_a_client_restarted_after_its_bye_handles_every_new_message(
    processes: Processes, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    server = processes.server("--data", str(tmp_path / "data"), "--log", str(run))
    port = server.port
    clients = {i: start_resilient(processes, run, port, i) for i in IDS}
    counts = wait_for_exchanges(run, IDS, n=15)

    stop_clients([clients["C"]])  # says bye: the server drops C's inbox for good
    server.wait_for_line(r"^C \(.*\) disconnected$")
    clients["C"] = start_resilient(processes, run, port, "C")  # same --state, same log
    since = now()  # C is welcomed: sends to it from now on go to its new inbox
    counts = wait_for_exchanges(run, IDS, more_than=counts, n=15)

    stopped_at = stop_clients(list(clients.values()))
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()
    assert_nothing_lost_since(run, since, stopped_at)
    saved = load_state(run / "C.state")
    assert saved is not None and saved.delivered == 0  # said bye again: starts anew


# Defect A: a refused frame is answered by its error, never resent


async def next_event(node: Client, kind: type[T], timeout: float = 10.0) -> T:
    async def find() -> T:
        async for event in node:
            if isinstance(event, kind):
                return event
        raise AssertionError(f"the session ended before a {kind.__name__}")

    return await asyncio.wait_for(find(), timeout)


async def test_an_inbox_full_frame_is_not_resent_and_acked_as_a_duplicate(
    processes: Processes,
) -> None:
    server = processes.server("--data", ":memory:", "--max-inbox", "1")
    # R is held and connected, and never acknowledges: its inbox stays full.
    r = RawClient(server.port)
    r.send_line({"type": "hello", "v": 1, "id": "R", "resume": True})
    r.expect("welcome")
    proxy = HoldingProxy(server.port)
    await proxy.start()
    b = await connect(HOST, server.port, id="B")
    s = await connect(HOST, proxy.port, id="S", reconnect=True)
    acks: list[Acked] = []
    try:
        await s.send("R", body="first")
        acks.append(await next_event(s, Acked))
        second = await s.send("R", body="second")
        error = await next_event(s, ServerError)
        assert (error.code, error.seq) == ("inbox-full", second["S"])
        assert error.frame is not None and error.frame.body == "second"  # for the application
        assert s.unacked == 0

        proxy.passing.clear()  # the server's answers to S are held back from now on
        await s.send("B", body="later")  # accepted: the server's latest[S] passes #2
        assert (await next_event(b, Message)).body == "later"
        proxy.cut()  # S loses its connection before it sees the ack of "later"
        proxy.passing.set()
        await next_event(s, Welcomed)
        while not acks or acks[-1].seq < second["S"] + 1:
            acks.append(await next_event(s, Acked))
        assert [(a.seq, a.duplicate) for a in acks] == [(1, False), (3, True)], (
            "the refused frame was resent and acknowledged as a duplicate:"
            " acknowledged, never delivered"
        )
        assert s.unacked == 0
    finally:
        await s.close()
        await b.close()
        await proxy.close()
        r.close()


# Defect B: a frame over the server's limits never reaches the wire


async def test_a_frame_over_max_frame_size_is_refused_by_the_client_and_clocks_stay_right(
    processes: Processes, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    server = processes.server("--max-frame-size", "2048", "--log", str(run))
    log_a, log_b = EventLog(run, "A"), EventLog(run, "B")
    a = await connect(HOST, server.port, id="A", log=log_a)  # delta-encoded by default
    b = await connect(HOST, server.port, id="B", log=log_b)
    try:
        assert a.limits is not None and a.limits.max_frame_size == 2048
        for body in ("one", "two"):
            await b.send("A", body=body)
            await next_event(a, Message)
        await a.send("B", body="small")
        await next_event(b, Message)
        await b.send("A", body="three")  # A's clock gains B's new entry...
        await next_event(a, Message)
        clock = a.clock
        with pytest.raises(LimitExceeded, match="max_frame_size is 2048") as info:
            await a.send("B", body="x" * 4000)  # ...which this frame would have carried
        assert info.value.size > 2048
        assert a.clock == clock  # no tick, nothing logged, nothing sent
        sent = await a.send("B", body="after")
        message = await next_event(b, Message)
        assert (message.body, message.sent_clock) == ("after", sent)
        assert b.clock >= sent
    finally:
        await a.close()
        await b.close()
        log_a.close()
        log_b.close()
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()
    assert server.count("frame-too-large") == 0, server.describe()
    assert [e.msg for e in events_of(run, "A") if e.kind == "send"] == ["A#3", "A#5"]
    report = check(run)
    assert report.ok, format_report(report)


# Item 11: the hold-back queue has a cap; the state file grows a little per event


def written_by(pid: int) -> int:
    """Bytes process ``pid`` has handed to write calls so far (Linux)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no wchar for {pid}")


class FakeServer:
    """One end of a socket that speaks the server's side by hand: it can send
    broadcasts no client could ever deliver (their sender's first one never comes)."""

    def __init__(self) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(WAIT)
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None
        self.buffer = b""
        self.delivered = 0

    def accept(self) -> dict[str, object]:
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(WAIT)
        return self.read()

    def write(self, *frames: dict[str, object]) -> None:
        assert self.conn is not None
        self.conn.sendall(b"".join(msgspec.json.encode(f) + b"\n" for f in frames))

    def read(self) -> dict[str, object]:
        """The client's next frame ({} once it closed the connection)."""
        assert self.conn is not None
        while b"\n" not in self.buffer:
            data = self.conn.recv(65536)
            if not data:
                return {}
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        frame: dict[str, object] = msgspec.json.decode(line)
        if frame["type"] == "delivered":
            self.delivered = int(frame["upto"])  # type: ignore[call-overload]
        return frame

    def wait_delivered(self, upto: int) -> None:
        while self.delivered < upto:
            assert self.read(), f"the client closed the connection at delivered={self.delivered}"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


def never_deliverable(n: int) -> dict[str, object]:
    """Delivery number ``n``: X's broadcast ``n + 1`` (X's first one never comes)."""
    count = n + 1
    return {
        "type": "deliver", "from": "X", "seq": count, "clock": {"X": count},
        "body": "b" * 200, "n": n, "bclock": {"X": count},
    }  # fmt: skip


def test_a_full_hold_back_queue_ends_the_session_and_keeps_what_it_held(
    processes: Processes, tmp_path: Path
) -> None:
    fake = FakeServer()
    state = tmp_path / "C.state"
    limit, batch = 600, 50
    try:
        client: ClientProcess = processes.client(
            "C", fake.port,
            "--reconnect", "--state", str(state), "--max-held", str(limit),
            "--interval", "1000-1000",
            wait_connected=False,
        )  # fmt: skip
        hello = fake.accept()
        assert hello["type"] == "hello" and hello["resume"] is True
        fake.write(
            {"type": "welcome", "v": 1, "id": "C", "peers": ["X"], "sync_interval": 5.0,
             "clock": {}, "resumed": False}
        )  # fmt: skip
        client.wait_for_line(r"^Connected to ")

        per_event: list[float] = []  # bytes written by the client per held broadcast
        for start in range(1, limit + 1, batch):
            before = written_by(client.pid)
            fake.write(*(never_deliverable(n) for n in range(start, start + batch)))
            fake.wait_delivered(start + batch - 1)
            per_event.append((written_by(client.pid) - before) / batch)
            saved = load_state(state)  # acknowledged, so saved before: held back, not lost
            assert saved is not None and len(saved.held) == start + batch - 1, per_event

        fake.write(never_deliverable(limit + 1))  # one too many
        while frame := fake.read():
            assert frame["type"] != "bye", "a bye would drop the inbox and lose the rest"
        assert client.wait() == 1, client.describe()
        assert fake.delivered == limit  # the last one was neither taken nor acknowledged
        error = "\n".join(client.err_lines())
        assert (
            f"Error: {limit} causal broadcasts are held back (the limit is {limit}),"
            " the oldest waiting for broadcast 1 of 'X' (X#2 is held); ending the session."
            f" They are kept in {state}." in error
        ), client.describe()
    finally:
        fake.close()

    saved = load_state(state)
    assert saved is not None
    assert len(saved.held) == limit and saved.delivered == limit  # nothing lost
    # The state file is written a little per event, not in full: the last batch
    # costs about what the second did (the JSON format: ~300 bytes more per held).
    assert 0 < per_event[-1] <= 32 * 1024, per_event
    assert per_event[-1] <= 2 * per_event[1], per_event


# A node whose session ended does not tick or log: its log never shows an event
# after its leave (vclock check would find a send that no receiver could get)


async def test_a_node_whose_session_ended_refuses_to_send_and_logs_nothing_after_leave(
    processes: Processes, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    server = processes.server("--log", str(run))
    log = EventLog(run, "A")
    a = await connect(HOST, server.port, id="A", log=log)
    try:
        server.send_signal(signal.SIGTERM)  # the server says bye: A's session ends
        assert server.wait() == 0, server.describe()
        async for _ in a:
            pass
        clock = a.clock
        for attempt in (a.send("B"), a.broadcast(), a.report()):
            with pytest.raises(SessionEnded, match="session ended"):
                await attempt
        with pytest.raises(SessionEnded):
            a.local_event("after")
        assert a.clock == clock
    finally:
        await a.close()
        log.close()
    kinds = [e.kind for e in events_of(run, "A")]
    assert kinds[-1] == "leave", kinds
