"""Shared test helpers: the two-way frame assertion, hypothesis strategies, and
:class:`HubHarness`, which runs N in-memory clients around one :class:`Hub`."""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from hypothesis import strategies as st

from vclock.clock import VectorClock, merge_all
from vclock.errors import FrameError
from vclock.hub import Action, Close, Hub, Outgoing, PeerId
from vclock.node import Event, NodeState
from vclock.protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    Bye,
    Connection,
    Deliver,
    Error,
    Frame,
    FrameDecoder,
    Hello,
    PeerJoined,
    PeerLeft,
    Report,
    Send,
    ServerFrame,
    Sync,
    Welcome,
    client_frame_decoder,
    encode_frame,
    server_frame_decoder,
)

# One assertion, both directions


def assert_frame_line(decoder: FrameDecoder[Any], frame: Frame, line: bytes) -> None:
    """``line`` decodes to ``frame`` and ``frame`` encodes to ``line``."""
    decoded = decoder.decode(line)
    assert decoded == frame, f"{line!r} decoded to {decoded!r}, expected {frame!r}"
    encoded = encode_frame(frame)
    assert encoded == line, f"{frame!r} encoded to {encoded!r}, expected {line!r}"


# Hypothesis strategies

#: A few ids, so that random clocks overlap and every ordering shows up.
small_ids = st.sampled_from(["A", "B", "C", "D"])

#: Clocks over a few ids with small counters: good for the order laws.
small_clocks = st.dictionaries(small_ids, st.integers(0, 6), max_size=4).map(VectorClock)

#: Any valid clock id (non-empty, at most 64 characters, any text).
clock_ids = st.text(min_size=1, max_size=12)

#: Clocks with arbitrary ids and counters up to the default limit.
wire_clocks = st.dictionaries(clock_ids, st.integers(0, 2**63 - 1), max_size=5).map(VectorClock)

#: Ids that the ClientId pattern accepts.
client_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,11}", fullmatch=True)

int64 = st.integers(-(2**63), 2**63 - 1)
seqs = st.integers(1, 2**63 - 1)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | int64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)

hellos = st.builds(Hello, v=int64, id=st.none() | client_ids)
sends = st.builds(Send, to=client_ids, seq=seqs, clock=wire_clocks, body=json_values)
reports = st.builds(Report, seq=seqs, clock=wire_clocks)
byes = st.builds(Bye, reason=st.text(max_size=20))
welcomes = st.builds(
    Welcome,
    v=int64,
    id=client_ids,
    peers=st.lists(st.text(max_size=8), max_size=4),
    sync_interval=st.floats(allow_nan=False, allow_infinity=False),
    clock=wire_clocks,
)
delivers = st.builds(Deliver, sender=client_ids, seq=seqs, clock=wire_clocks, body=json_values)
syncs = st.builds(Sync, cycle=int64, clock=wire_clocks)
peers_joined = st.builds(PeerJoined, id=client_ids)
peers_left = st.builds(PeerLeft, id=client_ids)
errors = st.builds(
    Error,
    code=st.text(max_size=12),
    message=st.text(max_size=30),
    peer=st.none() | st.text(max_size=8),
    seq=st.none() | int64,
)

client_frames = st.one_of(hellos, sends, reports, byes)
server_frames = st.one_of(welcomes, delivers, syncs, peers_joined, peers_left, errors, byes)


# The hub harness


class HarnessClient:
    """One in-memory client: a NodeState, the hub's PeerId for it, and what it got."""

    def __init__(self, peer: PeerId, node: NodeState, address: str, max_frame_size: int) -> None:
        self.peer = peer
        self.node = node
        self.address = address
        #: The server side of this client's connection: decodes what the client sends.
        self.conn: Connection[Any] = Connection(
            client_frame_decoder(), max_frame_size=max_frame_size
        )
        self.received: list[ServerFrame] = []  # frames as decoded by the client
        self.events: list[Event] = []  # what NodeState.receive made of them
        self.own_events = 0  # sends and reports
        self.closed: str | None = None  # the Close reason, once closed

    @property
    def errors(self) -> list[Error]:
        return [frame for frame in self.received if isinstance(frame, Error)]

    @property
    def clocks_received(self) -> list[VectorClock]:
        return [f.clock for f in self.received if isinstance(f, Welcome | Deliver | Sync)]

    @property
    def event_count(self) -> int:
        """Events of this node: its sends and reports, and each deliver or sync it received."""
        received = sum(isinstance(f, Deliver | Sync) for f in self.received)
        return self.own_events + received

    def __repr__(self) -> str:
        return f"<client {self.node.id} peer={self.peer} clock={self.node.clock}>"


class HubHarness:
    """N sans-I/O clients around one Hub, connected in memory.

    Client frames go through ``encode_frame`` and a server-side :class:`Connection`
    into ``Hub.receive``; ``Outgoing`` frames go through ``encode_frame`` and
    ``server_frame_decoder`` into the target's ``NodeState.receive``. ``Close``
    closes the client and calls ``Hub.disconnect``, like the I/O layer. Notices
    (Joined, Left, Received, Refused, SyncCycle) are collected in ``notices``.
    """

    def __init__(self, hub: Hub | None = None, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE):
        self.hub = hub if hub is not None else Hub()
        self.max_frame_size = max_frame_size
        self.clients: dict[PeerId, HarnessClient] = {}
        self.notices: list[Action] = []
        self.dropped: list[Outgoing] = []  # frames for peers already closed
        self._decoder = server_frame_decoder()
        self._peer_ids = itertools.count(101)

    # Connecting

    def connect(self, id: str | None = None, *, hello: bool = True) -> HarnessClient:
        """Open a connection for a new NodeState(id) and, unless told not to, say hello."""
        peer = PeerId(next(self._peer_ids))
        client = HarnessClient(peer, NodeState(id), f"127.0.0.1:{peer}", self.max_frame_size)
        self.clients[peer] = client
        assert self.hub.connect(peer, client.address) == []
        if hello:
            self.send_frame(client, client.node.hello())
        return client

    @property
    def connected(self) -> list[HarnessClient]:
        return [c for c in self.clients.values() if c.closed is None]

    # What clients do

    def send(self, client: HarnessClient, to: str, body: Any = None) -> Send:
        frame = client.node.send(to, body)
        client.own_events += 1
        self.send_frame(client, frame)
        return frame

    def report(self, client: HarnessClient) -> Report:
        frame = client.node.report()
        client.own_events += 1
        self.send_frame(client, frame)
        return frame

    def send_frame(self, client: HarnessClient, frame: Frame) -> list[Action]:
        """Put one frame on the wire from ``client``; returns the hub's actions."""
        return self.send_bytes(client, encode_frame(frame))

    def send_bytes(self, client: HarnessClient, data: bytes) -> list[Action]:
        """Raw bytes from ``client``, decoded by its server-side Connection."""
        client.conn.receive_data(data)
        actions: list[Action] = []
        for event in client.conn.events_received():
            actions += self.receive(client, event)
        return actions

    def receive(self, client: HarnessClient, event: Any) -> list[Action]:
        """Hand one decoded frame (or FrameError) to the hub and carry out its actions."""
        actions = self.hub.receive(client.peer, event)
        self.run(actions)
        return actions

    # What the I/O layer does

    def sync_cycle(self) -> list[Action]:
        actions = self.hub.begin_sync_cycle()
        self.run(actions)
        return actions

    def disconnect(self, client: HarnessClient) -> list[Action]:
        """The connection dropped (no bye)."""
        client.closed = client.closed or "connection lost"
        actions = self.hub.disconnect(client.peer)
        self.run(actions)
        return actions

    def shutdown(self) -> list[Action]:
        actions = self.hub.shutdown()
        self.run(actions)
        return actions

    def run(self, actions: list[Action]) -> None:
        """Carry out the hub's actions in order, as the I/O layer would."""
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            match action:
                case Outgoing(peer=peer, frame=frame):
                    client = self.clients[peer]
                    if client.closed is not None:
                        self.dropped.append(action)
                        continue
                    decoded = self._decoder.decode(encode_frame(frame))
                    assert decoded == frame, f"{frame!r} did not survive the wire"
                    client.received.append(decoded)
                    client.events.append(client.node.receive(decoded))
                case Close(peer=peer, reason=reason):
                    self.clients[peer].closed = reason
                    queue.extend(self.hub.disconnect(peer))
                case _:
                    self.notices.append(action)

    # Checks

    def notices_of(self, kind: type) -> list[Any]:
        return [n for n in self.notices if isinstance(n, kind)]

    def check_invariants(self) -> None:
        """The clock invariants that must hold after any sequence of valid frames."""
        hub = self.hub
        assert hub.frontier == merge_all(hub.latest.values())
        for client in self.clients.values():
            node = client.node
            for clock in client.clocks_received:
                assert clock <= node.clock, f"{client} lost part of received {clock}"
            if node.id is not None:
                assert node.clock[node.id] == client.event_count, client


def frame_error() -> FrameError:
    return FrameError("test: a line that failed to decode", path="$.clock")
