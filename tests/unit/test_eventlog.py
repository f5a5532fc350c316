"""The event log's write-ahead repair: a client saves its state with the log lines
of what just happened before it appends them, so a crash in between leaves a
state file whose journal the next start appends (EventLog.complete)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vclock.asyncio.client import Client, ClientOptions, load_state, save_state
from vclock.client import SavedClient
from vclock.clock import VectorClock
from vclock.tools.eventlog import EventLog, iter_events


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    return EventLog(tmp_path, "A")


def test_complete_appends_the_journal_lines_the_log_lacks(log: EventLog) -> None:
    first = log.line("local", {"A": 1})
    log.append([first])
    journal = [log.line("send", {"A": 2}, peer="B", msg="A#1"), log.line("local", {"A": 3})]
    log.complete(journal)
    assert lines_of(log.path) == [first, *journal]


@pytest.mark.parametrize("written", [0, 1, 2])
def test_complete_writes_each_journal_line_once(log: EventLog, written: int) -> None:
    journal = [log.line("receive", {"A": 1, "B": 1}, peer="B", msg="B#1"), log.line("local", {})]
    log.append(journal[:written])  # the crash came after `written` of them
    log.complete(journal)
    log.complete(journal)  # and restarting again changes nothing
    assert lines_of(log.path) == journal


def test_complete_cuts_a_half_written_last_line(log: EventLog) -> None:
    first = log.line("local", {"A": 1})
    log.append([first])
    journal = [log.line("local", {"A": 2})]
    with log.path.open("ab") as file:
        file.write(journal[0].encode()[:10])  # killed in the middle of the write
    log.complete(journal)
    assert lines_of(log.path) == [first, *journal]
    assert [event.clock for _, event in iter_events(log.path)] == [{"A": 1}, {"A": 2}]


def test_a_node_repairs_its_log_from_the_state_it_saved_before_a_crash(tmp_path: Path) -> None:
    log = EventLog(tmp_path, "A")
    sent = log.line("send", {"A": 5}, peer="B", msg="A#5")
    state = tmp_path / "A.state"
    save_state(state, SavedClient(id="A", clock=VectorClock({"A": 5}), journal=[sent]))
    Client(ClientOptions(id="A", state_path=state, log=log))  # restarts: log lacks A#5
    assert lines_of(log.path) == [sent]
    saved = load_state(state)
    assert saved is not None and saved.clock == VectorClock({"A": 5})


async def test_a_nodes_events_reach_its_state_file_before_its_log(tmp_path: Path) -> None:
    log = EventLog(tmp_path, "A")
    state = tmp_path / "A.state"
    save_state(state, SavedClient(id="A", clock=VectorClock({"A": 1})))
    node = Client(ClientOptions(id="A", state_path=state, log=log))
    node.local_event("one")
    saved = load_state(state)
    assert saved is not None
    assert saved.clock == VectorClock({"A": 2})
    assert saved.journal == lines_of(log.path)  # the line is in both, saved first
