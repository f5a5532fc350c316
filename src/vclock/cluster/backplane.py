"""The NATS backplane of a vclock cluster: subjects, id claims and shared clocks.

A node connects to NATS (``nats-py``) and uses:

- subject ``vclock.<name>.all``: every node's :class:`~vclock.cluster.messages.Status`
  and frontiers (every node subscribes);
- subject ``vclock.<name>.node.<node>``: relays (unicast and broadcast) for that
  node's clients, and answers to them;
- JetStream key-value bucket ``<name>-ids``: one key per connected client id,
  whose value is the node serving it. A node *claims* an id with an atomic
  create-if-absent before it lets the hub welcome a client, refreshes its claims
  every heartbeat, and deletes them when the client leaves. The bucket's
  ``max_age`` (``claim_ttl``) makes the claims of a dead node expire; a node
  may also take over the claim of a node it has not heard from for
  ``dead_after`` seconds, with a compare-and-set on the key's revision;
- JetStream key-value buckets ``<name>-latest`` and ``<name>-held``: the hub's
  store actions (latest clocks, held inboxes, counters), written by
  :class:`~vclock.cluster.jsstore.JetStreamStore`.

A unicast relay is a request (wire version 2: one of a batch,
:class:`~vclock.cluster.messages.Relays`, the relays of one loop iteration for
one node, answered in batches too, :class:`~vclock.cluster.messages.Answers`):
the receiving node answers ``ok`` once the message
is durable there (in the receiver's JetStream inbox, for a held client) or
handed to a plain client's connection, and ``gone`` when the receiver is neither
connected nor held there. :meth:`Backplane.relay` resends it wherever the
directory then locates the receiver (when the answer was ``gone`` or the node
died), for up to ``relay_patience`` seconds; the sender's ``ack`` waits for it.
A relay that cannot be delivered (the receiver left and is not expected back,
or did not come back within ``relay_patience``) ends False: the sender gets
``unknown-peer`` for it instead of an ``ack``.
A relay waits for the previous one to the same receiver while that one is being
resent or went to another node (FIFO). The resume clients of a dead node are
*orphans* for ``relay_patience`` seconds (:class:`~vclock.cluster.messages.Directory`):
a unicast for one is relayed once it shows up somewhere, not refused.

A broadcast is a request to every live node, each answering once it holds the
broadcast durably for its held clients and handed it to its connected ones; the
sender's ``ack`` waits for all (:meth:`Backplane.broadcast`). A request that
gets no answer for ``ASK_AGAIN`` seconds while its node is alive is sent again
(NATS core publishes may be lost); the node remembers the requests it carried
out (by reply subject) and answers one asked again without carrying it out twice.

Everything a node publishes goes through one ordered queue, so the others get
its messages in the order it produced them. ``delay`` (a test hook, from the
environment variable ``VCLOCK_TEST_CLUSTER_DELAY``) makes this node's traffic
late: every message waits that many seconds before it is published, in order,
except relayed *broadcasts*, which each wait a random time up to ``delay`` and
so also overtake one another. Clients must still deliver broadcasts in causal
order (they hold back what comes early); unicast order is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from ..clock import VectorClock
from ..errors import FrameError, VClockError
from ..protocol.frames import Deliver
from .messages import (
    WIRE_VERSION,
    Answers,
    Directory,
    NodeMessage,
    Relay,
    Relayed,
    Relays,
    Status,
    decode_message,
    decode_relayed,
    encode_clock,
    encode_message,
)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")
DELAY_ENV = "VCLOCK_TEST_CLUSTER_DELAY"
ASK_AGAIN = 5.0  # seconds without an answer from a live node before asking again
ANSWERS_KEPT = 65536  # requests remembered, so that one asked again is not done twice
#: A batch of relays for one node is cut into NATS messages of about this size
#: at most (NATS refuses messages above its max_payload, 1 MiB by default).
BATCH_BYTES = 256 * 1024


class ClusterError(VClockError):
    """A node cannot join its cluster (NATS unreachable, JetStream not answering)."""


#: How long a starting node tries to reach NATS, by default (ClusterConfig.connect_patience).
CONNECT_PATIENCE = 10.0
#: How long a starting node waits for JetStream (a NATS cluster answers only once
#: its servers have elected a leader, which takes seconds on a busy machine).
JETSTREAM_PATIENCE = 20.0


async def open_bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    """Open (or create) a JetStream key-value bucket, retrying while JetStream is
    not ready for up to ``JETSTREAM_PATIENCE`` seconds.

    Raises:
        ClusterError: JetStream did not answer in time, or refused.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + JETSTREAM_PATIENCE
    while True:
        try:
            return await js.create_key_value(config)
        except Exception as exc:  # timeouts, "JetStream not enabled", no leader yet
            if loop.time() > deadline:
                raise ClusterError(
                    f"JetStream did not open bucket {config.bucket!r} within"
                    f" {JETSTREAM_PATIENCE:g} s ({type(exc).__name__}: {exc}). Does the NATS"
                    " server run with JetStream on (nats-server -js)?"
                ) from None
            await asyncio.sleep(0.5)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How a server node joins a cluster.

    Args:
        url: the NATS server, ``nats://HOST:PORT`` (several, comma-separated).
        name: the cluster; nodes with the same name on the same NATS share clients.
        node_id: this node's name (letters, digits, ``_``, ``-``); default random.
        heartbeat: seconds between status messages and claim refreshes.
        dead_after: a node not heard from for this long is taken for dead.
        claim_ttl: seconds a claim lives without refresh (the bucket's max_age).
        delay: test hook: hold this node's messages back this many seconds.
        relay_patience: seconds a unicast relay is retried (receiver's node died,
            receiver moving) before it is given up (its sender gets unknown-peer).
        connect_patience: seconds a starting node tries to reach NATS before it
            gives up with a ClusterError (NATS may be starting beside it).
    """

    url: str
    name: str = "vclock"
    node_id: str = field(default_factory=lambda: secrets.token_hex(3))
    heartbeat: float = 0.5
    dead_after: float = 2.0
    claim_ttl: float = 10.0
    delay: float = field(default_factory=lambda: float(os.environ.get(DELAY_ENV) or 0))
    relay_patience: float = 30.0
    connect_patience: float = CONNECT_PATIENCE

    def __post_init__(self) -> None:
        for what, value in (("cluster name", self.name), ("node id", self.node_id)):
            if not NAME_PATTERN.match(value):
                raise ValueError(f"{what} {value!r}: use 1-32 letters, digits, _ or -")


@dataclass(slots=True)
class _Relaying:
    """One unicast relay in flight (see :meth:`Backplane.relay`). One object per
    relay, whatever its path: few objects live while relays are in flight, so
    the garbage collector has little to walk."""

    to: str
    deadline: float  # given up then (relay_patience)
    wait: bool  # someone waits for it (``future``); else a failure is told (undelivered)
    #: the message, kept only off the batched path: a batched relay keeps its
    #: encoding (``data``) alone, so the frame and its clock are freed at once
    message: Relay | None = None
    future: asyncio.Future[bool] | None = None
    done: bool = False
    delivered: bool = False
    retrying: bool = False
    node: str | None = None  # where it is being delivered now (None: not yet, nowhere)
    data: bytes = b""  # in a batch: the encoded Relayed, sent as it is if asked again
    again: float = 0.0  # in a batch: when to ask again if still unanswered
    #: the relay to the same receiver made just before, while this one is not
    #: through: a resend waits for it (FIFO)
    previous: _Relaying | None = None

    def relay_message(self, node: str) -> Relay:
        if self.message is None:
            relayed = decode_relayed(self.data)
            self.message = Relay(node=node, deliver=relayed.deliver, to=relayed.to)
        return self.message

    def waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[bool]:
        """A future done (True or False) once the relay is through."""
        if self.future is None:
            self.future = loop.create_future()
            if self.done:
                self.future.set_result(self.delivered)
        return self.future


@dataclass(slots=True)
class _Asked:
    """A request to another node, waiting for its answer (see :meth:`Backplane._ask`)."""

    future: asyncio.Future[bytes | None]
    node: str
    subject: str
    data: bytes
    reply: str
    shuffle: bool
    again: float  # when to ask again if still unanswered


class Backplane:
    """One node's connection to the cluster. Create it with :meth:`connect`.

    ``on_message(message)`` is called for every message from another node. For a
    unicast relay it returns whether the receiver is here (a bool) or an awaitable
    of that, done once the message is durable; the relaying node gets the answer.
    """

    def __init__(self, config: ClusterConfig, nc: NATS, ids: KeyValue) -> None:
        self.config = config
        self.node = config.node_id
        # an orphan is waited for as long as a relay to it is retried
        self.directory = Directory(
            config.node_id, config.dead_after, orphan_ttl=config.relay_patience
        )
        self._nc = nc
        self._ids = ids
        self.js: JetStreamContext = nc.jetstream()
        self._prefix = f"vclock.{config.name}"
        self._out: asyncio.Queue[tuple[float, str, bytes, str | None] | None] = asyncio.Queue()
        self._replies = nc.new_inbox()
        self._waiting: dict[str, _Asked] = {}  # reply token -> request in flight
        self._tokens = 0
        self._relaying: dict[str, _Relaying] = {}  # receiver -> its latest relay
        # Wire version 2 (Relays): this loop iteration's relays per node, encoded,
        # published together at its end; the relays waiting for their answers
        # (by id); and the answers to other nodes' batches, per reply subject.
        self._batches: dict[str, list[bytes]] = {}
        self._batch_flush: asyncio.Handle | None = None
        self._batched: dict[int, _Relaying] = {}
        # per asking node (its reply subject): relay id -> answer, the last ANSWERS_KEPT
        self._batch_answers: dict[str, OrderedDict[int, bytes | asyncio.Future[bool]]] = {}
        #: told of each relay made with ``wait=False`` that could not be delivered
        self.undelivered: Callable[[Relay], None] = lambda message: None
        self._relay_ids = itertools.count(1)
        self._batch_reply = f"{self._replies}.b"
        # A batch is written from these pieces: head, the relays, middle, the
        # frontier, last (as encode_message writes it, the relays encoded once each)
        head, _, tail = encode_message(
            Relays(node=config.node_id, reply=self._batch_reply, relays=[])
        ).partition(b'"relays":[]')
        middle, _, last = tail.partition(b'"frontier":null')
        self._batch_frame = (head + b'"relays":[', b"]" + middle + b'"frontier":', last)
        #: this node's frontier, sent with each batch (at or above its clocks)
        self.frontier: Callable[[], VectorClock | None] = lambda: None
        self._answers_out: dict[str, tuple[list[int], list[int]]] = {}
        self._answer_flush: asyncio.Handle | None = None
        #: whether a client is connected or held on this node (set by the server)
        self.is_local: Callable[[str], bool] = lambda client_id: False
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeping: asyncio.Task[None] | None = None
        self._closing = False
        # request (its reply subject) -> its answer: a request asked again is
        # answered again, not carried out twice (see ASK_AGAIN)
        self._answers: OrderedDict[str, bytes | asyncio.Task[bytes]] = OrderedDict()
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self.on_message: Callable[[NodeMessage], Awaitable[bool] | bool | None] = lambda message: (
            None
        )
        #: the relays of one batch from node ``node`` (with its frontier, if it sent
        #: one), carried out together: for each, what ``on_message`` answers for a
        #: Relay (a future, not any awaitable)
        self.on_relays: Callable[
            [str, list[Relayed], VectorClock | None], list[asyncio.Future[bool] | bool | None]
        ] = self._one_by_one

    def _one_by_one(
        self, node: str, relays: list[Relayed], frontier: VectorClock | None
    ) -> list[asyncio.Future[bool] | bool | None]:
        results: list[asyncio.Future[bool] | bool | None] = []
        for relayed in relays:
            result = self.on_message(Relay(node=node, deliver=relayed.deliver, to=relayed.to))
            if result is None or isinstance(result, bool):
                results.append(result)
            else:
                results.append(asyncio.ensure_future(result))
        return results

    @classmethod
    async def connect(cls, config: ClusterConfig) -> Backplane:
        """Connect to NATS, open (or create) the buckets and subscribe.

        Raises:
            ClusterError: NATS cannot be reached, or its JetStream does not answer.
        """
        errors: list[Exception] = []  # the last one only

        async def error(exc: Exception) -> None:  # instead of nats-py printing tracebacks
            errors[:] = [exc]

        try:  # (with endless reconnects, nats-py also retries a first connect forever)
            nc = await asyncio.wait_for(
                nats.connect(
                    config.url.split(","), connect_timeout=5, max_reconnect_attempts=-1,
                    error_cb=error,
                ),
                timeout=config.connect_patience,
            )  # fmt: skip
        except Exception as exc:  # nats-py raises its own types for an unreachable server
            why = errors[-1] if errors else exc
            raise ClusterError(
                f"cannot reach NATS at {config.url} within {config.connect_patience:g} s"
                f" ({type(why).__name__}: {why}). Is nats-server running there?"
            ) from None
        js = nc.jetstream()
        ids = await open_bucket(
            js, KeyValueConfig(bucket=f"{config.name}-ids", ttl=config.claim_ttl)
        )
        backplane = cls(config, nc, ids)
        await nc.subscribe(f"{backplane._replies}.*", cb=backplane._answered)
        await nc.subscribe(f"{backplane._prefix}.all", cb=backplane._receive)
        await nc.subscribe(f"{backplane._prefix}.node.{config.node_id}", cb=backplane._receive)
        backplane._tasks = {asyncio.create_task(backplane._publisher())}
        backplane._sweeping = asyncio.create_task(backplane._sweeper())
        return backplane

    async def close(self, claims: list[str], held: list[str]) -> None:
        """Release ``claims``, say this node is leaving (``held``: the resume
        clients whose inbox it kept, now orphans), publish what is queued and
        disconnect."""
        for client_id in claims:
            await self.release(client_id)
        self.publish(Status(node=self.node, clients=[], held=held, leaving=True, wire=WIRE_VERSION))
        self._out.put_nowait(None)
        self._closing = True  # the queue is shut: answers from now on go in tasks
        if self._sweeping is not None:
            self._sweeping.cancel()
        await asyncio.wait(self._tasks, timeout=5 + self.config.delay)
        await self._nc.drain()

    # Publishing (ordered)

    def publish(self, message: NodeMessage, node: str | None = None) -> None:
        """Queue ``message`` for every node, or for ``node`` only."""
        subject = f"{self._prefix}.node.{node}" if node else f"{self._prefix}.all"
        self._enqueue(subject, encode_message(message))

    def _enqueue(
        self, subject: str, data: bytes, reply: str | None = None, shuffle: bool = False
    ) -> None:
        if self._batches:  # relays batched earlier go first: one order for everything
            self._flush_batches()
        self._put(subject, data, reply, shuffle)

    def _put(
        self, subject: str, data: bytes, reply: str | None = None, shuffle: bool = False
    ) -> None:
        delay = self.config.delay
        if delay and shuffle:
            # test hook: broadcasts late *and* out of order (see the module doc)
            wait = random.uniform(0, delay)
            self._loop.call_later(wait, self._out.put_nowait, (0.0, subject, data, reply))
            return
        self._out.put_nowait((self._loop.time() + delay, subject, data, reply))

    async def _publisher(self) -> None:
        while (item := await self._out.get()) is not None:
            due, subject, data, reply = item
            wait = due - self._loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await self._nc.publish(subject, data, reply=reply or "")
            except Exception:  # NATS away: a relay is resent, the rest repaired later
                pass

    # Batches of relays (wire version 2)

    def _add_to_batch(self, node: str, data: bytes) -> None:
        self._batches.setdefault(node, []).append(data)
        if self._batch_flush is None:
            self._batch_flush = self._loop.call_soon(self._flush_batches)

    def _flush_batches(self) -> None:
        """Publish this iteration's relays: one :class:`Relays` per node (cut at
        ``BATCH_BYTES``), in the order they were made."""
        if self._batch_flush is not None:
            self._batch_flush.cancel()
            self._batch_flush = None
        batches, self._batches = self._batches, {}
        head, middle, last = self._batch_frame
        # each relay's clock went into the frontier before it was batched
        tail = middle + encode_clock(self.frontier()) + last
        for node, parts in batches.items():
            subject = f"{self._prefix}.node.{node}"
            start, size = 0, 0
            for end, part in enumerate(parts):
                if size and size + len(part) > BATCH_BYTES:
                    self._put(subject, head + b",".join(parts[start:end]) + tail)
                    start, size = end, 0
                size += len(part) + 1
            self._put(subject, head + b",".join(parts[start:]) + tail)

    def _batch_answered(self, data: bytes) -> None:
        message = self._receive_message(data)
        if not isinstance(message, Answers):
            return
        batched, relaying = self._batched, self._relaying
        for relay_id in message.ok:
            me = batched.pop(relay_id, None)
            if me is None or me.done:
                continue
            # _relay_done(me, True), inlined: this runs for every relayed message
            me.done = me.delivered = True
            me.previous = None
            if relaying.get(me.to) is me:
                del relaying[me.to]
            if me.future is not None and not me.future.done():
                me.future.set_result(True)
        for relay_id in message.gone:
            me = batched.pop(relay_id, None)
            if me is not None:
                self._resend(me)

    def _resend(self, me: _Relaying) -> None:
        """A batched relay came back ``gone``, or its node died: resend it (in a
        task), wherever the receiver is now."""
        me.retrying = True
        self._go_on(me, me.previous, pause=True)

    def _carry_out(self, batch: Relays) -> None:
        """Carry out another node's batch of relays (each once, however often it is
        asked) and queue the answers."""
        reply = batch.reply
        answers = self._batch_answers.get(reply)
        if answers is None:
            answers = self._batch_answers[reply] = OrderedDict()
            if len(self._batch_answers) > 64:  # nodes long gone (each start: a new subject)
                del self._batch_answers[next(iter(self._batch_answers))]
        fresh: list[Relayed] = []
        for relayed in batch.relays:
            known = answers.get(relayed.id)
            if known is None:
                fresh.append(relayed)
            else:  # asked again: the same answer, once it is known
                self._answer_when(reply, relayed.id, known)
        if not fresh:
            return
        results = self.on_relays(batch.node, fresh, batch.frontier)
        out = self._answers_out.get(reply)
        if out is None:
            out = self._answers_out[reply] = ([], [])
        ok, gone = out
        for relayed, result in zip(fresh, results, strict=True):
            relay_id = relayed.id
            if result is None or result is True:
                answers[relay_id] = b"ok"
                ok.append(relay_id)
            elif result is False:
                answers[relay_id] = b"gone"
                gone.append(relay_id)
            else:  # once durable
                answers[relay_id] = result
                self._answer_when(reply, relay_id, result)
        if self._answer_flush is None:
            self._answer_flush = self._loop.call_soon(self._flush_answers)
        while len(answers) > ANSWERS_KEPT:
            answers.popitem(last=False)

    def _answer_when(
        self, reply: str, relay_id: int, answer: bytes | asyncio.Task[bytes] | asyncio.Future[bool]
    ) -> None:
        if isinstance(answer, bytes):
            self._queue_answer(reply, relay_id, answer == b"ok")
        elif answer.done():
            self._queue_answer(reply, relay_id, _succeeded(answer))
        else:
            answer.add_done_callback(
                lambda done: self._queue_answer(reply, relay_id, _succeeded(done))
            )

    def _queue_answer(self, reply: str, relay_id: int, ok: bool) -> None:
        out = self._answers_out.get(reply)
        if out is None:
            out = self._answers_out[reply] = ([], [])
        out[0 if ok else 1].append(relay_id)
        if self._answer_flush is None:
            self._answer_flush = self._loop.call_soon(self._flush_answers)

    def _flush_answers(self) -> None:
        """This iteration's answers, one :class:`Answers` per asking node. Like a
        request's answer they do not wait for ``delay``: with none they join the
        ordered queue (published with this iteration's batches, in the same
        write to NATS), with one (a test hook), or once the queue is shut, they
        go at once, in a task."""
        self._answer_flush = None
        out, self._answers_out = self._answers_out, {}
        for reply, (ok, gone) in out.items():
            if not ok and not gone:
                continue
            data = encode_message(Answers(node=self.node, ok=ok, gone=gone))
            if not self.config.delay and not self._closing:
                self._out.put_nowait((0.0, reply, data, None))
                continue
            task = self._loop.create_task(self._publish_now(reply, data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _publish_now(self, subject: str, data: bytes) -> None:
        with contextlib.suppress(Exception):  # NATS away: the relaying node asks again
            await self._nc.publish(subject, data)

    # Broadcasts, confirmed by every live node

    def broadcast(self, message: Relay) -> asyncio.Task[None]:
        """Relay a broadcast to every other live node. The task ends once each one
        confirmed it: it is in the inboxes of the resume clients held there (in
        JetStream) and handed to the clients connected there. The resume clients
        of a node that dies before confirming, and those whose node died before
        (orphans), get it relayed one by one, wherever they show up (in the
        background: not waited for); their hold-back queue drops a copy."""
        assert message.to is None
        return self._loop.create_task(self._broadcast(message))

    async def _broadcast(self, message: Relay) -> None:
        data = encode_message(message)
        directory = self.directory
        now = self._loop.time()
        members = {
            node: directory.held.get(node, frozenset()) | directory.resume.get(node, frozenset())
            for node in directory.nodes
        }
        nodes = [node for node in members if directory.alive(node, now)]
        # The resume clients of a node that died (orphans, and those of a dead node
        # not forgotten yet) are on no node to ask: each gets it relayed one by
        # one, the relay waiting for it to show up somewhere.
        unreached = set(directory.orphans)
        for node in members.keys() - set(nodes):
            unreached |= members[node]
        for client in sorted(unreached):
            self.relay(message.deliver, client)
        answers = await asyncio.gather(*(self._ask(node, data, shuffle=True) for node in nodes))
        for node, answer in zip(nodes, answers, strict=True):
            if answer != b"ok":
                for client in sorted(members[node]):
                    self.relay(message.deliver, client)

    # Unicast relays, confirmed by the receiving node

    def relay(self, deliver: Deliver, to: str, *, wait: bool = True) -> asyncio.Future[bool] | None:
        """Relay a unicast ``deliver`` to the node of client ``to``. The future ends
        True once that node confirmed it, False when it cannot be delivered: the
        receiver is gone and not expected back (a plain client that left, or whose
        node died), or did not show up within ``relay_patience`` seconds. With
        ``wait`` False there is no future (nobody waits: a plain sender's message),
        and :attr:`undelivered` is told of a relay that cannot be delivered.

        Relays to one receiver are pipelined, but a relay that has to be resent
        (its node died, the receiver moved) holds back the later ones to that
        receiver until it is through: unicast stays FIFO per sender.

        The usual case, its receiver's node known and speaking wire version 2 and
        no earlier relay to the receiver held up, costs no task: the relay is
        encoded and joins this iteration's batch for that node (its answer comes
        to :meth:`_batch_answered`, or :meth:`_sweeper` resends it if the node
        dies), and only a relay that has to be resent goes on in a task
        (:meth:`_relay`). This runs for every relayed message."""
        loop = self._loop
        now = loop.time()
        relaying = self._relaying
        previous = relaying.get(to)
        me = _Relaying(to, now + self.config.relay_patience, wait)
        if wait:
            me.future = loop.create_future()
        relaying[to] = me
        if previous is not None and previous.done:
            previous = None
        directory = self.directory
        node = directory.locate(to)
        if (
            node is not None
            and directory.wire.get(node, 1) >= 2
            and (previous is None or (not previous.retrying and previous.node == node))
        ):
            me.previous = previous  # if this one has to be resent, that one goes first
            relay_id = next(self._relay_ids)
            me.node = node
            me.data = data = encode_message(Relayed(id=relay_id, deliver=deliver, to=to))
            me.again = now + ASK_AGAIN
            self._batched[relay_id] = me
            self._add_to_batch(node, data)
        else:
            me.message = Relay(node=self.node, deliver=deliver, to=to)
            self._go_on(me, previous, pause=False)
        return me.future

    def _go_on(self, me: _Relaying, previous: _Relaying | None, *, pause: bool) -> None:
        task = self._loop.create_task(self._relay(me, previous, pause=pause))
        task.add_done_callback(lambda done: self._relay_done(me, _succeeded(done)))

    async def settle(self, to: str, timeout: float = 5.0) -> None:
        """Wait (bounded) for this node's relays to ``to`` in flight: before a client
        that moved here is welcomed, so what was relayed earlier comes first."""
        last = self._relaying.get(to)
        if last is not None and not last.done:
            await asyncio.wait({last.waiter(self._loop)}, timeout=timeout)

    def _relay_done(self, me: _Relaying, delivered: bool) -> None:
        if me.done:
            return
        me.done, me.delivered = True, delivered
        me.previous = None
        to = me.to
        if self._relaying.get(to) is me:
            del self._relaying[to]
        if me.future is not None and not me.future.done():
            me.future.set_result(delivered)
        if not delivered and not me.wait:
            self.undelivered(me.relay_message(self.node))

    async def _relay(self, me: _Relaying, previous: _Relaying | None, *, pause: bool) -> bool:
        message = me.relay_message(self.node)
        assert message.to is not None
        data = encode_message(message)
        if pause:
            await asyncio.sleep(0.1)
        while self._loop.time() < me.deadline:
            node = self.directory.locate(message.to)
            local = node is None and self.is_local(message.to)  # it moved to this node
            target = self.node if local else node
            if (
                previous is not None
                and not previous.done
                and (me.retrying or previous.retrying or previous.node != target)
            ):
                # The earlier one goes first: it is being resent, or it went to
                # another node (the one the receiver left, maybe dead): overtaking
                # it there would break FIFO. Then look where the receiver is again.
                await asyncio.wait({previous.waiter(self._loop)})
                continue
            if target is None and message.to not in self.directory.orphans:
                return False  # gone, and not expected back
            me.node = target
            if local:
                result = self.on_message(message)
                if (
                    result is None
                    or result is True
                    or (not isinstance(result, bool) and await result)
                ):
                    return True
            if node is not None and await self._ask(node, data) == b"ok":
                return True
            me.retrying = True
            await asyncio.sleep(0.1)  # gone from there, or its node died: look again
        return False

    async def _ask(self, node: str, data: bytes, shuffle: bool = False) -> bytes | None:
        """Send to ``node`` and wait for its answer; None once ``node`` is taken for
        dead (:meth:`_sweeper` checks, and asks again after ``ASK_AGAIN`` seconds)."""
        self._tokens += 1
        token = str(self._tokens)
        asked = _Asked(
            self._loop.create_future(), node, f"{self._prefix}.node.{node}", data,
            f"{self._replies}.{token}", shuffle, self._loop.time() + ASK_AGAIN,
        )  # fmt: skip
        self._waiting[token] = asked
        self._enqueue(asked.subject, data, asked.reply, shuffle)
        try:
            return await asked.future
        finally:
            self._waiting.pop(token, None)

    async def _sweeper(self) -> None:
        """Every quarter second: end the requests to nodes taken for dead, and ask
        again those a live node left unanswered for ``ASK_AGAIN`` seconds."""
        while True:
            await asyncio.sleep(0.25)
            now = self._loop.time()
            alive = self.directory.alive
            for asked in list(self._waiting.values()):
                if asked.future.done():
                    continue
                if not alive(asked.node, now):
                    asked.future.set_result(None)
                elif now > asked.again:
                    self._enqueue(asked.subject, asked.data, asked.reply, asked.shuffle)
                    asked.again = now + ASK_AGAIN
            for relay_id, me in list(self._batched.items()):
                assert me.node is not None
                if not alive(me.node, now):
                    del self._batched[relay_id]
                    self._resend(me)
                elif now > me.again:  # asked again, in the next batch
                    self._add_to_batch(me.node, me.data)
                    me.again = now + ASK_AGAIN

    async def _answered(self, msg: Msg) -> None:
        token = msg.subject.rpartition(".")[2]
        if token == "b":
            self._batch_answered(msg.data)
            return
        asked = self._waiting.get(token)
        if asked is not None and not asked.future.done():
            asked.future.set_result(msg.data)

    @staticmethod
    async def _answer(result: Awaitable[bool]) -> bytes:
        return b"ok" if await result else b"gone"

    @staticmethod
    async def _respond(msg: Msg, answer: asyncio.Future[bytes] | asyncio.Future[bool]) -> None:
        try:
            await asyncio.wait({answer})
            await msg.respond(b"ok" if _succeeded(answer) else b"gone")
        except Exception:  # NATS away: the relaying node asks again
            pass

    def _receive_message(self, data: bytes) -> NodeMessage | None:
        try:
            message = decode_message(data)
        except FrameError:
            return None  # not ours (or a newer node's): ignore
        return None if message.node == self.node else message

    async def _receive(self, msg: Msg) -> None:
        message = self._receive_message(msg.data)
        if message is None:
            return
        self.directory.heard(message.node, self._loop.time())
        if isinstance(message, Relays):
            self._carry_out(message)
            return
        if not msg.reply:
            self.on_message(message)
            return
        answer = self._answers.get(msg.reply)
        if answer is None:  # not a request asked again: carry it out
            result = self.on_message(message)
            if result is None or isinstance(result, bool):  # known now: answer now
                answer = b"gone" if result is False else b"ok"
            else:
                answer = self._loop.create_task(self._answer(result))
            self._answers[msg.reply] = answer
            if len(self._answers) > ANSWERS_KEPT:
                self._answers.popitem(last=False)
        if isinstance(answer, bytes):
            with contextlib.suppress(Exception):  # NATS away: the relaying node asks again
                await msg.respond(answer)
            return
        task = self._loop.create_task(self._respond(msg, answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Client ids

    async def claim(self, client_id: str) -> str | None:
        """Claim ``client_id`` for this node. Returns None when it is ours, else
        the node that holds it."""
        value = self.node.encode()
        for _ in range(5):
            try:
                await self._ids.create(client_id, value)
                return None
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await self._ids.get(client_id)
            except KeyNotFoundError:
                continue  # expired or released meanwhile: try again
            owner = (entry.value or b"").decode()
            if owner != self.node and not self._may_take_over(owner):
                return owner
            try:
                await self._ids.update(client_id, value, last=entry.revision)
                return None
            except KeyWrongLastSequenceError:
                continue
        return "?"

    def _may_take_over(self, owner: str) -> bool:
        """A claim of a node that stopped talking can be taken over (once we have
        listened long enough to know)."""
        now = self._loop.time()
        if now - self._started <= self.config.dead_after:
            return False
        return not self.directory.alive(owner, now)

    async def refresh(self, claims: list[str]) -> None:
        """Renew this node's claims (so the bucket's max_age does not expire them)."""
        value = self.node.encode()
        for client_id in claims:
            try:
                await self._ids.put(client_id, value)
            except Exception:  # a refresh is retried next heartbeat
                pass

    async def release(self, client_id: str) -> None:
        """Give the id up if this node still holds it."""
        try:
            entry = await self._ids.get(client_id)
            if (entry.value or b"").decode() == self.node:
                await self._ids.delete(client_id, last=entry.revision)
        except Exception:  # gone already, or taken over: nothing to release
            pass


def _succeeded(future: asyncio.Future[bool] | asyncio.Future[bytes]) -> bool:
    """A relay's task or future ended well (True, or b"ok")."""
    if future.cancelled() or future.exception() is not None:
        return False
    return future.result() in (True, b"ok")
