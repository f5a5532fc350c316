"""The client's state file: SQLite, written a little per event, on a real file.

Bytes written are measured with the kernel's count for this process
(``/proc/self/io``, ``wchar``: every byte handed to write calls), around one
save, when nothing else in the process writes.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from vclock.asyncio.client import Client, ClientOptions
from vclock.asyncio.statefile import SQLITE_MAGIC, StateFile, StateFileError, load_state, save_state
from vclock.client import ClientState, SavedClient
from vclock.clock import VectorClock
from vclock.protocol import PROTOCOL_VERSION, Deliver, Welcome
from vclock.protocol.codec import encode_json
from vclock.store import Store
from vclock.tools.eventlog import EventLog

IO = Path("/proc/self/io")
needs_proc_io = pytest.mark.skipif(not IO.exists(), reason="needs /proc/self/io (Linux)")


def written() -> int:
    """Bytes this process has handed to write calls so far."""
    for line in IO.read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def node_with_state() -> ClientState:
    node = ClientState("C", resume=True)
    node.receive_all(Welcome(v=PROTOCOL_VERSION, id="C", peers=["A"], sync_interval=1.0))
    node.receive_all(Deliver(sender="A", seq=3, clock=VectorClock({"A": 3}), body="hi", n=1))
    node.broadcast("mine")
    node.send("A", body={"x": [1, 2]})
    node.hello()
    node.receive_all(
        Welcome(v=1, id="C", peers=[], sync_interval=1.0, bclock=VectorClock({"X": 4}))
    )
    return node


def held_broadcast(n: int, body: str = "") -> Deliver:
    """X's broadcast ``n + 1``: held back, waiting for X's first one."""
    count = n + 1
    clock = VectorClock({"X": count})
    return Deliver(sender="X", seq=count, clock=clock, bclock=clock, body=body, n=n)


def test_a_saved_state_reads_back_the_same(tmp_path: Path) -> None:
    node = node_with_state()
    node.receive_all(held_broadcast(2))  # X's count is 4 now: X#3 is old, X#6 next
    node.receive_all(held_broadcast(6))
    assert node.held and node.unacked and node.last_seq
    store = StateFile(tmp_path / "C.state")
    store.save(node, ["line one", "line two"])
    store.close()
    saved = load_state(tmp_path / "C.state")
    expected = node.save()
    expected.journal = ["line one", "line two"]
    assert saved == expected


def test_a_new_state_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    StateFile(tmp_path / "C.state").close()
    assert stat.S_IMODE((tmp_path / "C.state").stat().st_mode) == 0o600


def test_rows_come_and_go_with_the_held_and_unacked_frames(tmp_path: Path) -> None:
    node = ClientState("C", resume=True)
    node.receive_all(Welcome(v=PROTOCOL_VERSION, id="C", peers=["A"], sync_interval=1.0))
    store = StateFile(tmp_path / "C.state")
    sent = [node.send("A", body=i) for i in range(3)]
    for n in range(1, 4):
        node.receive_all(held_broadcast(n))
    store.save(node, [])
    node.receive_all(
        Deliver(sender="X", seq=1, clock=VectorClock({"X": 1}), bclock=VectorClock({"X": 1}), n=4)
    )
    del node.unacked[sent[0].seq]
    store.save(node, [])
    store.close()
    saved = load_state(tmp_path / "C.state")
    assert saved is not None
    assert saved.held == [] and [f.seq for f in saved.unacked] == [2, 3]
    assert saved.bdelivered == VectorClock({"X": 4}) and saved.delivered == 4


@needs_proc_io
def test_each_save_writes_what_changed_not_the_whole_state(tmp_path: Path) -> None:
    # The first format rewrote the whole state per event: with 2,000 held
    # broadcasts of 200 bytes, over 600 KB for each new one.
    node = ClientState("C", resume=True, max_held=5000)
    node.receive_all(Welcome(v=PROTOCOL_VERSION, id="C", peers=[], sync_interval=1.0))
    store = StateFile(tmp_path / "C.state")
    per_save: dict[int, int] = {}
    for n in range(1, 2001):
        node.receive_all(held_broadcast(n, body="b" * 200))
        before = written()
        store.save(node, [f"held X#{n + 1}"])
        per_save[n] = written() - before
    store.close()
    early = sum(per_save[n] for n in range(101, 201)) / 100
    late = sum(per_save[n] for n in range(1901, 2001)) / 100
    # A few 4 KiB pages in the WAL per save, and a checkpoint now and then.
    assert late <= 32 * 1024, (early, late)
    assert late <= 2 * early, (early, late)
    saved = load_state(tmp_path / "C.state")
    assert saved is not None and len(saved.held) == 2000


def test_a_json_state_file_is_converted_once(tmp_path: Path) -> None:
    node = node_with_state()
    node.receive_all(held_broadcast(2))
    legacy = node.save()
    legacy.journal = ["a line the log may lack"]
    path = tmp_path / "C.state"
    path.write_bytes(encode_json(legacy))
    assert load_state(path) == legacy  # reading alone converts nothing
    assert path.read_bytes().startswith(b"{")
    store = StateFile(path)
    assert store.load() == legacy
    store.close()
    assert path.read_bytes().startswith(SQLITE_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C.state"]
    assert load_state(path) == legacy


def test_save_state_replaces_the_whole_content(tmp_path: Path) -> None:
    path = tmp_path / "C.state"
    save_state(path, node_with_state().save())
    fresh = SavedClient(id="C", clock=VectorClock({"C": 9}), journal=["x"])
    save_state(path, fresh)
    assert load_state(path) == fresh


@pytest.mark.parametrize(
    "content", [b"not json at all", b'{"some": "json"}', b"SQLite format 3\x00" + b"\x00" * 200]
)
def test_a_file_that_is_not_a_state_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "C.state"
    path.write_bytes(content)
    with pytest.raises(StateFileError, match="not a vclock client state file"):
        StateFile(path)
    assert path.read_bytes() == content  # left as it was


def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "server.sqlite3"
    Store(path).close()
    before = path.read_bytes()
    with pytest.raises(StateFileError, match="not a vclock client state file"):
        StateFile(path)
    assert path.read_bytes() == before


def test_a_node_converts_a_json_state_file_and_completes_its_log(tmp_path: Path) -> None:
    log = EventLog(tmp_path, "A")
    sent = log.line("send", {"A": 5}, peer="B", msg="A#5")
    path = tmp_path / "A.state"
    path.write_bytes(encode_json(SavedClient(id="A", clock=VectorClock({"A": 5}), journal=[sent])))
    node = Client(ClientOptions(id="A", state_path=path, log=log))  # crashed before the log line
    assert log.path.read_text().splitlines() == [sent]
    assert node.clock == VectorClock({"A": 5})
    node.local_event("after the upgrade")
    assert path.read_bytes().startswith(SQLITE_MAGIC)
    saved = load_state(path)
    assert saved is not None and saved.clock == VectorClock({"A": 6})
    assert saved.journal == log.path.read_text().splitlines()[-1:]
