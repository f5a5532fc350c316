"""What a server keeps across a restart with ``--data DIR``: every id's latest clock,
the cycle counter, and the messages held for resume clients; ``--data :memory:``
keeps nothing.

Restarts here are graceful (SIGTERM); test_crash.py kills the server instead.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vclock.clock import VectorClock
from vclock.protocol import Error
from vclock.protocol.frames import frame_type

from .conftest import (
    ClientProcess,
    RawClient,
    ServerProcess,
    events_of,
    start_server_on_port,
    vclock_argv,
    wait_for_exchanges,
)

pytestmark = pytest.mark.timeout(90)

CYCLE = "New synchronization cycle started."
CLOSED = re.compile(r"^Server closed the session \(server shutting down\); exiting\.$")


def stop_gracefully(server: ServerProcess) -> None:
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()
    assert server.lines()[-1] == "Server stopped.", server.describe()


def latest_from_server_log(run: Path) -> dict[str, dict[str, int]]:
    """Per client id: the pointwise max of the clocks the server logged receiving."""
    latest: dict[str, VectorClock] = {}
    for event in events_of(run, "server"):
        if event.kind == "receive" and event.peer is not None:
            clock = VectorClock(event.clock)
            latest[event.peer] = latest.get(event.peer, VectorClock()).merge(clock)
    return {i: dict(clock.items()) for i, clock in latest.items()}


def sync_msgs(run: Path) -> list[str]:
    return [e.msg or "" for e in events_of(run, "server") if e.kind == "sync"]


def cycle_number(msg: str) -> int:
    return int(msg.removeprefix("sync#"))


def resume_hello(raw: RawClient, client_id: str) -> Any:
    raw.send_line({"type": "hello", "v": 1, "id": client_id, "resume": True})
    welcome = raw.expect("welcome")
    assert welcome.id == client_id
    return welcome


def test_sigterm_then_restart_on_the_same_data_keeps_latest_clocks_and_the_cycle_count(
    start_server, start_client, raw_client, tmp_path: Path
) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    server = start_server("--data", str(data), "--log", str(run))
    a = start_client("A", server.port, "--reconnect", "--log", str(run))
    plain: list[ClientProcess] = [
        start_client(i, server.port, "--log", str(run)) for i in ("B", "C")
    ]
    wait_for_exchanges(run, ["A", "B", "C"], n=3)
    server.wait_for_line(r"^Synchronized: [A-C]")  # at least one sync was sent and logged

    # Graceful stop: the server says so; plain clients exit 0; A keeps trying.
    stop_gracefully(server)
    for client in plain:
        assert client.wait() == 0, client.describe()
        assert any(CLOSED.match(line) for line in client.lines()), client.describe()
    a.wait_for_line(r"^A: connection lost \(.*\); reconnecting\.\.\.$")
    assert a.alive(), a.describe()
    a.send_signal(signal.SIGTERM)
    assert a.wait() == 0, a.describe()
    assert a.lines()[-1] == "Client stopped.", a.describe()

    latest = latest_from_server_log(run)
    assert set(latest) == {"A", "B", "C"}, latest
    cycles_before = server.count(f"^{re.escape(CYCLE)}$")
    syncs_before = sync_msgs(run)
    assert syncs_before, "run 1 sent no sync"

    # Restart on the same folder: each id resumes from its latest clock.
    server = start_server("--data", str(data), "--log", str(run))
    for client_id in ("A", "B", "C"):
        raw = raw_client(server.port)
        welcome = raw.hello(client_id)
        assert dict(welcome.clock.items()) == latest[client_id], (client_id, welcome)
        raw.close()
    server.wait_for_line(r"^C \(127\.0\.0\.1:\d+\) disconnected$")

    # The cycle counter goes on: a newcomer's first sync has a later number,
    # and carries the frontier of run 1.
    watcher = raw_client(server.port)
    watcher.hello("W")
    sync = watcher.expect("sync")
    assert sync.cycle > cycles_before, (sync, cycles_before)
    frontier = VectorClock()
    for clock in latest.values():
        frontier = frontier.merge(VectorClock(clock))
    assert sync.clock == frontier, sync
    server.wait_for_line(r"^Synchronized: W$")
    stop_gracefully(server)  # flushes the log
    msgs = sync_msgs(run)
    assert len(msgs) > len(syncs_before), msgs
    assert len(set(msgs)) == len(msgs), f"sync ids repeat across the restart: {msgs}"
    assert min(map(cycle_number, msgs[len(syncs_before) :])) > max(
        map(cycle_number, syncs_before)
    ), msgs


def test_messages_held_for_a_resume_client_survive_restarts_and_are_delivered_once(
    processes, raw_client, tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    server = processes.server("--data", data)
    port = server.port

    # R asks to be held, then goes away without bye: the server keeps its inbox.
    receiver = raw_client(port)
    resume_hello(receiver, "R")
    receiver.close()
    server.wait_for_line(r"^R \(127\.0\.0\.1:\d+\) disconnected$")

    # S sends R three messages; each is acknowledged once it is stored.
    sender = raw_client(port)
    resume_hello(sender, "S")
    for seq in (1, 2, 3):
        sender.send_line(
            {"type": "send", "to": "R", "seq": seq, "clock": {"S": seq}, "body": f"m{seq}"}
        )
        ack = sender.expect("ack")
        assert (ack.seq, ack.duplicate) == (seq, False), ack
    assert not [f for f in sender.received if isinstance(f, Error)], sender.received
    sender.close()
    stop_gracefully(server)

    # After a restart, R gets them, numbered 1, 2, 3, in order.
    server = start_server_on_port(processes, port, "--data", data)
    receiver = raw_client(port)
    resume_hello(receiver, "R")
    delivers = [receiver.expect("deliver") for _ in range(3)]
    assert [(d.sender, d.seq, d.n, d.body) for d in delivers] == [
        ("S", 1, 1, "m1"),
        ("S", 2, 2, "m2"),
        ("S", 3, 3, "m3"),
    ], delivers
    receiver.send_line({"type": "delivered", "upto": 3})
    # A report right after: its ack proves the delivered frame was handled first.
    receiver.send_line({"type": "report", "seq": 5, "clock": {"R": 5, "S": 3}})
    assert receiver.expect("ack").seq == 5
    receiver.close()
    stop_gracefully(server)

    # After another restart nothing is delivered again: the first deliver R gets is
    # a new message, number 4.
    server = start_server_on_port(processes, port, "--data", data)
    receiver = raw_client(port)
    welcome = resume_hello(receiver, "R")
    assert welcome.clock["R"] == 5, welcome
    sender = raw_client(port)
    welcome = resume_hello(sender, "S")
    assert welcome.clock["S"] == 3, welcome
    sender.send_line({"type": "send", "to": "R", "seq": 4, "clock": {"S": 4}, "body": "m4"})
    assert sender.expect("ack").seq == 4
    first = receiver.expect("deliver")
    assert (first.seq, first.n, first.body) == (4, 4, "m4"), receiver.received
    stop_gracefully(server)


@pytest.mark.parametrize("data", [[], ["--data", ":memory:"]], ids=["default", "memory"])
def test_without_data_a_restart_keeps_nothing_and_writes_no_file(
    processes, raw_client, data: list[str]
) -> None:
    """operations.md section 1: without --data (or with :memory:) each run starts
    afresh: no clocks from an earlier run, and nothing written to the disk."""
    before = sorted(processes.cwd.rglob("*"))
    server = processes.server(*data)
    raw = raw_client(server.port)
    raw.hello("A")
    raw.send_line({"type": "report", "seq": 5, "clock": {"A": 5}})
    server.wait_for_line(r'^  A: \{"A": ?5\}$')
    stop_gracefully(server)
    assert sorted(processes.cwd.rglob("*")) == before

    server = processes.server(*data)
    raw = raw_client(server.port)
    welcome = raw.hello("A")
    assert dict(welcome.clock.items()) == {}, welcome
    stop_gracefully(server)


def test_an_inbox_held_past_the_hold_limit_is_dropped_and_the_id_is_free(
    processes, raw_client
) -> None:
    """--hold-for bounds how long an away client's messages are kept: then the
    console says so, sends to it get unknown-peer, and its return starts afresh."""
    server = processes.server("--hold-for", "1")
    receiver = raw_client(server.port)
    resume_hello(receiver, "R")
    receiver.close()
    server.wait_for_line(r"^R \(127\.0\.0\.1:\d+\) disconnected$")
    sender = raw_client(server.port)
    resume_hello(sender, "S")
    sender.send_line({"type": "send", "to": "R", "seq": 1, "clock": {"S": 1}, "body": "kept"})
    assert sender.expect("ack").seq == 1
    server.wait_for_line(
        r"^R did not come back within the hold limit \(--hold-for\);"
        r" its inbox was dropped with 1 waiting message\(s\)$"
    )
    sender.send_line({"type": "send", "to": "R", "seq": 2, "clock": {"S": 2}})
    error = sender.expect("error")
    assert (error.code, error.peer, error.seq) == ("unknown-peer", "R", 2), error
    back = raw_client(server.port)
    resume_hello(back, "R")
    back.send_line({"type": "report", "seq": 1, "clock": {"R": 1}})
    assert back.expect("ack").seq == 1  # the report's ack comes with no deliver before it
    assert not [f for f in back.received if frame_type(f) == "deliver"], back.received


@pytest.mark.parametrize("data", [[], ["--data", "data"]], ids=["memory", "data"])
def test_a_server_restarted_on_the_same_log_folder_still_checks(
    processes, start_client, tmp_path: Path, data: list[str]
) -> None:
    """Each server run logs a ``start`` with the frontier it restored (``{}``
    without --data), and ``vclock check`` takes the frontier from there: a run in
    memory forgets, one on --data may know more than its log says (a crash between
    storing a frame and logging it, found by the chaos run). Before the ``start``
    event, checking a folder with two in-memory runs failed with sync-frontier."""
    run = tmp_path / "run"
    for turn, ids in enumerate([("A", "B"), ("C", "D")]):
        server = processes.server(*data, "--log", str(run))
        clients = [start_client(i, server.port, "--log", str(run)) for i in ids]
        wait_for_exchanges(run, list(ids), n=2)
        server.wait_for_line(r"^Synchronized: ")
        stop_gracefully(server)
        for client in clients:
            assert client.wait() == 0, client.describe()
        starts = [e for e in events_of(run, "server") if e.kind == "start"]
        assert len(starts) == turn + 1, starts
    restored = starts[1].clock
    assert set(restored) == ({"A", "B"} if data else set()), restored
    done = subprocess.run(
        vclock_argv("check", str(run)), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
