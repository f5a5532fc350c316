"""A real server and real clients on 127.0.0.1: what the server prints, what the
clients log, and how everything stops."""

from __future__ import annotations

import datetime as _dt
import re
import signal
import socket
import threading
from pathlib import Path

import pytest

from vclock.clock import VectorClock
from vclock.events import CAUSAL_KINDS, Event

from .conftest import (
    ClientProcess,
    Process,
    Processes,
    ServerProcess,
    count_kinds,
    events_of,
    vclock_argv,
    wait_for_exchanges,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

CYCLE = "New synchronization cycle started."
WAITING = (
    "No client data received. Synchronization not applicable at the moment. Waiting for a client."
)
ADDRESS = r"127\.0\.0\.1:\d+"


def clients_line(n: int) -> str:
    return f"^Number of clients to be synchronized: {n}$"


def assert_cycle_header(server: ServerProcess, index: int) -> None:
    """The line before a "Number of clients" line announces the cycle, as in the seed."""
    assert server.lines()[index - 1] == CYCLE, server.describe()


def stop_server_and_clients(
    server: ServerProcess, clients: list[ClientProcess], *, quiet: bool = False
) -> None:
    """SIGTERM the server; it and every client must exit 0, the clients saying why."""
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()
    if not quiet:
        assert server.lines()[-1] == "Server stopped.", server.describe()
    for client in clients:
        assert client.wait() == 0, client.describe()
        assert any(
            re.match(r"^Server closed the session \(.+\); exiting\.$", line)
            for line in client.lines()
        ), client.describe()


# 1. The seed's console lines


def test_console_shows_the_seed_lines_in_order(start_server, start_client) -> None:
    server = start_server()

    # Before any client: a cycle with nobody to synchronize.
    first, _ = server.wait_for_line(clients_line(0))
    assert_cycle_header(server, first)
    server.wait_for_line(f"^{re.escape(WAITING)}$", start=first + 1)
    assert server.lines()[first + 1] == WAITING
    assert not any("got connected" in line for line in server.lines())

    # One client: connected, its data received and recorded, then counted.
    start_client("A", server.port)
    connected, match = server.wait_for_line(
        f"^({ADDRESS}) got connected successfully$", start=first
    )
    address = match.group(1)
    server.wait_for_line(f"^{re.escape(address)} joined as A$", start=connected)
    at, match = server.wait_for_line(r"^At (.+), data was received from client$", start=connected)
    stamp = _dt.datetime.fromisoformat(match.group(1))
    assert abs(_dt.datetime.now() - stamp) < _dt.timedelta(hours=1)  # local wall time, not garbage
    updated, _ = server.wait_for_line(r"^Client Data updated by Server with: ", start=at)
    assert updated == at + 1, server.describe()
    assert server.lines()[updated] == f"Client Data updated by Server with: {address}"
    one, _ = server.wait_for_line(clients_line(1), start=updated)
    assert_cycle_header(server, one)

    # Three clients.
    start_client("B", server.port)
    start_client("C", server.port)
    three, _ = server.wait_for_line(clients_line(3), start=one)
    assert_cycle_header(server, three)
    assert server.count(f"^{ADDRESS} got connected successfully$") == 3


def test_quiet_server_prints_only_the_listening_line(start_server, start_client) -> None:
    server = start_server("--quiet")
    clients = [start_client(i, server.port) for i in ("A", "B", "C")]
    # The service works: messages flow, and syncs go out (with three clients, a
    # message between two of them leaves the third behind the frontier).
    for client in clients:
        client.wait_for_line(r"receive <- ")
    wait_until(
        lambda: sum(client.count(r"sync <- server") for client in clients),
        what="a sync cycle to reach a client",
    )
    assert len(server.lines()) == 1, server.describe()
    stop_server_and_clients(server, clients, quiet=True)
    assert len(server.lines()) == 1, "quiet must stay quiet on shutdown\n" + server.describe()
    assert server.err_lines() == []


# 2. Three clients exchange clocks; the event logs obey the clock rules


def check_clock_rules(log_dir: Path, ids: list[str]) -> dict[str, int]:
    """Check every client's log against the server's; return counts of what was checked."""
    logs = {pid: events_of(log_dir, pid) for pid in [*ids, "server"]}
    sends: dict[str, Event] = {}
    for pid in ids:
        for event in logs[pid]:
            if event.kind == "send":
                assert event.msg not in sends, f"message id {event.msg} used twice"
                sends[event.msg] = event
    syncs = {event.msg: event for event in logs["server"] if event.kind == "sync"}
    checked = {"causal": 0, "receive": 0, "sync-receive": 0}
    finals: dict[str, VectorClock] = {}

    for me in ids:
        prev = VectorClock()
        for number, event in enumerate(logs[me], 1):
            where = f"{me}.jsonl line {number}: {event}"
            clock = VectorClock(event.clock)
            if event.kind not in CAUSAL_KINDS:
                assert clock == prev, f"{where}: an annotation must carry the clock unchanged"
                continue
            checked["causal"] += 1
            assert clock[me] == prev[me] + 1, (
                f"{where}: own entry must rise by exactly 1 (was {prev})"
            )
            if event.kind in ("local", "send"):
                assert clock == prev.tick(me), where
            elif event.kind == "receive":
                sent = sends.get(event.msg)
                assert sent is not None, f"{where}: no send record for {event.msg}"
                assert (sent.pid, sent.peer) == (event.peer, me), f"{where}: matched {sent}"
                sent_clock = VectorClock(sent.clock)
                assert clock >= sent_clock, f"{where}: below the sent clock {sent_clock}"
                assert clock > prev, f"{where}: not after the previous clock {prev}"
                assert clock == prev.merge(sent_clock).tick(me), where
                checked["receive"] += 1
            elif event.kind == "sync-receive":
                sync = syncs.get(event.msg)
                assert sync is not None, f"{where}: the server logged no {event.msg}"
                assert sync.to is not None and me in sync.to, (
                    f"{where}: {sync} was not sent to {me}"
                )
                frontier = VectorClock(sync.clock)
                assert clock >= frontier, f"{where}: below the frontier {frontier}"
                assert clock > prev, f"{where}: not after the previous clock {prev}"
                assert clock == prev.merge(frontier).tick(me), where
                checked["sync-receive"] += 1
            prev = clock
        finals[me] = prev

    for me in ids:
        for other in ids:
            assert finals[me][other] <= finals[other][other], (
                f"{me} ends knowing {finals[me][other]} events of {other},"
                f" who counted {finals[other][other]}"
            )
    return checked


def test_three_clients_exchange_clocks_then_stop_with_the_server(
    start_server, start_client, tmp_path
) -> None:
    logs = tmp_path / "logs"
    server = start_server("--log", str(logs))
    ids = ["A", "B", "C"]
    clients = [start_client(i, server.port, "--log", str(logs)) for i in ids]
    server.wait_for_line(clients_line(3))
    wait_for_exchanges(logs, ids, n=5)
    wait_until(
        lambda: sum(count_kinds(logs, i, "sync-receive") for i in ids) >= 2,
        what="sync cycles to reach the clients",
    )

    stop_server_and_clients(server, clients)
    # Each session ended by the server is noted in the client's log, last.
    for i in ids:
        last = events_of(logs, i)[-1]
        assert (last.kind, last.peer) == ("leave", "server"), last

    checked = check_clock_rules(logs, ids)
    assert checked["receive"] >= 15 and checked["sync-receive"] >= 2, checked


# 3. Duplicate ids


def test_duplicate_id_is_refused_and_the_first_client_goes_on(
    start_server, start_client, processes: Processes, tmp_path
) -> None:
    logs = tmp_path / "logs"
    server = start_server()
    a = start_client("A", server.port, "--log", str(logs))
    start_client("B", server.port, "--log", str(logs))
    before = wait_for_exchanges(logs, ["A", "B"], n=2)

    second = start_client("A", server.port, wait_connected=False)
    assert second.wait() != 0, second.describe()
    err = "\n".join(second.err_lines())
    assert re.search(r"duplicate-id|already connected", err), second.describe()
    assert "'A'" in err, second.describe()
    assert second.count("^Connected to ") == 0
    server.wait_for_line(rf"^{ADDRESS} refused: duplicate-id: ")

    # The first A was not disturbed: still running, still exchanging with B.
    wait_for_exchanges(logs, ["A", "B"], more_than=before, n=3)
    assert a.alive(), a.describe()
    assert server.count(r"^A \(") == 0, "the first A must not have been disconnected"
    assert server.alive()


# 5. Stopping the server stops clients that keep no log, however it is stopped


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name
)
def test_stopping_the_server_ends_a_client_without_log(start_server, start_client, sig) -> None:
    server = start_server()
    client = start_client("A", server.port)
    client.wait_for_line(r"report -> server")  # alone, it reports to the server
    server.send_signal(sig)
    status = server.wait()
    if sig == signal.SIGKILL:
        assert status == -signal.SIGKILL
    else:
        assert status == 0, server.describe()
        assert server.lines()[-1] == "Server stopped."
    assert client.wait() == 0, client.describe()
    client.wait_for_line(r"^Server closed the session \(.+\); exiting\.$")
    assert client.err_lines() == [], client.describe()


def test_stopped_client_says_bye_and_peers_see_it_leave(start_server, start_client) -> None:
    server = start_server()
    a = start_client("A", server.port)
    b = start_client("B", server.port)
    a.wait_for_line(r"peer joined: B")
    b.send_signal(signal.SIGTERM)
    assert b.wait() == 0, b.describe()
    assert b.lines()[-1] == "Client stopped."
    a.wait_for_line(r"peer left: B")
    server.wait_for_line(rf"^B \({ADDRESS}\) disconnected$")
    assert a.alive() and server.alive()


def test_restarted_client_resumes_its_clock_and_message_ids_stay_unique(
    start_server, start_client, tmp_path
) -> None:
    logs = tmp_path / "logs"
    server = start_server()
    start_client("B", server.port, "--log", str(logs))
    first = start_client("A", server.port, "--log", str(logs))
    before = wait_for_exchanges(logs, ["A", "B"], n=3)
    first.send_signal(signal.SIGTERM)
    assert first.wait() == 0, first.describe()
    server.wait_for_line(rf"^A \({ADDRESS}\) disconnected$")
    last_sent = max(e.clock["A"] for e in events_of(logs, "A") if e.kind == "send")

    start_client("A", server.port, "--log", str(logs))
    wait_for_exchanges(logs, ["A", "B"], more_than=before, n=3)
    events = events_of(logs, "A")
    joins = [e for e in events if e.kind == "join"]
    assert len(joins) == 2
    assert joins[1].clock.get("A", 0) >= last_sent, (
        "the second session must resume from the server's clock"
    )
    msg_ids = [e.msg for e in events if e.kind == "send"]
    assert len(msg_ids) == len(set(msg_ids)), "a message id was reused after the restart"


# Errors a user can make, reported without a traceback


def test_client_without_a_server_says_so(processes: Processes) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = processes.client("A", port, wait_connected=False)
    assert client.wait() == 1, client.describe()
    err = "\n".join(client.err_lines())
    assert f"cannot reach a vclock server at 127.0.0.1:{port}" in err, err
    assert "Traceback" not in err


def test_second_server_on_a_busy_port_says_so(start_server, processes: Processes) -> None:
    server = start_server()
    argv = vclock_argv("server", "--port", str(server.port))
    second = processes.add(lambda: Process("second server", argv, cwd=processes.cwd))
    assert second.wait() == 1, second.describe()
    err = "\n".join(second.err_lines())
    assert f"cannot listen on 127.0.0.1:{server.port}" in err, err
    assert "Traceback" not in err
    assert server.alive()


class FakeServer:
    """A TCP listener that is not a vclock server: it reads the hello, then
    answers with a non-frame line or just hangs up."""

    def __init__(self, answer: bytes | None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(20)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(20)
            try:
                conn.recv(4096)
                if self.answer is not None:
                    conn.sendall(self.answer)
                    conn.recv(4096)  # wait for the client to hang up
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


NOT_VCLOCK = {"garbage": b"HTTP/1.1 400 Bad Request\r\n\r\n", "hang-up": None}


@pytest.mark.parametrize("answer", NOT_VCLOCK.values(), ids=NOT_VCLOCK.keys())
def test_client_facing_something_else_than_a_vclock_server_says_so(
    processes: Processes, answer
) -> None:
    fake = FakeServer(answer)
    try:
        client = processes.client("A", fake.port, wait_connected=False)
        status = client.wait()
    finally:
        fake.close()
    err = "\n".join(client.err_lines())
    assert status == 1, client.describe()
    assert "Traceback" not in err, err
    assert err.startswith(f"Error: 127.0.0.1:{fake.port} "), err
