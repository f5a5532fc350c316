"""The durable store of a cluster node: the hub's store actions, written to JetStream.

In cluster mode a node's SQLite file would die with the node, so what must
survive the loss of a node lives in JetStream key-value buckets instead:

- ``<name>-latest``: ``latest[i]`` per client id (:class:`~vclock.hub.SaveClock`);
- ``<name>-held``: held inboxes and counters, keys (ids are hex-encoded, so any
  id is one key token):

  - ``i.<id>``: the inbox of resume client ``<id>`` exists; value: JSON
    ``{"acked": n, "base": clock}`` (:class:`~vclock.hub.SaveInbox`; a
    plain number, ``acked``, from older versions);
  - ``m.<id>.<n>``: message ``n`` of that inbox (an encoded ``deliver`` frame),
    removed once a ``delivered`` frame covers it;
  - ``b.<sender>.<node>``: how many broadcasts of ``<sender>`` node ``<node>``
    relayed (the hub's broadcast counts; a node starting takes the max);
  - ``c.<node>``: the node's cycle counter.

:meth:`JetStreamStore.submit` queues one batch of store actions and returns a
future that is done once JetStream has confirmed every write of the batch
(and of every batch before it: one writer, in order; the batches that queue up
while it writes are written together, compacted). The server holds back a
client's frames behind such futures when the batch carries an ``ack`` for it
(see :mod:`vclock.asyncio.server`), so an ``ack`` is only sent once what it
acknowledges is durable. The hub stays sans-I/O: it only returns the actions.

Keys are removed by purging their subject from the bucket's stream, not with a
key-value ``delete``: a delete leaves a marker behind for good, one per message
ever held, so the bucket would grow without bound; a purge leaves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import msgspec
from nats.js.api import KeyValueConfig
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ..clock import ClockLimits, VectorClock
from ..hub import (
    DropInbox,
    Inbox,
    SaveBroadcasts,
    SaveClock,
    SaveCycle,
    SaveInbox,
    SaveMessage,
    StoreAction,
)
from ..protocol.codec import FrameDecoder, encode_frame, encode_json
from ..protocol.frames import Deliver
from .backplane import open_bucket

_TRUSTED = ClockLimits(max_entries=2**31, max_id_length=2**31)
_deliver_decoder: FrameDecoder[Deliver] = FrameDecoder(Deliver, limits=_TRUSTED)


class _InboxKey(msgspec.Struct):
    """The value of an inbox's ``i.<id>`` key."""

    acked: int
    base: VectorClock = msgspec.field(default_factory=VectorClock)


_inbox_key_decoder: FrameDecoder[_InboxKey] = FrameDecoder(_InboxKey, limits=_TRUSTED)


def key_token(client_id: str) -> str:
    """A client id as one key token (ids may hold dots)."""
    return client_id.encode().hex()


def _compact(actions: Iterable[StoreAction]) -> list[StoreAction]:
    """Drop writes a later action of the batch overwrites (clocks, cycle, counts)."""
    items = list(actions)
    last: dict[tuple[str, str], int] = {}
    for index, action in enumerate(items):
        match action:
            case SaveClock(client_id=client_id):
                last["clock", client_id] = index
            case SaveCycle():
                last["cycle", ""] = index
            case SaveBroadcasts(sender=sender):
                last["bcast", sender] = index
    keep = set(last.values())
    return [
        action
        for index, action in enumerate(items)
        if index in keep or not isinstance(action, SaveClock | SaveCycle | SaveBroadcasts)
    ]


class JetStreamStore:
    """One node's writer of store actions into JetStream. Create it with :meth:`open`."""

    def __init__(
        self, node: str, js: JetStreamContext, bucket: str, latest: KeyValue, held: KeyValue
    ) -> None:
        self.node = node
        self._js = js
        self._bucket = bucket  # the held bucket's name; its stream is KV_<bucket>
        self._latest = latest
        self._held = held
        self._queue: asyncio.Queue[tuple[list[StoreAction], asyncio.Future[None]] | None] = (
            asyncio.Queue()
        )
        self._last: asyncio.Future[None] | None = None
        self.generation = 0  # batches submitted so far
        self._acked: dict[str, int] = {}  # receiver -> acked as last written or read
        self._task = asyncio.create_task(self._writer())

    @classmethod
    async def open(cls, js: JetStreamContext, name: str, node: str) -> JetStreamStore:
        latest = await open_bucket(js, KeyValueConfig(bucket=f"{name}-latest"))
        held = await open_bucket(js, KeyValueConfig(bucket=f"{name}-held"))
        return cls(node, js, f"{name}-held", latest, held)

    # Writing

    def submit(self, actions: Iterable[StoreAction]) -> asyncio.Future[None]:
        """Queue a batch; the future is done once it (and all before it) is in JetStream."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((list(actions), future))
        self._last = future
        self.generation += 1
        return future

    async def drain(self) -> None:
        """Wait until every batch submitted so far is written (or failed)."""
        if self._last is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._last)

    async def close(self) -> None:
        await self.drain()
        self._queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, timeout=5)

    async def _writer(self) -> None:
        """Write the queued batches in order. Every batch queued meanwhile is
        written in one go, compacted together (a client's clock written once per
        round, not once per message), and their futures are done together."""
        closing = False
        while not closing:
            item = await self._queue.get()
            items = [item]
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            closing = None in items
            batches = [batch for batch in items if batch is not None]
            actions = _compact(action for batch, _ in batches for action in batch)
            while True:
                try:
                    for action in actions:
                        await self._write(action)
                    break
                except Exception:  # NATS away or slow: retry; acks wait meanwhile
                    await asyncio.sleep(0.2)
            for _, future in batches:
                if not future.done():
                    future.set_result(None)

    async def _write(self, action: StoreAction) -> None:
        held = self._held
        match action:
            case SaveClock(client_id=client_id, clock=clock):
                await self._latest.put(client_id, clock.to_json().encode())
            case SaveCycle(cycle=cycle):
                await held.put(f"c.{self.node}", str(cycle).encode())
            case SaveBroadcasts(sender=sender, count=count):
                await held.put(f"b.{key_token(sender)}.{self.node}", str(count).encode())
            case SaveMessage(receiver=receiver, deliver=deliver):
                await held.put(f"m.{key_token(receiver)}.{deliver.n}", encode_frame(deliver))
            case SaveInbox(receiver=receiver, acked=acked, base=base):
                token = key_token(receiver)
                before = self._acked.get(receiver)
                if before is None:
                    known = await self._read_inbox(receiver)
                    before = None if known is None else known.acked
                await held.put(f"i.{token}", encode_json(_InboxKey(acked, base)))
                self._acked[receiver] = acked
                for n in range((before or 0) + 1, acked + 1):
                    await self._remove(f"m.{token}.{n}")
            case DropInbox(receiver=receiver):
                token = key_token(receiver)
                self._acked.pop(receiver, None)
                await self._remove(f"i.{token}")
                await self._remove(f"m.{token}.>")  # all its messages, in one purge

    async def _remove(self, keys: str) -> None:
        """Remove the held bucket's ``keys`` (a key or a wildcard) leaving no marker."""
        await self._js.purge_stream(f"KV_{self._bucket}", subject=f"$KV.{self._bucket}.{keys}")

    async def _read_inbox(self, receiver: str) -> _InboxKey | None:
        try:
            entry = await self._held.get(f"i.{key_token(receiver)}")
        except KeyNotFoundError:
            return None
        value = entry.value or b"0"
        if value.isdigit():  # written by an older version: acked only
            return _InboxKey(int(value))
        return _inbox_key_decoder.decode(value)

    # Reading

    async def fetch_latest(self, client_id: str) -> VectorClock | None:
        """``latest[client_id]`` as the cluster last stored it, or None."""
        try:
            entry = await self._latest.get(client_id)
        except KeyNotFoundError:
            return None
        return VectorClock.from_json(entry.value or b"{}", limits=_TRUSTED)

    async def load_inbox(self, receiver: str) -> Inbox | None:
        """The held inbox of ``receiver`` as JetStream has it (None: not held).

        Call :meth:`drain` first, so this node's own writes are in."""
        known = await self._read_inbox(receiver)
        if known is None:
            return None
        acked = self._acked[receiver] = known.acked
        inbox = Inbox(acked=acked, base=known.base)
        token = key_token(receiver)
        n = acked + 1
        while True:  # messages are numbered without gaps from acked + 1
            try:
                entry = await self._held.get(f"m.{token}.{n}")
            except KeyNotFoundError:
                return inbox
            inbox.messages.append(_deliver_decoder.decode(entry.value or b""))
            n += 1

    async def load_cycle(self) -> int:
        try:
            entry = await self._held.get(f"c.{self.node}")
        except KeyNotFoundError:
            return 0
        return int(entry.value or b"0")

    async def _keys(self, pattern: str) -> list[str]:
        """The keys of the held bucket that match ``pattern`` (NATS wildcards), filtered
        by the server. Not ``KeyValue.keys(filters=...)``: nats-py matches those
        filters as substrings on the client ("b.*.*" matched no key at all) and logs
        "Server may ignore filters" on every call."""
        watcher = await self._held.watch(pattern, ignore_deletes=True, meta_only=True)
        keys: list[str] = []
        try:
            async for entry in watcher:
                if entry is None:  # nats-py's mark: everything there was is read
                    break
                keys.append(entry.key)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return keys

    async def load_broadcasts(self) -> VectorClock:
        """The broadcast counts every node stored, the max per sender."""
        counts: dict[str, int] = {}
        for key in await self._keys("b.*.*"):
            try:
                entry = await self._held.get(key)
            except KeyNotFoundError:
                continue
            sender = bytes.fromhex(key.split(".")[1]).decode()
            counts[sender] = max(counts.get(sender, 0), int(entry.value or b"0"))
        return VectorClock(counts, limits=_TRUSTED)
