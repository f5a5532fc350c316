"""The SQLite store, on real files in tmp_path (and ":memory:")."""

from __future__ import annotations

import random
import sqlite3

import msgspec
import pytest

from vclock import VectorClock
from vclock.clock import DEFAULT_LIMITS
from vclock.hub import (
    STORE_TYPES,
    DropInbox,
    Hub,
    HubState,
    Inbox,
    SaveClock,
    SaveCycle,
    SaveInbox,
    SaveMessage,
)
from vclock.protocol import Deliver, Hello, Report, Send, encode_frame
from vclock.store import SCHEMA_VERSION, Store, StoreError, StoreWriteError

from ..helpers import assert_same_state


def deliver(n: int | None, sender: str = "A", body: object = None) -> Deliver:
    return Deliver(sender=sender, seq=n or 1, clock=VectorClock({sender: n or 1}), body=body, n=n)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state")
    yield s
    s.close()


def reopened(store: Store) -> Store:
    assert store.path is not None
    store.close()
    return Store(store.path)


# Round trips, one kind of action at a time


def test_a_new_store_loads_an_empty_state(store):
    state = store.load()
    assert (state.cycle, state.latest, state.inboxes) == (0, {}, {})


def test_save_clock_round_trips_and_replaces(store):
    store.apply([SaveClock("A", VectorClock({"A": 1, "B": 2}))])
    store.apply([SaveClock("B", VectorClock({"B": 1}))])
    store.apply([SaveClock("A", VectorClock({"A": 3, "B": 2, "é x": 7}))])
    store = reopened(store)
    assert store.load().latest == {
        "A": VectorClock({"A": 3, "B": 2, "é x": 7}),
        "B": VectorClock({"B": 1}),
    }


def test_save_cycle_round_trips_and_replaces(store):
    store.apply([SaveCycle(1)])
    store.apply([SaveCycle(42)])
    assert reopened(store).load().cycle == 42


def test_save_inbox_round_trips(store):
    store.apply([SaveInbox("R", 0), SaveInbox("Q", 5)])
    assert reopened(store).load().inboxes == {"R": Inbox(), "Q": Inbox(acked=5)}


def test_save_message_round_trips_every_field(store):
    kept = Deliver(
        sender="A",
        seq=7,
        clock=VectorClock({"A": 7, "B": 2}),
        body={"text": "héllo", "list": [1, 2.5, None, True]},
        n=1,
    )
    store.apply([SaveInbox("R", 0), SaveMessage("R", kept)])
    (loaded,) = reopened(store).load().inboxes["R"].messages
    assert loaded == kept


def test_messages_load_in_number_order_per_receiver(store):
    numbers = list(range(1, 13))
    random.Random(7).shuffle(numbers)
    store.apply([SaveInbox("R", 0), SaveInbox("Q", 0)])
    store.apply([SaveMessage("R", deliver(n, body=n)) for n in numbers])
    store.apply([SaveMessage("Q", deliver(n, "B", body=n)) for n in (2, 1)])
    inboxes = reopened(store).load().inboxes
    assert [d.n for d in inboxes["R"].messages] == list(range(1, 13))  # 10 after 9
    assert [d.body for d in inboxes["Q"].messages] == [1, 2]


def test_save_inbox_drops_the_acknowledged_messages(store):
    store.apply([SaveInbox("R", 0)] + [SaveMessage("R", deliver(n)) for n in (1, 2, 3)])
    store.apply([SaveInbox("R", 2)])
    inbox = reopened(store).load().inboxes["R"]
    assert inbox.acked == 2
    assert [d.n for d in inbox.messages] == [3]


def test_drop_inbox_forgets_the_inbox_and_its_messages_only(store):
    store.apply([SaveInbox("R", 0), SaveInbox("Q", 0), SaveClock("R", VectorClock({"R": 1}))])
    store.apply([SaveMessage("R", deliver(1)), SaveMessage("Q", deliver(1))])
    store.apply([DropInbox("R")])
    state = reopened(store).load()
    assert list(state.inboxes) == ["Q"] and len(state.inboxes["Q"].messages) == 1
    assert state.latest == {"R": VectorClock({"R": 1})}  # the clock stays


def test_a_state_built_by_a_hub_round_trips(store):
    hub = Hub()
    actions = []
    for peer, hello in enumerate([("R", True), ("S", True), ("B", False)], 1):
        hub.connect(peer, "x")
        actions += hub.receive(peer, Hello(v=1, id=hello[0], resume=hello[1]))
    actions += hub.disconnect(1)
    for seq in (1, 2, 3):
        actions += hub.receive(2, Send(to="R", seq=seq, clock=VectorClock({"S": seq}), body=seq))
    actions += hub.begin_sync_cycle()
    store.apply([a for a in actions if isinstance(a, STORE_TYPES)])
    assert_same_state(reopened(store).load(), hub.state)


# Atomic batches


def test_a_failing_batch_leaves_nothing_behind(store):
    store.apply([SaveCycle(1), SaveInbox("R", 0)])
    batch = [
        SaveClock("A", VectorClock({"A": 1})),
        SaveCycle(2),
        SaveMessage("R", deliver(1)),
        SaveMessage("R", deliver(None)),  # n NULL: the INSERT fails (NOT NULL)
        SaveInbox("Q", 0),
    ]
    with pytest.raises(StoreWriteError) as failed:
        store.apply(batch)
    assert isinstance(failed.value.cause, sqlite3.IntegrityError)
    for state in (store.load(), reopened(store).load()):
        assert state.cycle == 1
        assert state.latest == {}
        assert state.inboxes == {"R": Inbox()}


def test_a_batch_failing_in_python_is_rolled_back_too(store):
    bad = SaveClock("B", object())  # type: ignore[arg-type]  # cannot be encoded
    with pytest.raises((TypeError, NotImplementedError)):
        store.apply([SaveCycle(9), bad])
    assert reopened(store).load().cycle == 0


def test_the_store_works_after_a_failed_batch(store):
    with pytest.raises(StoreError):
        store.apply([SaveInbox("R", 0), SaveMessage("R", deliver(None))])
    store.apply([SaveCycle(3)])
    assert reopened(store).load().cycle == 3


def test_a_batch_is_visible_to_another_connection_once_applied(store):
    store.apply([SaveCycle(5)])
    with sqlite3.connect(store.path) as other:
        assert other.execute("SELECT value FROM meta WHERE key='cycle'").fetchone() == (5,)


def test_a_file_store_writes_durably(store):
    db = store._db
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL


# Paths, versions, memory


def test_a_folder_path_holds_the_database_and_is_found_again(tmp_path):
    folder = tmp_path / "a" / "b"
    first = Store(folder)
    assert first.path == folder / "vclock.sqlite3"
    first.apply([SaveCycle(7), SaveClock("A", VectorClock({"A": 2}))])
    first.close()
    assert (folder / "vclock.sqlite3").is_file()
    again = Store(str(folder))
    state = again.load()
    again.close()
    assert state.cycle == 7 and state.latest == {"A": VectorClock({"A": 2})}


@pytest.mark.parametrize("name", ["server.sqlite3", "server.db"])
def test_a_database_file_path_is_used_as_is(tmp_path, name):
    first = Store(tmp_path / name)
    first.apply([SaveCycle(4)])
    first.close()
    assert (tmp_path / name).is_file()
    again = Store(tmp_path / name)
    assert again.load().cycle == 4
    again.close()


def test_a_schema_version_mismatch_is_a_clear_error(tmp_path):
    Store(tmp_path).close()
    with sqlite3.connect(tmp_path / "vclock.sqlite3") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError) as info:
        Store(tmp_path)
    message = str(info.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert f"version {SCHEMA_VERSION}" in message
    assert "vclock.sqlite3" in message


def test_an_inbox_keeps_the_broadcast_counts_its_client_acknowledged(store):
    store.apply([SaveInbox("R", 4, VectorClock({"A": 2, "B": 1}))])
    assert reopened(store).load().inboxes == {
        "R": Inbox(acked=4, base=VectorClock({"A": 2, "B": 1}))
    }


def test_a_version_1_database_is_migrated_and_keeps_its_inboxes(tmp_path):
    path = tmp_path / "vclock.sqlite3"
    with sqlite3.connect(path) as db:  # as version 1 left it
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "CREATE TABLE inboxes (client_id TEXT PRIMARY KEY, acked INTEGER NOT NULL);"
            "INSERT INTO meta VALUES ('schema', 1); INSERT INTO inboxes VALUES ('R', 3);"
        )
    store = Store(path)
    assert store.load().inboxes == {"R": Inbox(acked=3)}  # base not known: empty
    store.apply([SaveInbox("R", 5, VectorClock({"A": 1}))])
    store.close()
    again = Store(path)
    assert again.load().inboxes == {"R": Inbox(acked=5, base=VectorClock({"A": 1}))}
    again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (3,)


def test_memory_stores_work_and_are_independent():
    one, two = Store(":memory:"), Store(":memory:")
    assert one.path is None
    one.apply([SaveCycle(3), SaveInbox("R", 0), SaveMessage("R", deliver(1))])
    assert one.load().cycle == 3 and len(one.load().inboxes["R"].messages) == 1
    assert two.load() == HubState()
    one.close()
    two.close()


# What a hub may store must load again


def test_a_latest_clock_above_the_wire_limits_loads_again(store):
    # Two wire-valid clocks from one client with disjoint ids: latest is their
    # merge, which has more entries than one frame may carry.
    hub = Hub(max_lead=1, max_ids=1 << 20, max_frame_size=1 << 30)  # ids it never heard
    hub.connect(1, "x")
    hub.receive(1, Hello(v=1, id="A"))
    half = DEFAULT_LIMITS.max_entries - 1
    actions = []
    for seq, prefix in ((1, "x"), (2, "y")):
        clock = VectorClock({f"{prefix}{i}": 1 for i in range(half)} | {"A": seq})
        actions += hub.receive(1, Report(seq=seq, clock=clock))
    assert len(hub.latest["A"]) > DEFAULT_LIMITS.max_entries
    store.apply([a for a in actions if isinstance(a, SaveClock)])
    assert reopened(store).load().latest == hub.latest


def test_a_full_disk_reports_sqlites_error_not_the_rollbacks(store):
    """SQLite rolls a transaction back itself when the disk is full; a ROLLBACK
    after that failed with "no transaction is active" and hid the real error."""
    store.apply([SaveInbox("R", 0)])
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages + 1}")  # a disk that is full
    big = [SaveMessage("R", deliver(n, body="x" * 4000)) for n in range(1, 20)]
    with pytest.raises(StoreWriteError) as failed:
        store.apply(big)
    assert "full" in str(failed.value), failed.value
    assert "no transaction" not in str(failed.value)
    store._db.execute("PRAGMA max_page_count = 1073741823")
    assert reopened(store).load().inboxes == {"R": Inbox()}


def test_a_version_2_database_is_migrated_and_keeps_its_held_messages(tmp_path):
    path = tmp_path / "vclock.sqlite3"
    broadcast = Deliver(sender="A", seq=1, clock=VectorClock({"A": 1}), body="all", n=1)
    with sqlite3.connect(path) as db:  # as version 2 left it: a frame per receiver
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "CREATE TABLE inboxes (client_id TEXT PRIMARY KEY, acked INTEGER NOT NULL, base TEXT);"
            "CREATE TABLE messages (receiver TEXT NOT NULL, n INTEGER NOT NULL,"
            " frame BLOB NOT NULL, PRIMARY KEY (receiver, n));"
            "INSERT INTO meta VALUES ('schema', 2);"
            "INSERT INTO inboxes VALUES ('R', 0, NULL); INSERT INTO inboxes VALUES ('Q', 4, NULL);"
        )
        for receiver, n in (("R", 1), ("Q", 5)):
            frame = encode_frame(msgspec.structs.replace(broadcast, n=n))
            db.execute("INSERT INTO messages VALUES (?, ?, ?)", (receiver, n, frame))
    store = Store(path)
    inboxes = store.load().inboxes
    assert list(inboxes["R"].messages) == [broadcast]
    assert list(inboxes["Q"].messages) == [msgspec.structs.replace(broadcast, n=5)]
    assert store._db.execute("SELECT count(*), max(refs) FROM payloads").fetchone() == (1, 2)
    store.apply([SaveInbox("R", 1), SaveInbox("Q", 5)])
    assert store._db.execute("SELECT count(*) FROM payloads").fetchone() == (0,)
    store.close()


def test_a_message_held_by_many_inboxes_is_stored_once(store):
    body = "x" * 100_000
    broadcast = Deliver(sender="A", seq=1, clock=VectorClock({"A": 1}), body=body)
    receivers = [f"R{i}" for i in range(50)]
    store.apply([SaveInbox(r, 0) for r in receivers])
    store.apply([SaveMessage(r, msgspec.structs.replace(broadcast, n=1)) for r in receivers])
    (size,) = store._db.execute("SELECT sum(length(frame)) FROM payloads").fetchone()
    assert size < 2 * len(body)  # once, not 50 times
    state = reopened(store).load()
    assert all(list(state.inboxes[r].messages)[0].body == body for r in receivers)
