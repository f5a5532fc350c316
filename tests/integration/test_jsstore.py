"""The cluster's durable store (vclock.cluster.jsstore) against a real nats-server
with JetStream: what it writes, what it reads back, and that what is done with
leaves nothing behind (a long-running cluster must not grow without bound)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.client import JetStreamContext

from vclock import VectorClock
from vclock.cluster.jsstore import JetStreamStore, key_token
from vclock.hub import DropInbox, SaveBroadcasts, SaveInbox, SaveMessage
from vclock.protocol.frames import Deliver

from .conftest import needs_nats

pytestmark = needs_nats
HELD_STREAM = "KV_t-held"  # the held bucket of cluster "t"


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


@pytest.fixture
async def store(js: JetStreamContext) -> AsyncIterator[JetStreamStore]:
    store = await JetStreamStore.open(js, "t", "n1")
    try:
        yield store
    finally:
        await store.close()


def deliver(n: int) -> Deliver:
    return Deliver(sender="A", seq=n, clock=VectorClock({"A": n}), body=n, n=n)


async def held_messages(js: JetStreamContext) -> int:
    """Messages in the held bucket's stream, delete markers included."""
    info = await js.stream_info(HELD_STREAM)
    return int(info.state.messages or 0)


async def test_an_inbox_reads_back_as_written_from_the_first_unacked_message(
    store: JetStreamStore,
) -> None:
    await store.submit([SaveInbox("B", 0), *(SaveMessage("B", deliver(n)) for n in (1, 2, 3))])
    await store.submit([SaveInbox("B", 1)])
    await store.drain()
    inbox = await store.load_inbox("B")
    assert inbox is not None
    assert inbox.acked == 1
    assert [m.n for m in inbox.messages] == [2, 3]
    assert inbox.messages[0] == deliver(2)
    assert await store.load_inbox("nobody") is None


async def test_acknowledged_messages_leave_no_markers_behind(
    store: JetStreamStore, js: JetStreamContext
) -> None:
    await store.submit([SaveInbox("B", 0), *(SaveMessage("B", deliver(n)) for n in range(1, 51))])
    await store.drain()
    assert await held_messages(js) == 51
    await store.submit([SaveInbox("B", 50)])
    await store.drain()
    assert await held_messages(js) == 1  # i.B only: no delete marker per message


async def test_a_dropped_inbox_leaves_nothing(store: JetStreamStore, js: JetStreamContext) -> None:
    await store.submit([SaveInbox("B", 0), *(SaveMessage("B", deliver(n)) for n in range(1, 21))])
    await store.submit([SaveInbox("B", 5)])
    await store.submit([SaveInbox("C", 0), SaveMessage("C", deliver(1))])
    await store.submit([DropInbox("B")])
    await store.drain()
    assert await store.load_inbox("B") is None
    assert await held_messages(js) == 2  # C's inbox and its message, untouched
    inbox = await store.load_inbox("C")
    assert inbox is not None and [m.n for m in inbox.messages] == [1]


async def test_an_inbox_keeps_its_base_and_reads_the_older_format(
    store: JetStreamStore, js: JetStreamContext
) -> None:
    await store.submit([SaveInbox("B", 2, VectorClock({"A": 3}))])
    await store.drain()
    inbox = await store.load_inbox("B")
    assert inbox is not None and (inbox.acked, inbox.base) == (2, VectorClock({"A": 3}))
    kv = await js.key_value("t-held")
    await kv.put(f"i.{key_token('O')}", b"4")  # an inbox key as older versions wrote it
    old = await store.load_inbox("O")
    assert old is not None and (old.acked, old.base) == (4, VectorClock())


async def test_broadcast_counts_read_back_as_the_max_over_nodes(
    store: JetStreamStore, js: JetStreamContext, capfd: pytest.CaptureFixture[str]
) -> None:
    assert await store.load_broadcasts() == VectorClock()
    await store.submit([SaveBroadcasts("A", 3), SaveBroadcasts("B.x", 1), SaveInbox("C", 0)])
    await store.drain()
    other = await JetStreamStore.open(js, "t", "n2")
    try:
        await other.submit([SaveBroadcasts("A", 5)])
        await other.drain()
    finally:
        await other.close()
    # nats-py's keys(filters=["b.*.*"]) matched no key, so a node forgot them all
    assert await store.load_broadcasts() == VectorClock({"A": 5, "B.x": 1})
    assert "Server may ignore filters" not in capfd.readouterr().err
