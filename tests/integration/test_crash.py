"""The server dies (SIGKILL) in the middle of a run and comes back on the same data,
log folder and port; reconnecting clients carry on, and no acknowledged message is
lost, duplicated or delivered with a clock that goes back.

What "no acknowledged message lost" means here: every ``send`` a client logged to
a peer has a matching ``receive`` in that peer's log, except sends made in the last
moment before the clients were told to stop (their ack may still have been on the
way, or the peer may already have said bye). Those are the only frames allowed to
remain unacknowledged in the clients' state files.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import re
import signal
import time
from pathlib import Path
from typing import TypeVar

import pytest

from vclock.asyncio.client import Client, connect, load_state
from vclock.client import Acked, Disconnected, Message, Welcomed
from vclock.events import Event
from vclock.tools.checker import check, format_report

from ..helpers import async_wait_until
from .conftest import (
    HOST,
    ClientProcess,
    Processes,
    RawClient,
    ServerProcess,
    events_of,
    start_server_on_port,
    wait_for_exchanges,
)

pytestmark = pytest.mark.timeout(90)

IDS = ["A", "B", "C"]
FAST = "0.05-0.15"
GRACE = _dt.timedelta(seconds=0.3)  # sends this close to the stop may be in flight
CLOSED = re.compile(r"^Server closed the session \(server shutting down\); exiting\.$")
T = TypeVar("T")


def ts(event: Event) -> _dt.datetime:
    return _dt.datetime.fromisoformat(event.ts)


def start_resilient(processes: Processes, run: Path, port: int, client_id: str) -> ClientProcess:
    return processes.client(
        client_id,
        port,
        "--reconnect",
        "--state", str(run / f"{client_id}.state"),
        "--log", str(run),
        "--interval", FAST,
    )  # fmt: skip


def stop_clients(clients: list[ClientProcess]) -> _dt.datetime:
    """SIGTERM every client at once; each says bye and exits 0. Returns when they were told."""
    stopped_at = _dt.datetime.now(_dt.UTC)
    for client in clients:
        client.send_signal(signal.SIGTERM)
    for client in clients:
        assert client.wait() == 0, client.describe()
        assert client.lines()[-1] == "Client stopped.", client.describe()
    return stopped_at


def lost_messages(run: Path, ids: list[str], before: _dt.datetime) -> list[str]:
    """Sends to a peer made before ``before`` that the peer never logged receiving."""
    received = {(e.pid, e.msg) for i in ids for e in events_of(run, i) if e.kind == "receive"}
    return [
        f"{e.pid} -> {e.peer}: {e.msg} at {e.ts}"
        for i in ids
        for e in events_of(run, i)
        if e.kind == "send" and e.peer in ids and ts(e) < before and (e.peer, e.msg) not in received
    ]


def test_sigkill_and_restart_on_the_same_port_loses_no_acknowledged_message(
    processes: Processes, tmp_path: Path
) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    server = processes.server("--data", str(data), "--log", str(run))
    port = server.port
    clients = [start_resilient(processes, run, port, i) for i in IDS]
    counts = wait_for_exchanges(run, IDS, n=12)  # about 2 s

    server.proc.kill()  # SIGKILL: no bye, no flush beyond what was committed
    server.wait()
    for client in clients:
        client.wait_for_line(rf"^{client.id}: connection lost \(.*\); reconnecting\.\.\.$")
    time.sleep(0.5)  # scenario, not a wait: the clients retry against a closed port meanwhile

    marks = {c.id: len(c.lines()) for c in clients}
    server = start_server_on_port(processes, port, "--data", str(data), "--log", str(run))
    for client in clients:
        client.wait_for_line(r"reconnected \(\d+ to resend\)", start=marks[client.id])
    wait_for_exchanges(run, IDS, more_than=counts, n=12)

    stopped_at = stop_clients(clients)
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()

    report = check(run)
    assert report.ok, format_report(report)
    assert report.summary.processes == 3 and report.summary.server_log, format_report(report)

    # No acknowledged message lost: everything sent to a peer before the last
    # moment was received by it.
    lost = lost_messages(run, IDS, stopped_at - GRACE)
    assert not lost, "messages lost across the crash:\n" + "\n".join(lost)

    # The state files: only the last sends around the stop may be unacknowledged.
    for client_id in IDS:
        saved = load_state(run / f"{client_id}.state")
        assert saved is not None and saved.id == client_id
        sends = {
            int((e.msg or "#0").rpartition("#")[2]): e
            for e in events_of(run, client_id)
            if e.kind == "send"
        }
        for frame in saved.unacked:
            event = sends.get(frame.seq)
            assert event is not None, (client_id, frame)
            assert ts(event) >= stopped_at - GRACE, (
                f"{client_id}#{frame.seq} sent at {event.ts} is still unacknowledged"
                f" (clients stopped at {stopped_at.isoformat()})"
            )
        last = [e for e in events_of(run, client_id) if e.kind != "leave"][-1]
        assert dict(saved.clock.items()) == last.clock, (client_id, saved.clock, last)


def test_sigterm_says_bye_to_clients_and_flushes_state_for_the_restart(
    processes: Processes, tmp_path: Path, raw_client
) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    server: ServerProcess = processes.server("--data", str(data), "--log", str(run))
    port = server.port
    a = start_resilient(processes, run, port, "A")
    b = processes.client("B", port, "--log", str(run), "--interval", FAST)
    wait_for_exchanges(run, ["A", "B"], n=5)

    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()
    assert server.lines()[-1] == "Server stopped.", server.describe()
    # The plain client got bye: it says so and exits 0.
    assert b.wait() == 0, b.describe()
    assert any(CLOSED.match(line) for line in b.lines()), b.describe()
    # The reconnecting client keeps trying; its state file is flushed.
    a.wait_for_line(r"^A: connection lost \(server shutting down\); reconnecting\.\.\.$")
    assert a.alive(), a.describe()

    # What the server acknowledged to B before stopping is what B resumes from.
    received_b = [
        e.clock for e in events_of(run, "server") if e.kind == "receive" and e.peer == "B"
    ]
    assert received_b

    server = start_server_on_port(processes, port, "--data", str(data), "--log", str(run))
    raw: RawClient = raw_client(port)
    welcome = raw.hello("B")
    assert welcome.clock["B"] == max(c["B"] for c in received_b), (welcome, received_b[-1])
    raw.close()

    # A comes back by itself; when it stops, its state file holds its latest clock.
    a.wait_for_line(r"reconnected \(\d+ to resend\)")
    stop_clients([a])
    saved = load_state(run / "A.state")
    last = [e for e in events_of(run, "A") if e.kind not in ("join", "leave")][-1]
    assert saved is not None and dict(saved.clock.items()) == last.clock, (saved, last)
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()
    report = check(run)
    assert report.ok, format_report(report)


# A deterministic look at the reconnect handshake


class HoldingProxy:
    """A TCP proxy in front of a real server that can hold the server's bytes back,
    so a test can act while a client is between its ``hello`` and the ``welcome``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.passing = asyncio.Event()  # set: server bytes flow to the client
        self.passing.set()
        self.hellos = 0  # hello frames seen from clients
        self._transports: list[asyncio.BaseTransport] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        """Break every proxied connection, as a network failure would."""
        for transport in self._transports:
            transport.abort()
        self._transports.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        self._transports += [writer.transport, up_writer.transport]

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                self.hellos += data.count(b'"type":"hello"')
                up_writer.write(data)
            up_writer.close()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                await self.passing.wait()
                writer.write(data)
            writer.close()

        await asyncio.gather(client_to_server(), server_to_client(), return_exceptions=True)


async def next_event(node: Client, kind: type[T], timeout: float = 10.0) -> T:
    async def find() -> T:
        async for event in node:
            if isinstance(event, kind):
                return event
        raise AssertionError(f"the session ended before a {kind.__name__}")

    return await asyncio.wait_for(find(), timeout)


async def test_a_send_during_the_reconnect_handshake_does_not_overtake_the_resends(
    processes: Processes,
) -> None:
    server = processes.server("--data", ":memory:")
    proxy = HoldingProxy(server.port)
    await proxy.start()
    b = await connect(HOST, server.port, id="B", reconnect=True)
    a = await connect(HOST, proxy.port, id="A", reconnect=True)
    received: list[str] = []
    try:
        await a.send("B")  # A#1, delivered normally
        received.append((await next_event(b, Message)).id)
        # and acknowledged before the cut: else A rightly resends it, and the server
        # rightly answers with a duplicate ack (it was delivered)
        assert (await next_event(a, Acked)).seq == 1

        proxy.passing.clear()  # from now on, hold what the server says to A
        hellos = proxy.hellos
        proxy.cut()
        await next_event(a, Disconnected)
        await a.send("B")  # A#2 and A#3: kept unacknowledged while offline
        await a.send("B")
        await async_wait_until(lambda: proxy.hellos > hellos, "A's new hello")
        await a.send("B")  # A#4, while A waits for its welcome
        proxy.passing.set()
        await next_event(a, Welcomed)
        acks: dict[int, bool] = {}
        while not {2, 3, 4} <= set(acks):
            ack = await next_event(a, Acked)
            acks[ack.seq] = ack.duplicate
        assert not any(acks.values()), (
            f"the server took resent frames for duplicates (seq: duplicate) {acks}:"
            " they were acknowledged but never delivered"
        )

        async def collect() -> None:
            while len(received) < 4:
                received.append((await next_event(b, Message)).id)

        await asyncio.wait_for(collect(), 10.0)
        assert received == ["A#1", "A#2", "A#3", "A#4"], received
    finally:
        await a.close()
        await b.close()
        await proxy.close()
