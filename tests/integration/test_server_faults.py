"""A store that cannot write (a full disk) stops the server loudly: nothing that is
not durable is acknowledged, and a restart on the same data loses nothing that was.

The disk is made "full" for the real server process with RLIMIT_FSIZE, so its
SQLite writes fail as they would on a full file system (EFBIG; Python ignores
SIGXFSZ)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from vclock.hub import Action
from vclock.protocol.frames import Ack, Deliver

from ..helpers import async_wait_until
from .conftest import (
    Processes,
    RawClient,
    ServerProcess,
    start_server_on_port,
)

pytestmark = pytest.mark.timeout(90)

FSIZE = 300_000  # bytes any one file of the server may reach
BODY = "x" * 3000


def limited_server(processes: Processes, data: Path) -> ServerProcess:
    code = (
        "import resource, sys;"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({FSIZE}, {FSIZE}));"
        "from vclock.cli import main; main(sys.argv[1:])"
    )
    argv = [sys.executable, "-c", code, "server", "--port", "0", "--sync-interval", "60"]
    argv += ["--data", str(data)]
    return processes.add(lambda: ServerProcess(argv, cwd=processes.cwd))


def resume_hello(raw: RawClient, client_id: str) -> None:
    raw.send_line({"type": "hello", "v": 1, "id": client_id, "resume": True})
    raw.expect("welcome")


def send(raw: RawClient, seq: int) -> None:
    raw.send_line({"type": "send", "to": "R", "seq": seq, "clock": {"A": seq}, "body": BODY})


def test_a_full_disk_stops_the_server_and_a_restart_loses_nothing_acknowledged(
    processes: Processes, raw_client, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = limited_server(processes, data)
    r = raw_client(server.port)
    resume_hello(r, "R")
    r.close()  # R is away; its messages are held in the database

    a = raw_client(server.port)
    resume_hello(a, "A")
    acked: list[int] = []
    seq = 0
    while True:
        seq += 1
        send(a, seq)
        frames = [a.read_frame()]
        if frames[0] is None:
            break  # the server dropped us instead of answering
        assert isinstance(frames[0], Ack) and not frames[0].duplicate, frames
        acked.append(seq)
        assert seq < 500, "the disk never filled up"
    unanswered = seq
    assert acked == list(range(1, unanswered))

    # The server stopped by itself, saying why in one line, without a traceback.
    assert server.wait(timeout=20) == 1, server.describe()
    err = "\n".join(server.err_lines())
    assert "cannot write to" in err and "disk I/O error" in err, server.describe()
    assert "Traceback" not in err, server.describe()

    # Restarted on the same data (the disk has room again): A resends what was not
    # acknowledged, and it is new to the server, not a "duplicate"; R gets it all.
    again = start_server_on_port(processes, server.port, "--data", str(data))
    a = raw_client(again.port)
    resume_hello(a, "A")
    send(a, unanswered)
    ack = a.expect("ack")
    assert ack.seq == unanswered and not ack.duplicate
    r = raw_client(again.port)
    resume_hello(r, "R")
    got: list[int] = []
    while len(got) < unanswered:
        frame = r.expect("deliver")
        assert isinstance(frame, Deliver)
        got.append(frame.seq)
        r.send_line({"type": "delivered", "upto": frame.n})
    assert got == list(range(1, unanswered + 1))
    a.close()


# A failure inside the server's own timer never stops the cycles silently


async def test_cycles_and_hold_expiry_go_on_after_a_cycle_fails(capsys) -> None:
    from vclock.asyncio import Console, serve
    from vclock.asyncio.server import ServerConfig

    server = await serve(ServerConfig(port=0, sync_interval=0.05, hold_for=0.3), Console(None))
    calls = 0
    real = server.hub.begin_sync_cycle

    def failing_once() -> list[Action]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("injected bug")
        return real()

    server.hub.begin_sync_cycle = failing_once  # type: ignore[method-assign]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b'{"type":"hello","v":1,"id":"H","resume":true}\n')
        await reader.readline()  # welcome
        writer.close()  # gone without bye: H is held, until hold_for passes
        await async_wait_until(lambda: "H" not in server.hub.inboxes, "H's inbox to go")
        assert calls > 3
    finally:
        await server.close()
    assert "injected bug" in capsys.readouterr().err


async def test_an_observer_that_fails_does_not_stop_the_server(capsys) -> None:
    from vclock.asyncio import Console, serve
    from vclock.asyncio.server import ServerConfig

    server = await serve(ServerConfig(port=0, sync_interval=0.05), Console(None))

    def broken(action: object) -> None:
        raise ValueError("observer bug")

    server.observe(broken)
    try:
        await async_wait_until(lambda: server.hub.cycle > 3, "three sync cycles")
    finally:
        await server.close()
    assert "observer bug" in capsys.readouterr().err


async def test_a_connection_that_outlives_close_writes_nothing_after_the_files_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the chaos run (load average 12): a connection handler still running
    when close() stopped waiting for it wrote its leave to the closed event log
    ("ValueError: write to closed file", a traceback on stderr). Once the store
    and the log are closed, the server stores and logs nothing more."""
    from vclock.asyncio import Console, serve
    from vclock.asyncio import server as server_module
    from vclock.asyncio.server import ServerConfig
    from vclock.hub import Left, PeerId
    from vclock.tools.eventlog import EventLog, read_events

    monkeypatch.setattr(server_module, "CLOSE_WAIT", 0.0)  # connections may be lost late
    server = await serve(ServerConfig(port=0), Console(None), EventLog(tmp_path, "server"))
    writers = []
    for n in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b'{"type":"hello","v":1,"id":"C%d"}\n' % n)
        await reader.readline()  # welcome
        writers.append(writer)
    await server.close()
    for writer in writers:
        writer.close()
    await asyncio.sleep(0.1)  # connections lost after close() are lost now
    # What a connection lost after close() does: before, ValueError.
    assert server.apply([Left(PeerId(99), "late", "127.0.0.1:1")]) == []
    kinds = [e.kind for e in read_events(tmp_path / "server.jsonl")]
    assert kinds.count("join") == 5 and kinds.count("leave") <= 5, kinds


# A connection is a protocol object, not a task (memory per connection, issue 14)


async def test_connections_cost_the_server_no_task_each() -> None:
    from vclock.asyncio import Console, serve
    from vclock.asyncio.server import ServerConfig
    from vclock.protocol import PROTOCOL_VERSION

    server = await serve(ServerConfig(port=0, sync_interval=60), Console(None))
    writers = []
    try:
        before = len(asyncio.all_tasks())
        for index in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            hello = f'{{"type":"hello","v":{PROTOCOL_VERSION},"id":"T{index}","peers":"none"}}\n'
            writer.write(hello.encode())
            assert b'"welcome"' in await reader.readline()
            writers.append(writer)
        assert len(server.hub.clients) == 20
        # the open_connection readers' own tasks are none either: only ours run
        assert len(asyncio.all_tasks()) <= before
    finally:
        for writer in writers:
            writer.close()
        await server.close()


# Clocks are stored once per loop iteration, and still before any frame goes out


class _Watched:
    """A transport that checks, at every write, that each ``ack`` and ``deliver``
    in it stands for a clock the server's store already has."""

    def __init__(self, transport: Any, server: Any, seen: list[str]) -> None:
        self._transport, self._server, self._seen = transport, server, seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        latest = self._server.store.load().latest
        for line in data.splitlines():
            frame = json.loads(line)
            if frame["type"] == "ack":
                who, seq = "R", frame["seq"]
            elif frame["type"] == "deliver":
                who, seq = frame["from"], frame["seq"]
            else:
                continue
            stored = latest[who][who] if who in latest else 0
            self._seen.append(f"{frame['type']} {seq}" + ("" if stored >= seq else " NOT STORED"))
        self._transport.write(data)


async def test_acks_and_delivers_go_out_only_after_the_clock_they_stand_for_is_stored() -> None:
    from vclock.asyncio import Console
    from vclock.asyncio.server import Server, ServerConfig
    from vclock.protocol import PROTOCOL_VERSION

    seen: list[str] = []

    class WatchedServer(Server):
        def _connected(self, transport: Any) -> Any:
            return super()._connected(_Watched(transport, self, seen))

    server = WatchedServer(ServerConfig(port=0, sync_interval=60), Console(None))
    await server.start()
    try:
        streams = {}
        for who, resume in (("R", "true"), ("B", "false")):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            hello = f'{{"type":"hello","v":{PROTOCOL_VERSION},"id":"{who}","resume":{resume}}}\n'
            writer.write(hello.encode())
            assert b'"welcome"' in await reader.readline()
            streams[who] = reader, writer
        lines = [
            f'{{"type":"send","to":"B","seq":{n},"clock":{{"R":{n}}},"body":{n}}}\n'
            for n in range(1, 201)
        ]
        streams["R"][1].write("".join(lines).encode())  # in one go: one batch, many clocks
        got = 0
        while got < 200:
            got += (await streams["B"][0].readline()).count(b'"deliver"')
        await async_wait_until(lambda: len(seen) >= 400, "acks and delivers written")
    finally:
        await server.close()
    assert [line for line in seen if line.endswith("NOT STORED")] == []


async def test_frames_queued_behind_two_waits_are_handled_when_the_connection_is_lost() -> None:
    """A cluster node makes a send wait while earlier relays to its receiver settle
    (Link.settling). A connection lost during such a wait still has its frames
    handled; but with two such sends in a row, the end of the first wait closed
    the session and dropped the second send (found in review). A link whose every
    send settles after a moment stands in for the cluster's: the server's own
    interface, no NATS; the loss is the server's transport aborted mid-wait."""
    from vclock.asyncio import Console, serve
    from vclock.asyncio.link import Link
    from vclock.asyncio.server import ServerConfig

    class SlowLink(Link):
        def settling(self, client_id: str) -> asyncio.Future[None]:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.2, done.set_result, None)
            return done

    server = await serve(ServerConfig(port=0), Console(None))
    server._link = SlowLink()
    try:
        b_reader, b_writer = await asyncio.open_connection("127.0.0.1", server.port)
        b_writer.write(b'{"type":"hello","v":1,"id":"B","peers":"none"}\n')
        await b_reader.readline()  # welcome
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b'{"type":"hello","v":1,"id":"A","peers":"none"}\n')
        await reader.readline()  # welcome
        writer.write(
            b'{"type":"send","to":"B","seq":1,"clock":{"A":1}}\n'
            b'{"type":"send","to":"B","seq":2,"clock":{"A":2}}\n'
        )
        peer = server._peers[server.hub.peer_of("A")]  # type: ignore[index]
        await async_wait_until(lambda: peer.waiting, "A's first send to wait")
        peer.transport.abort()  # the connection is lost during the wait
        delivered = [await asyncio.wait_for(b_reader.readline(), 5) for _ in range(2)]
        assert [b'"seq":1' in delivered[0], b'"seq":2' in delivered[1]] == [True, True]
        writer.close()
        b_writer.close()
    finally:
        await server.close()


async def test_the_event_log_says_received_only_once_the_clock_is_stored(tmp_path: Path) -> None:
    """A crash or a full disk between a frame's log line and its clock's store made
    the log say the server received a frame it never stored; the client sent it
    again, and `vclock check` found it received twice (the chaos run). Each
    ``receive`` line must be written after its clock is in the store."""
    from vclock.asyncio import Console
    from vclock.asyncio.server import Server, ServerConfig
    from vclock.protocol import PROTOCOL_VERSION
    from vclock.tools.eventlog import EventLog

    verdicts: list[str] = []
    server: Server

    class WatchedLog(EventLog):
        def append(self, lines: list[str]) -> None:
            latest = server.store.load().latest
            for line in lines:
                event = json.loads(line)
                if event["kind"] == "receive":
                    who, seq = event["peer"], event["clock"][event["peer"]]
                    stored = latest[who][who] if who in latest else 0
                    verdicts.append(f"{who}#{seq}" + ("" if stored >= seq else " NOT STORED"))
            super().append(lines)

    log = WatchedLog(tmp_path, "server")
    server = Server(ServerConfig(port=0, sync_interval=60), Console(None), log=log)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f'{{"type":"hello","v":{PROTOCOL_VERSION},"id":"R"}}\n'.encode())
        assert b'"welcome"' in await reader.readline()
        lines = [f'{{"type":"report","seq":{n},"clock":{{"R":{n}}}}}\n' for n in range(1, 201)]
        writer.write("".join(lines).encode())  # in one go: one batch, many clocks
        await async_wait_until(lambda: len(verdicts) >= 200, "200 receive lines")
        writer.close()
    finally:
        await server.close()
    assert len(verdicts) == 200
    assert [v for v in verdicts if v.endswith("NOT STORED")] == []
