"""A server's link to the other nodes of its cluster (cluster mode): the NATS
implementation of :class:`~vclock.asyncio.link.Link`.

It connects the node's :class:`~vclock.hub.ClusterHub` to the other nodes over
NATS (:mod:`vclock.cluster.backplane`): it claims a client's id cluster-wide
before the hub sees its ``hello`` (:meth:`ClusterLink.claim`), carries the hub's
:class:`~vclock.hub.Forward` actions and the node's status and frontier to the
other nodes (:meth:`ClusterLink.carry`), turns their messages into the hub's
``remote_*`` and ``deliver_remote`` calls, and writes the hub's store actions to
JetStream (:meth:`ClusterLink.stored`). An ``ack`` waits until what it
acknowledges is durable here, and the ``ack`` of a relayed send is written once
the relay is through, or replaced by ``unknown-peer`` (:meth:`answer_later`).
Frames to clients stay the server's job; this module does not know the server.
"""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ..clock import VectorClock
from ..cluster.backplane import Backplane, ClusterConfig
from ..cluster.jsstore import JetStreamStore
from ..cluster.messages import WIRE_VERSION, Frontier, NodeMessage, Relay, Relayed, Status
from ..errors import ErrorCode, PeerError
from ..events import message_id
from ..hub import Action, ClusterHub, Forward, Joined, Left, Outgoing, SaveClock, StoreAction
from ..protocol.frames import Ack, Error, Hello
from .link import Link

#: How the link hands the hub's actions for what other nodes did to the server:
#: ``Server.apply``, which returns what their durability waits for.
Apply = Callable[[list[Action]], list[Awaitable[object]]]

#: Seconds between writes of the plain (non-resume) clients' latest clocks to
#: JetStream: the last clock of each client that sent meanwhile, in one round,
#: not a write per message (see :meth:`ClusterLink.save_clocks`).
PLAIN_CLOCKS_EVERY = 0.5


#: The garbage collector's first threshold on a cluster node (Python's default
#: is 700): see :func:`collect_less_often`.
GC_THRESHOLD = 10_000


def collect_less_often() -> None:
    """Raise the garbage collector's first threshold to :data:`GC_THRESHOLD`.

    A cluster node keeps every relay in flight until the other node answers,
    and decodes another node's batch of relays all at once; a young-generation
    collection every 700 allocations caught hundreds of these alive each time
    and moved them to the older generations, whose full collections then walked
    the whole heap: 3 to 4% of a node's CPU under cross-node load, against under
    0.5% for relays within the node (the ``cluster`` benchmark cell). Collecting
    the young generation every 10,000 allocations keeps that near nothing; the
    cost is some garbage with reference cycles living a little longer."""
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, GC_THRESHOLD), second, third)


@dataclass(frozen=True, slots=True)
class _RelayVerdict:  # a LateFrame
    """Cluster mode: the answer to a resume client's send relayed to another node,
    written once the relay is through (the client's frames wait for it): its
    ``ack`` if it was delivered, else ``unknown-peer``. (A plain sender's relay
    has none: see :meth:`ClusterLink.carry`.)"""

    relay: asyncio.Future[bool]
    sender: str
    seq: int
    to: str
    ack: Ack

    def answer(self) -> Ack | Error:
        if _delivered(self.relay):
            return self.ack
        return _not_delivered(self.sender, self.seq, self.to)


def _delivered(relay: asyncio.Future[bool]) -> bool:
    return relay.done() and not relay.cancelled() and relay.exception() is None and relay.result()


def _not_delivered(sender: str, seq: int, to: str) -> Error:
    """What the sender of a relayed send gets instead of an ``ack`` (or, a plain
    sender, at all) when it could not be delivered."""
    return Error(
        code=ErrorCode.UNKNOWN_PEER.value,
        message=f"{to!r} left (or its node died) and did not come back;"
        f" your message {message_id(sender, seq)} was not delivered",
        peer=to,
        seq=seq,
    )


class ClusterLink(Link):
    """One server's part in a cluster. Create it with :meth:`start`."""

    claims_ids = True
    sees_clocks = True  # in JetStream only once what they cover is

    def __init__(
        self,
        hub: ClusterHub,
        apply: Apply,
        config: ClusterConfig,
        backplane: Backplane,
        jsstore: JetStreamStore,
    ) -> None:
        self.hub = hub
        self.apply = apply
        self.config = config
        self.backplane = backplane
        self.jsstore = jsstore
        #: clients arriving here whose earlier relays are still in flight (see
        #: :meth:`claim`); local sends to them wait, so they do not overtake those
        self._settling: dict[str, asyncio.Future[None]] = {}
        # The batch being applied: the clocks it stores (saved after the rest is
        # durable) and its resume clients' relayed sends, (sender, seq) -> (the
        # relay, its receiver), whose acks wait for them (answer_later).
        self._clocks: list[SaveClock] = []
        self._relays: dict[tuple[str, int], tuple[asyncio.Future[bool], str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: per client, what its next latest-clock write waits for (save_clocks)
        self._clock_gates: dict[str, asyncio.Future[Any]] = {}
        #: plain clients' latest clocks not written yet, and the timer that writes them
        self._plain_clocks: dict[str, SaveClock] = {}
        self._plain_timer: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, hub: ClusterHub, apply: Apply, config: ClusterConfig) -> ClusterLink:
        """Join the cluster: connect to NATS and JetStream, take in the cycle count
        and broadcast counts the cluster stored, and start the heartbeat."""
        backplane = await Backplane.connect(config)
        jsstore = await JetStreamStore.open(backplane.js, config.name, config.node_id)
        collect_less_often()
        link = cls(hub, apply, config, backplane, jsstore)
        hub.resume_from(await jsstore.load_cycle(), await jsstore.load_broadcasts())
        backplane.on_message = link._on_message
        backplane.on_relays = link._on_relays
        backplane.undelivered = link._undelivered
        backplane.is_local = lambda i: i in hub.clients or i in hub.inboxes
        backplane.frontier = lambda: hub.frontier
        link._heartbeat = asyncio.create_task(link._heartbeat_loop())
        return link

    async def close(self, claims: list[str]) -> None:
        """Leave the cluster: the JetStream writes are finished, ``claims`` released,
        and the others told this node is leaving (its held inboxes are orphans)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self._save_plain_clocks()
        await self.jsstore.close()
        await self.backplane.close(claims, held=list(self.hub.inboxes))

    # The hooks of Link

    def settling(self, client_id: str) -> Awaitable[None] | None:
        return self._settling.get(client_id)

    def stored(self, stores: list[StoreAction]) -> list[Awaitable[object]]:
        """In JetStream before any ack; the clocks only after what they cover
        (:meth:`batch_done`)."""
        self._clocks = [action for action in stores if isinstance(action, SaveClock)]
        rest = [action for action in stores if not isinstance(action, SaveClock)]
        return [self.jsstore.submit(rest)] if rest else []

    def carry(self, action: Forward | Joined | Left, pending: list[Awaitable[object]]) -> None:
        if type(action) is Forward:  # every relayed message: the exact type
            to = action.to
            if to is not None and action.frame.sender not in self.hub.inboxes:
                # A plain sender's message: no ack waits for it and it is never
                # resent, so nothing waits for the relay here either; a failure
                # is told (:meth:`_undelivered`).
                self.backplane.relay(action.frame, to, wait=False)
                return
        relayed = self.forward(action)
        if relayed is None:
            return
        pending.append(relayed)
        if isinstance(action, Forward) and action.to is not None:  # a resume client's
            self._relays[action.frame.sender, action.frame.seq] = (relayed, action.to)

    def answer_later(
        self, client_id: str, ack: Ack, pending: list[Awaitable[object]]
    ) -> _RelayVerdict | None:
        if ack.duplicate:
            # a resent frame: durable once what the original caused is
            effects = self._clock_gates.get(client_id)
            if effects is not None:
                pending.append(effects)
        relayed = self._relays.pop((client_id, ack.seq), None)
        if relayed is None:
            return None
        relay, to = relayed
        return _RelayVerdict(relay, client_id, ack.seq, to, ack)

    def batch_done(self, pending: list[Awaitable[object]]) -> None:
        # Relays whose ack was not written (the sender's connection was closing):
        # it resends the frame if it comes back; told meanwhile if one failed.
        for (sender, seq), (relay, to) in self._relays.items():
            relay.add_done_callback(functools.partial(self._relay_failed, sender, seq, to))
        if self._clocks:
            self.save_clocks(self._clocks, after=pending)
        self._clocks, self._relays = [], {}

    def cycle_done(self) -> None:
        self.publish_frontier()

    def _undelivered(self, message: Relay) -> None:
        sender, to = message.deliver.sender, message.to
        peer_id = self.hub.peer_of(sender)
        if peer_id is not None and to is not None:
            self.apply([Outgoing(peer_id, _not_delivered(sender, message.deliver.seq, to))])

    def _relay_failed(self, sender: str, seq: int, to: str, relay: asyncio.Future[bool]) -> None:
        peer_id = self.hub.peer_of(sender)
        if peer_id is not None and not _delivered(relay):
            self.apply([Outgoing(peer_id, _not_delivered(sender, seq, to))])

    def save_clocks(self, clocks: list[SaveClock], after: list[Awaitable[object]]) -> None:
        """Write clients' latest clocks to JetStream once ``after`` is done (what the
        frames they cover caused: inbox writes, relays) and every earlier clock of
        the same client is written.

        A node that adopts a client takes a resent frame at or below its stored
        clock for a copy and acks it without delivering it, so the stored clock
        must never get ahead of what it covers: if this node dies first, the
        stored clock is older and the resent frame is delivered (the receiver
        drops a copy by ``seq``). Only resume sessions resend, so a plain client's
        clock waits for nothing: it is kept and written with the others every
        ``PLAIN_CLOCKS_EVERY`` seconds, and when the client leaves (a client moving
        to another node finds it there), so plain sessions cost JetStream no
        write per message. Acks do not wait for these writes."""
        now: list[StoreAction] = []
        for clock in {action.client_id: action for action in clocks}.values():
            client_id = clock.client_id
            resume = client_id in self.hub.inboxes
            earlier = self._clock_gates.get(client_id)
            if not resume and earlier is None:
                self._plain_clocks[client_id] = clock
                continue
            plain = self._plain_clocks.pop(client_id, None)
            if plain is not None:  # its earlier clocks first
                now.append(plain)
            waits = list(after) if resume else []
            if earlier is not None:
                waits.append(earlier)
            if not waits:
                now.append(clock)
                continue
            gate = asyncio.gather(*waits, return_exceptions=True)
            self._clock_gates[clock.client_id] = gate
            gate.add_done_callback(functools.partial(self._clock_ready, clock, gate))
        if now:
            self.jsstore.submit(now)
        if self._plain_clocks and self._plain_timer is None:
            self._plain_timer = asyncio.get_running_loop().call_later(
                PLAIN_CLOCKS_EVERY, self._save_plain_clocks
            )

    def _save_plain_clocks(self) -> None:
        if self._plain_timer is not None:
            self._plain_timer.cancel()
            self._plain_timer = None
        if self._plain_clocks:
            clocks, self._plain_clocks = self._plain_clocks, {}
            self.jsstore.submit(clocks.values())

    def _clock_ready(self, clock: SaveClock, gate: asyncio.Future[Any], _: object) -> None:
        if self._clock_gates.get(clock.client_id) is gate:
            del self._clock_gates[clock.client_id]
        self.jsstore.submit([clock])

    def publish_frontier(self) -> None:
        said = VectorClock(self.hub.ids.said)
        self.backplane.publish(
            Frontier(node=self.backplane.node, clock=self.hub.frontier, said=said)
        )

    async def claim(self, hello: Hello) -> Hello | PeerError:
        """Claim the hello's id cluster-wide (assigning one if it has none), and
        take in the clock the cluster has for it. A taken id is refused here."""
        backplane, hub = self.backplane, self.hub
        try:
            client_id = hub.admit(hello)
        except PeerError:
            return hello  # the hub refuses it, with the same error
        hello = msgspec.structs.replace(hello, id=client_id)
        jsstore = self.jsstore
        inbox = None
        try:
            owner = await backplane.claim(client_id)
            latest = await jsstore.fetch_latest(client_id)
            if owner is None:  # its held inbox, as the cluster stores it
                while True:
                    generation = jsstore.generation
                    await jsstore.drain()  # this node's own writes first
                    inbox = await jsstore.load_inbox(client_id)
                    if jsstore.generation == generation:
                        break
        except Exception as exc:  # NATS unreachable: refuse; the client retries later
            return PeerError(
                f"the cluster cannot claim {client_id!r} now ({exc}); try again",
                code=ErrorCode.DUPLICATE_ID,
                peer=client_id,
            )
        if owner is not None:
            return PeerError(
                f"a client named {client_id!r} is already connected (to node {owner});"
                " pick another id",
                code=ErrorCode.DUPLICATE_ID,
                peer=client_id,
            )
        hub.adopt_inbox(client_id, inbox)
        # Our earlier relays to it go first (FIFO): they deliver into the adopted
        # inbox; local sends to it wait meanwhile (Server._process).
        settled = asyncio.get_running_loop().create_future()
        self._settling.setdefault(client_id, settled)
        try:
            await backplane.settle(client_id)
        finally:
            if self._settling.get(client_id) is settled:
                del self._settling[client_id]
            settled.set_result(None)
        if latest is not None:
            hub.merge_latest(client_id, latest)
        return hello

    def _on_message(self, message: NodeMessage) -> Awaitable[bool] | bool | None:
        backplane = self.backplane
        match message:
            case Status():
                now = asyncio.get_running_loop().time()
                self._membership(*backplane.directory.update(message, now))
            case Relay(deliver=deliver, to=None):
                # confirmed once in the held inboxes here (and handed to clients)
                pending = self.apply(self.hub.deliver_remote(deliver, None))
                return _confirmed(pending) if pending else True
            case Relay(deliver=deliver, to=to):
                # the relaying node acks its sender once we answer ok: after the
                # message is durable here (held client) or handed to the client
                here = self._is_here(to)
                pending = self.apply(self.hub.deliver_remote(deliver, to))
                if not here:
                    return False
                return _confirmed(pending) if pending else True
            case Frontier(clock=clock, said=said):
                self.hub.merge_frontier(clock, said)
        return None

    def _is_here(self, client_id: str | None) -> bool:
        """Whether this node delivers to ``client_id`` (connected or held here);
        a broadcast (None) is delivered by every node."""
        hub = self.hub
        return client_id is None or hub.peer_of(client_id) is not None or client_id in hub.inboxes

    def _on_relays(
        self, node: str, relays: list[Relayed], frontier: VectorClock | None
    ) -> list[asyncio.Future[bool] | bool | None]:
        """A batch of relays from another node, carried out as one batch of the hub's
        actions (one ``apply``): each is answered as :meth:`_on_message` would,
        those waiting for durability all once the batch is durable."""
        hub = self.hub
        inboxes, peer_of = hub.inboxes, hub.peer_of  # _is_here, for each relay
        here = [
            to is None or to in inboxes or peer_of(to) is not None
            for to in [relay.to for relay in relays]
        ]
        pending = self.apply(
            hub.deliver_relays([(relay.deliver, relay.to) for relay in relays], frontier)
        )
        if not pending:
            return list(here)
        durable = asyncio.get_running_loop().create_future()
        asyncio.gather(*pending, return_exceptions=True).add_done_callback(
            functools.partial(_resolve, durable)
        )
        return [durable if ok else False for ok in here]

    def _membership(self, joined: list[str], left: list[str]) -> None:
        actions: list[Action] = []
        for client_id in joined:
            self.hub.forget_inbox(client_id)  # its node now keeps its inbox
            actions += self.hub.remote_joined(client_id)
        for client_id in left:
            actions += self.hub.remote_left(client_id)
        directory = self.backplane.directory
        # away (held elsewhere) or between nodes (orphans): a send to them is relayed
        self.hub.set_remote_held(set(directory.held_clients()) | directory.orphans.keys())
        self.apply(actions)

    def _publish_status(self) -> None:
        clients = self.hub.clients
        held = [i for i in self.hub.inboxes if i not in clients]
        resume = [i for i in clients if i in self.hub.inboxes]
        status = Status(
            node=self.backplane.node, clients=clients, held=held, resume=resume, wire=WIRE_VERSION
        )
        self.backplane.publish(status)

    async def _heartbeat_loop(self) -> None:
        backplane = self.backplane
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            now = loop.time()
            if now > due:  # woken late: the loop was too busy to hear the others
                backplane.directory.pause(now - due, now)
            self._publish_status()
            self._membership(*backplane.directory.expire(now))
            await backplane.refresh(self.hub.clients)
            due = loop.time() + self.config.heartbeat
            await asyncio.sleep(self.config.heartbeat)

    def forward(self, action: Forward | Joined | Left) -> asyncio.Future[Any] | None:
        """Carry a hub action to the other nodes: a relay or a broadcast (the task
        is done once they confirmed it), or a change of this node's clients."""
        backplane = self.backplane
        match action:
            case Forward(to=None, frame=frame):
                return backplane.broadcast(Relay(node=backplane.node, deliver=frame))
            case Forward(to=str(to), frame=frame):
                return backplane.relay(frame, to)
            case Joined(client_id=client_id):
                backplane.directory.orphans.pop(client_id, None)  # it is back, here
                self._publish_status()
            case Left(client_id=client_id):
                plain = self._plain_clocks.pop(client_id, None)
                if plain is not None:  # it may come back on another node at once
                    self.jsstore.submit([plain])
                self._publish_status()
                if client_id not in self.hub.clients:
                    task = asyncio.get_running_loop().create_task(backplane.release(client_id))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        return None


def _resolve(future: asyncio.Future[bool], _: object) -> None:
    if not future.done():
        future.set_result(True)


async def _confirmed(pending: list[Awaitable[object]]) -> bool:
    await asyncio.gather(*pending, return_exceptions=True)
    return True
