"""What one client says about other ids, and how much it makes the server keep, is
bounded (docs/protocol.md 9.7, 9.8): a forged entry, invented ids and ghost held
inboxes are refused with their own error codes, against a real server process,
and the honest clients beside them carry on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vclock.protocol.frames import Ack, Error, Sync

from .conftest import Bystanders, Processes, RawClient

pytestmark = pytest.mark.timeout(120)

TOP = 2**63 - 1


def refused(raw: RawClient, code: str) -> Error:
    """The next error frame (skipping syncs and notices), which must be ``code``."""
    for _ in range(20):
        frame = raw.read_frame()
        assert frame is not None, f"closed before a {code!r} error: {raw.received}"
        if isinstance(frame, Error):
            assert frame.code == code, frame
            return frame
    raise AssertionError(f"no {code!r} error in {raw.received}")


def largest_entry(raw: RawClient) -> int:
    sync = raw.expect("sync", timeout=15)
    assert isinstance(sync, Sync)
    return max((count for _, count in sync.clock.items()), default=0)


def test_a_poisoned_entry_for_another_id_is_refused_and_does_not_survive_a_restart(
    processes: Processes, raw_client: Callable[[int], RawClient], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    args = ("--sync-interval", "1", "--data", str(data))
    server = processes.server(*args)
    bystanders = Bystanders(processes, server, tmp_path / "logs")
    before = bystanders.counts()

    attacker = raw_client(server.port)
    attacker.hello("A")
    attacker.send_line({"type": "report", "seq": 1, "clock": {"A": 1, "B": TOP}})
    error = refused(attacker, "forged-clock")
    assert error.seq == 1 and "'B'" in error.message
    attacker.send_line({"type": "send", "to": "C", "seq": 2, "clock": {"A": 2, "C": TOP - 1}})
    refused(attacker, "forged-clock")
    # B goes on ticking: its entry was never raised to the counter limit.
    bystanders.assert_unharmed(before)
    assert largest_entry(attacker) < 1000

    attacker.close()
    assert server.stop() == 0, server.describe()
    for client in bystanders.clients.values():
        client.stop()
    again = processes.server(*args)
    watcher = raw_client(again.port)
    watcher.hello("W")
    assert largest_entry(watcher) < 1000
    b = raw_client(again.port)
    b.send_line({"type": "hello", "v": 1, "id": "B", "resume": True})
    b.expect("welcome")
    b.send_line({"type": "report", "seq": 500, "clock": {"B": 500}})
    assert isinstance(b.expect("ack"), Ack)


def test_invented_ids_are_refused_past_the_servers_limit(
    processes: Processes, raw_client: Callable[[int], RawClient], tmp_path: Path
) -> None:
    # A lead lets clocks name ids before they said anything (as in a cluster).
    server = processes.server("--sync-interval", "1", "--max-ids", "8", "--max-lead", "5")
    bystanders = Bystanders(processes, server, tmp_path / "logs")
    before = bystanders.counts()

    attacker = raw_client(server.port)
    welcome = attacker.hello("A")  # A, B and C leave room for 5 more ids
    assert welcome.limits.max_ids == 8 and welcome.limits.max_lead == 5  # announced
    ghosts = {f"ghost{i}": 1 for i in range(40)}
    attacker.send_line({"type": "report", "seq": 1, "clock": {"A": 1, **ghosts}})
    error = refused(attacker, "too-many-ids")
    assert error.seq == 1
    # The session goes on, and a new id past the limit is refused at hello too.
    attacker.send_line({"type": "report", "seq": 2, "clock": {"A": 2}})
    assert largest_entry(attacker) >= 2
    for n in range(10):
        late = raw_client(server.port)
        late.send_line({"type": "hello", "v": 1, "id": f"late{n}"})
        frame = late.read_frame()
        if isinstance(frame, Error):
            assert frame.code == "too-many-ids", frame
            break
    else:
        raise AssertionError("ten new ids were all admitted past --max-ids 8")
    bystanders.assert_unharmed(before)


def test_ghost_held_inboxes_and_broadcast_bodies_are_bounded(
    processes: Processes, raw_client: Callable[[int], RawClient], tmp_path: Path
) -> None:
    """Many never-returning resume ids, then large broadcasts: a broadcast's body is
    stored once, not once per inbox, and the ids and bytes held are capped."""
    data = tmp_path / "data"
    server = processes.server("--sync-interval", "60", "--data", str(data), "--max-held", "40")
    admitted = 0
    for n in range(60):
        ghost = raw_client(server.port)
        ghost.send_line({"type": "hello", "v": 1, "id": f"ghost{n}", "resume": True})
        frame = ghost.read_frame()
        if isinstance(frame, Error):
            assert frame.code == "too-many-held", frame
        else:
            admitted += 1
        ghost.close()
    assert admitted == 40

    sender = raw_client(server.port)
    sender.hello("S")
    body = "x" * (256 << 10)
    for seq in range(1, 9):
        line = {"type": "broadcast", "seq": seq, "clock": {"S": seq}, "bclock": {"S": seq}}
        sender.send_line({**line, "body": body})
    sender.send_line({"type": "report", "seq": 9, "clock": {"S": 9}})
    sender.send_line({"type": "report", "seq": 9, "clock": {"S": 9}})
    refused(sender, "stale-clock")  # every broadcast before it was taken

    size = sum(f.stat().st_size for f in data.iterdir())
    held = 8 * len(body)
    # Database and write-ahead log each hold a copy until a checkpoint; one copy per
    # inbox would be 40 times the bodies.
    assert size < 4 * held, f"{size} bytes on disk for {held} bytes of broadcast bodies"

    # A returning ghost gets all eight, from the one stored copy.
    ghost = raw_client(server.port)
    ghost.send_line({"type": "hello", "v": 1, "id": "ghost0", "resume": True})
    ghost.expect("welcome")
    delivered = [ghost.expect("deliver") for _ in range(8)]
    assert [d.n for d in delivered] == list(range(1, 9))
    assert all(d.body == body for d in delivered)


def test_bytes_held_for_away_clients_are_capped(
    processes: Processes, raw_client: Callable[[int], RawClient]
) -> None:
    server = processes.server("--sync-interval", "60", "--max-held-bytes", "1000000")
    away = raw_client(server.port)
    away.send_line({"type": "hello", "v": 1, "id": "R", "resume": True})
    away.expect("welcome")
    away.close()
    sender = raw_client(server.port)
    sender.send_line({"type": "hello", "v": 1, "id": "S", "resume": True})
    sender.expect("welcome")
    body = "x" * (300 << 10)
    for seq in range(1, 5):
        sender.send_line({"type": "send", "to": "R", "seq": seq, "clock": {"S": seq}, "body": body})
    answers = [sender.read_frame() for _ in range(4)]
    assert [type(a).__name__ for a in answers] == ["Ack", "Ack", "Ack", "Error"], answers
    error = answers[3]
    assert isinstance(error, Error)
    assert (error.code, error.peer, error.seq) == ("store-full", "R", 4)
