"""What vclock nodes say to each other over the backplane (NATS), and the
membership directory built from it. No I/O here.

Every message names the node that sent it. A node publishes:

- :class:`Status` whenever its set of clients changes and every heartbeat
  interval: the full list of its connected clients (a snapshot, so a lost or
  late message is repaired by the next one); a last one with ``leaving`` set
  when it shuts down;
- :class:`Relays` (wire version 2): the relays of one event-loop iteration for
  one node, each numbered; that node answers them with :class:`Answers` (to the
  ``reply`` subject the batch names), in batches too;
- :class:`Relay` for a message it relays to a client on another node, one NATS
  request each (wire version 1: to a node that does not announce version 2, for
  broadcasts, and for relays that are being resent): a unicast ``deliver`` to
  that client's node, or a broadcast to every node;
- :class:`Frontier` every synchronization cycle: its frontier, which the others
  merge into theirs, so every node syncs its clients to the cluster-wide frontier.

One node's messages reach the others in the order it published them (NATS
keeps the order of one publisher's messages), which keeps unicast FIFO per
sender across nodes; broadcasts need no order at all (clients apply BSS).

Versions (docs/cluster.md, "Between nodes"): :data:`WIRE_VERSION` is what a node
speaks; it says so in every :class:`Status` (``wire``; absent: 1). A node sends
:class:`Relays` only to a node that announced 2 or more, and answers both forms.
A node decodes only the messages it knows and ignores the rest; unknown fields
are ignored too, so fields with defaults can be added without a new version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from ..clock import ClockLimits, VectorClock, _owned_entries
from ..errors import FrameError
from ..protocol.frames import Deliver, Seq


class _Message(msgspec.Struct, frozen=True, tag_field="type", kw_only=True):
    node: str


class Status(_Message, tag="status", frozen=True):
    """``clients``: connected here; ``held``: resume clients away whose inbox this
    node keeps (messages for them are relayed here); ``resume``: the clients of
    ``clients`` that are resume sessions (their inbox lives on if this node dies).
    ``leaving``: the node is shutting down; the others take it for dead at once
    (its resume clients are orphans, expected on another node). ``wire``: the
    version of these messages the node speaks (:data:`WIRE_VERSION`).
    """

    clients: list[str]
    held: list[str] = []
    resume: list[str] = []
    leaving: bool = False
    wire: int = 1


class Relay(_Message, tag="relay", frozen=True):
    """``deliver`` for client ``to``, or for every client when ``to`` is None."""

    deliver: Deliver
    to: str | None = None


class Relayed(msgspec.Struct, frozen=True, gc=False):
    """One relay of a :class:`Relays` batch: ``id`` numbers it for the answer
    (unique among the batches sent to one ``reply`` subject); ``deliver`` and
    ``to`` as in :class:`Relay`."""

    id: int
    deliver: Deliver
    to: str | None = None


class Relays(_Message, tag="relays", frozen=True, gc=False):
    """Wire version 2: the relays of one loop iteration for one node, in the order
    they were made. The node answers each with an :class:`Answers` published to
    ``reply`` (as a :class:`Relay` request would be answered), and answers a relay
    asked again (same ``reply`` and ``id``) without carrying it out twice.

    ``frontier``: the sending node's frontier as it published the batch, at or
    above every clock in it (each relayed clock went into that frontier first).
    The receiver takes it into its frontier once instead of merging every
    relayed clock (absent, from an older node: it merges them one by one)."""

    reply: str
    relays: list[Relayed]
    frontier: VectorClock | None = None


class Answers(_Message, tag="answers", frozen=True):
    """Wire version 2: answers to :class:`Relays`, by relay id: ``ok`` (delivered,
    or durable where the receiver is held) or ``gone`` (the receiver is not there)."""

    ok: list[int] = []
    gone: list[int] = []


class Frontier(_Message, tag="frontier", frozen=True):
    """A node's frontier, and ``said``: per id, the highest own entry that id
    reported itself (the ceiling of the hub's ``max_lead`` check)."""

    clock: VectorClock
    said: VectorClock | None = None


NodeMessage = Status | Relay | Frontier | Relays | Answers

#: The version of the node messages this node speaks (see the module doc).
WIRE_VERSION = 2

# Clocks between nodes were checked when a client sent them; merged ones may be larger.
_TRUSTED = ClockLimits(max_entries=2**31, max_id_length=2**31)


def _decode_clock(type_: type, obj: Any) -> Any:
    if type_ is not VectorClock:
        raise NotImplementedError(type_)
    if type(obj) is not dict:
        raise ValueError("a clock must be a JSON object")
    return VectorClock._trusted(_owned_entries(obj, _TRUSTED))  # a dict msgspec just made


def _encode_clock(obj: Any) -> Any:
    if isinstance(obj, VectorClock):
        return obj._entries  # in the order held, as in clients' frames
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_decoder: msgspec.json.Decoder[NodeMessage] = msgspec.json.Decoder(
    NodeMessage, dec_hook=_decode_clock
)

# The hot message, Relays, is decoded first into these twins whose clocks are
# plain dicts checked by msgspec itself, in C, as it parses them (ids non-empty,
# counts from 1 to the limit): a relayed clock costs no Python call. They, Relays
# and Relayed hold only decoded JSON, which has no reference cycles, so the
# garbage collector need not track them (``gc=False``): a batch decoded while a
# collection runs no longer makes it walk, and keep, a few hundred of them. A batch they
# refuse (an odd clock, with zeros, say) is decoded again by ``_decoder``, which
# accepts and refuses exactly what it did before.
_Id = Annotated[str, msgspec.Meta(min_length=1)]
_Clock = dict[_Id, Annotated[int, msgspec.Meta(ge=1, le=_TRUSTED.max_counter)]]


class _WireDeliver(
    msgspec.Struct, frozen=True, tag="deliver", tag_field="type", kw_only=True, gc=False
):
    sender: _Id = msgspec.field(name="from")  # admitted (checked) by its node
    seq: Seq
    clock: _Clock
    body: Any = None
    n: int | None = None
    bclock: _Clock | None = None


class _WireRelayed(msgspec.Struct, frozen=True, gc=False):
    id: int
    deliver: _WireDeliver
    to: str | None = None


class _WireRelays(
    msgspec.Struct, frozen=True, tag="relays", tag_field="type", kw_only=True, gc=False
):
    node: str
    reply: str
    relays: list[_WireRelayed]
    frontier: _Clock | None = None


_relays_decoder = msgspec.json.Decoder(_WireRelays)
_RELAYS_START = b'{"type":"relays",'  # how encode_message begins every Relays
_trusted = VectorClock._trusted


def _fast_relays(data: bytes) -> Relays:
    wire = _relays_decoder.decode(data)
    relays = [
        Relayed(
            id=relayed.id,
            deliver=Deliver(
                sender=(d := relayed.deliver).sender,
                seq=d.seq,
                clock=_trusted(d.clock),
                body=d.body,
                n=d.n,
                bclock=None if d.bclock is None else _trusted(d.bclock),
            ),
            to=relayed.to,
        )
        for relayed in wire.relays
    ]
    frontier = None if wire.frontier is None else _trusted(wire.frontier)
    return Relays(node=wire.node, reply=wire.reply, relays=relays, frontier=frontier)


_encoder = msgspec.json.Encoder(enc_hook=_encode_clock)
_relayed_decoder: msgspec.json.Decoder[Relayed] = msgspec.json.Decoder(
    Relayed, dec_hook=_decode_clock
)


def decode_relayed(data: bytes) -> Relayed:
    """One relay of a batch, as :func:`encode_message` wrote it (this node's own)."""
    return _relayed_decoder.decode(data)


def encode_message(message: NodeMessage | Relayed) -> bytes:
    """A node message (or one relay of a batch) as JSON."""
    return _encoder.encode(message)


def encode_clock(clock: VectorClock | None) -> bytes:
    """A clock as node messages write it (JSON; ``null`` for None)."""
    return _encoder.encode(clock)


def decode_message(data: bytes) -> NodeMessage:
    """A node message from JSON.

    Raises:
        FrameError: not a node message this version knows (or not valid).
    """
    if data.startswith(_RELAYS_START):
        try:
            return _fast_relays(data)
        except (msgspec.DecodeError, ValueError):
            pass  # not the usual batch: decoded the careful way, below
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:
        raise FrameError(f"not a node message: {exc}") from None


@dataclass(slots=True)
class Directory:
    """Which node serves which client, from the nodes' :class:`Status` messages.

    A client is *remote* while some live node other than this one lists it. A
    node that has not been heard from (any message counts, :meth:`heard`) for
    ``dead_after`` seconds is dead, and so is one that said it is leaving: its
    clients are no longer listed (their claims expire in the id bucket, so they
    can come back on another node). Time this node could not listen (its event
    loop was busy: :meth:`pause`) does not count against the others.

    The resume clients of a dead node (connected or held there) become *orphans*
    for ``orphan_ttl`` seconds, or until a node lists them again: their inbox lives
    on in JetStream and they are expected back, so a unicast for one is relayed
    (and waits for it to show up) instead of being refused as ``unknown-peer``.
    """

    node: str
    dead_after: float
    orphan_ttl: float = 10.0
    nodes: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)
    held: dict[str, frozenset[str]] = field(default_factory=dict)  # node -> held ids
    resume: dict[str, frozenset[str]] = field(default_factory=dict)  # node -> resume ids
    orphans: dict[str, float] = field(default_factory=dict)  # id -> when its node died
    wire: dict[str, int] = field(default_factory=dict)  # node -> the version it speaks
    # client -> the nodes listing it, and away client -> the node holding it: built
    # from ``nodes`` and ``held`` when asked, dropped whenever those lists change
    _listed: dict[str, tuple[str, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _holder: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def held_clients(self) -> dict[str, str]:
        """away client -> the live node that keeps its inbox."""
        if self._holder is None:
            self._holder = {client: node for node, ids in self.held.items() for client in ids}
        return self._holder

    def locate(self, client_id: str) -> str | None:
        """The node to relay a unicast for ``client_id`` to (serving or holding it).
        Called for every relay: a dictionary look-up, not a walk over every list."""
        if self._listed is None:
            listed: dict[str, tuple[str, ...]] = {}
            for node, (_, clients) in self.nodes.items():
                for client in clients:
                    listed[client] = (*listed.get(client, ()), node)
            self._listed = listed
        nodes = self._listed.get(client_id)
        if nodes is not None:
            if len(nodes) == 1:
                return nodes[0]
            return max(nodes, key=lambda node: self.nodes[node][0])  # most recently heard
        return self.held_clients().get(client_id)

    def _changed(self) -> None:
        self._listed = self._holder = None

    def remote_clients(self) -> dict[str, str]:
        """client -> the node that serves it (the most recently heard one)."""
        owners: dict[str, tuple[float, str]] = {}
        for node, (seen, clients) in self.nodes.items():
            for client in clients:
                if client not in owners or owners[client][0] < seen:
                    owners[client] = (seen, node)
        return {client: node for client, (_, node) in owners.items()}

    def update(self, status: Status, now: float) -> tuple[list[str], list[str]]:
        """Take in a node's status; returns (clients that joined, clients that left)."""
        if status.node == self.node:
            return [], []
        before = set(self.remote_clients())
        self.nodes[status.node] = (now, frozenset(status.clients))
        self.held[status.node] = frozenset(status.held)
        self.resume[status.node] = frozenset(status.resume)
        self.wire[status.node] = status.wire
        self._changed()
        if status.leaving:
            self._forget(status.node, now)
        else:
            for client in (*status.clients, *status.held):
                self.orphans.pop(client, None)  # back (or kept) on that node
        return self._diff(before)

    def heard(self, node: str, now: float) -> None:
        """Any message from ``node`` shows it is alive (its status may be queued
        behind its other messages)."""
        entry = self.nodes.get(node)
        if entry is not None and entry[0] < now:
            self.nodes[node] = (now, entry[1])

    def pause(self, seconds: float, now: float) -> None:
        """This node could not listen for ``seconds`` up to ``now`` (a busy event
        loop): messages from the others may be waiting unread, so that time does
        not count against them."""
        self.nodes = {
            node: (min(seen + seconds, now), ids) for node, (seen, ids) in self.nodes.items()
        }

    def expire(self, now: float) -> tuple[list[str], list[str]]:
        """Forget nodes not heard from for ``dead_after`` seconds."""
        before = set(self.remote_clients())
        for client, since in list(self.orphans.items()):
            if now - since > self.orphan_ttl:
                del self.orphans[client]
        for node, (seen, _) in list(self.nodes.items()):
            if now - seen > self.dead_after:
                self._forget(node, now)
        return self._diff(before)

    def _forget(self, node: str, now: float) -> None:
        """``node`` is gone: its resume clients (connected or held) are orphans."""
        del self.nodes[node]
        self.wire.pop(node, None)
        self._changed()
        for client in self.held.pop(node, frozenset()) | self.resume.pop(node, frozenset()):
            self.orphans.setdefault(client, now)
        for client in self.remote_clients().keys() | self.held_clients().keys():
            self.orphans.pop(client, None)  # also on a live node

    def alive(self, node: str, now: float) -> bool:
        entry = self.nodes.get(node)
        return entry is not None and now - entry[0] <= self.dead_after

    def _diff(self, before: set[str]) -> tuple[list[str], list[str]]:
        after = set(self.remote_clients())
        return sorted(after - before), sorted(before - after)
