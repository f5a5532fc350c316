"""Shared test helpers: the one way to wait (:func:`wait_until`, :func:`async_wait_until`),
the two-way frame assertion, hypothesis strategies, and :class:`HubHarness`, which runs
N in-memory clients around one :class:`Hub`."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import strategies as st

from vclock.client import ClientEvent, ClientState, Message, Synced
from vclock.clock import VectorClock, merge_all
from vclock.errors import FrameError
from vclock.hub import STORE_TYPES, Action, Close, Hub, HubState, Outgoing, PeerId, StoreAction
from vclock.protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    Ack,
    Broadcast,
    Bye,
    Connection,
    Deliver,
    Delivered,
    Error,
    Frame,
    FrameDecoder,
    Hello,
    Limits,
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
from vclock.store import Store

T = TypeVar("T")

#: The default bound of every wait: generous, never a performance claim.
WAIT = 20.0
#: How often a wait looks again.
POLL = 0.05


def wait_until(predicate: Callable[[], T], what: str = "a condition", timeout: float = WAIT) -> T:
    """Poll ``predicate`` until it returns something truthy; return that.

    Tests wait for what they need to see, never for a fixed time: a fixed sleep
    is too short on a loaded machine and too long everywhere else.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL)


async def async_wait_until(
    predicate: Callable[[], T], what: str = "a condition", timeout: float = WAIT
) -> T:
    """:func:`wait_until` for a coroutine: the event loop runs while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(POLL)


# One assertion, both directions


def unchunk(data: bytes) -> bytes:
    """The body of an HTTP/1.1 response sent with ``Transfer-Encoding: chunked``."""
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


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

hellos = st.builds(
    Hello,
    v=int64,
    id=st.none() | client_ids,
    token=st.none() | st.text(max_size=12),
    resume=st.booleans(),
)
sends = st.builds(Send, to=client_ids, seq=seqs, clock=wire_clocks, body=json_values)
reports = st.builds(Report, seq=seqs, clock=wire_clocks)
delivereds = st.builds(Delivered, upto=st.integers(0, 2**63 - 1))
byes = st.builds(Bye, reason=st.text(max_size=20))
welcomes = st.builds(
    Welcome,
    v=int64,
    id=client_ids,
    peers=st.lists(st.text(max_size=8), max_size=4),
    sync_interval=st.floats(allow_nan=False, allow_infinity=False),
    clock=wire_clocks,
)
delivers = st.builds(
    Deliver,
    sender=client_ids,
    seq=seqs,
    clock=wire_clocks,
    body=json_values,
    n=st.none() | st.integers(1, 2**63 - 1),
)
acks = st.builds(Ack, seq=seqs, duplicate=st.booleans())
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

# Delivered is kept out of client_frames until tests/property/test_codec_props.py's
# fuzz check lists it among the client frame kinds; use `delivereds` directly.
client_frames = st.one_of(hellos, sends, reports, byes)
server_frames = st.one_of(welcomes, delivers, acks, syncs, peers_joined, peers_left, errors, byes)


# The hub harness


class HarnessClient:
    """One in-memory client node, across all its connections.

    ``peer`` is the hub's PeerId for the *current* connection; a resume client that
    reconnects (:meth:`HubHarness.reconnect`) keeps its ClientState (clock, delivery
    count, unacknowledged frames) and everything it received, and gets a new peer.
    """

    def __init__(self, peer: PeerId, node: ClientState, address: str, max_frame_size: int) -> None:
        self.node = node
        self.max_frame_size = max_frame_size
        self.peers: list[PeerId] = []  # every connection this node had, oldest first
        self.received: list[ServerFrame] = []  # frames as decoded by the client, all sessions
        self.events: list[
            ClientEvent | None
        ] = []  # ClientState.receive results (None: a duplicate)
        self.own_events = 0  # sends and reports
        self.closed: str | None = None  # the Close reason of the current connection
        self._open(peer, address)

    def _open(self, peer: PeerId, address: str) -> None:
        self.peer = peer
        self.address = address
        self.peers.append(peer)
        self.closed = None
        #: The server side of this client's connection: decodes what the client sends.
        self.conn: Connection[Any] = Connection(
            client_frame_decoder(), max_frame_size=self.max_frame_size
        )
        #: The client side: encodes what the client sends, decodes what it gets.
        self.client_conn: Connection[Any] = Connection(server_frame_decoder())

    @property
    def errors(self) -> list[Error]:
        return [frame for frame in self.received if isinstance(frame, Error)]

    @property
    def acks(self) -> list[Ack]:
        return [frame for frame in self.received if isinstance(frame, Ack)]

    @property
    def delivers(self) -> list[Deliver]:
        """Every deliver frame received, replays and duplicates included."""
        return [frame for frame in self.received if isinstance(frame, Deliver)]

    @property
    def messages(self) -> list[Message]:
        """The messages the node handled (each delivery number once)."""
        return [event for event in self.events if isinstance(event, Message)]

    @property
    def clocks_received(self) -> list[VectorClock]:
        return [f.clock for f in self.received if isinstance(f, Welcome | Deliver | Sync)]

    @property
    def event_count(self) -> int:
        """Events of this node: its sends and reports, and each message or sync it handled."""
        handled = sum(isinstance(event, Message | Synced) for event in self.events)
        return self.own_events + handled

    def __repr__(self) -> str:
        return f"<client {self.node.id} peer={self.peer} clock={self.node.clock}>"


class HubHarness:
    """N sans-I/O clients around one Hub, connected in memory.

    Each client has a pair of :class:`Connection` objects, its own and the
    server's, so frames cross a real wire, delta-encoded when hello and welcome
    negotiate it (``delta``, default as ClientState's): client frames go through the
    client's Connection and the server's into ``Hub.receive``; ``Outgoing`` frames
    the other way into the target's ``ClientState.receive``. ``Close``
    closes the client and calls ``Hub.disconnect``, like the I/O layer. Notices
    (Joined, Left, Received, Refused, SyncCycle) are collected in ``notices``.

    Store actions are collected in ``stored`` (one list per batch in ``batches``)
    and, when a :class:`~vclock.store.Store` is given, written to it before any
    frame of the same batch, as the I/O layer must; :meth:`restart` then builds a
    new Hub from what the store holds.
    """

    def __init__(
        self,
        hub: Hub | None = None,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        store: Store | None = None,
        delta: bool = True,
    ):
        self.hub = hub if hub is not None else Hub()
        self.delta = delta
        self.max_frame_size = max_frame_size
        self.store = store
        self.clients: dict[PeerId, HarnessClient] = {}  # every peer ever, to its client
        self.notices: list[Action] = []
        self.stored: list[StoreAction] = []
        self.batches: list[list[StoreAction]] = []
        self.dropped: list[Outgoing] = []  # frames for connections already closed
        self._peer_ids = itertools.count(101)

    # Connecting

    def connect(
        self,
        id: str | None = None,
        *,
        hello: bool = True,
        resume: bool = False,
        token: str | None = None,
        delta: bool | None = None,
    ) -> HarnessClient:
        """Open a connection for a new ClientState(id) and, unless told not to, say hello."""
        peer = PeerId(next(self._peer_ids))
        delta = self.delta if delta is None else delta
        node = ClientState(id, token=token, resume=resume, delta=delta)
        client = HarnessClient(peer, node, f"127.0.0.1:{peer}", self.max_frame_size)
        self.clients[peer] = client
        assert self.hub.connect(peer, client.address) == []
        if hello:
            self.send_frame(client, client.node.hello())
        return client

    def reconnect(self, client: HarnessClient, *, resend: bool = True) -> list[Action]:
        """A new connection for the same node: drop the old one if still open, say
        hello again and (``resend``) send every frame not yet acknowledged."""
        if client.closed is None:
            self.disconnect(client)
        peer = PeerId(next(self._peer_ids))
        client._open(peer, f"127.0.0.1:{peer}")
        self.clients[peer] = client
        assert self.hub.connect(peer, client.address) == []
        actions = self.send_frame(client, client.node.hello())
        if resend and client.node.welcomed:
            for frame in client.node.to_resend():
                actions += self.send_frame(client, frame)
        return actions

    def restart(self) -> Hub:
        """The server restarts: every connection is lost and a new Hub, configured
        like the old one, starts from what the store holds."""
        assert self.store is not None, "restart needs a store"
        old = self.hub
        for client in self.clients.values():
            client.closed = client.closed or "server restarted"
        holding = old.holding
        self.hub = Hub(
            sync_interval=old.sync_interval,
            auth=old.auth,
            max_errors=old.max_errors,
            max_inbox=holding.max_inbox,
            window=holding.window,
            state=self.store.load(),
        )
        return self.hub

    @property
    def connected(self) -> list[HarnessClient]:
        return [c for c in dict.fromkeys(self.clients.values()) if c.closed is None]

    # What clients do

    def send(self, client: HarnessClient, to: str, body: Any = None) -> Send:
        frame = client.node.send(to, body)
        client.own_events += 1
        self.send_frame(client, frame)
        return frame

    def broadcast(self, client: HarnessClient, body: Any = None) -> Broadcast:
        frame = client.node.broadcast(body)
        client.own_events += 1
        self.send_frame(client, frame)
        return frame

    def report(self, client: HarnessClient) -> Report:
        frame = client.node.report()
        client.own_events += 1
        self.send_frame(client, frame)
        return frame

    def acknowledge(self, client: HarnessClient, upto: int | None = None) -> list[Action]:
        """A resume client says which deliveries it handled (default: all so far)."""
        frame = client.node.delivered_frame() if upto is None else Delivered(upto=upto)
        return self.send_frame(client, frame)

    def send_frame(self, client: HarnessClient, frame: Frame) -> list[Action]:
        """Put one frame on the wire from ``client``; returns the hub's actions."""
        client.client_conn.send(frame)
        return self.send_bytes(client, client.client_conn.data_to_send())

    def send_bytes(self, client: HarnessClient, data: bytes) -> list[Action]:
        """Raw bytes from ``client``, decoded by its server-side Connection."""
        assert client.closed is None, f"{client} is not connected"
        client.conn.receive_data(data)
        actions: list[Action] = []
        for event in client.conn.events_received():
            actions += self.receive(client, event)
        return actions

    def receive(self, client: HarnessClient, event: Any) -> list[Action]:
        """Hand one decoded frame (or protocol error) to the hub and carry out its actions."""
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
        """Carry out one batch of the hub's actions in order, as the I/O layer would:
        its store actions first (durable before any frame), then the rest."""
        self._store(actions)
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            match action:
                case Outgoing(peer=peer, frame=frame):
                    client = self.clients[peer]
                    if client.closed is not None or client.peer != peer:
                        self.dropped.append(action)
                        continue
                    client.client_conn.receive_data(client.conn.encode(frame))
                    decoded = client.client_conn.next_event()
                    assert decoded == frame, f"{frame!r} did not survive the wire: {decoded!r}"
                    client.received.append(decoded)
                    events = client.node.receive_all(decoded)  # a broadcast: 0, 1 or more
                    client.events.extend(events or [None])
                case Close(peer=peer, reason=reason):
                    client = self.clients[peer]
                    if client.peer == peer:
                        client.closed = reason
                    more = self.hub.disconnect(peer)
                    self._store(more)
                    queue.extend(more)
                case _ if isinstance(action, STORE_TYPES):
                    pass  # written above
                case _:
                    self.notices.append(action)

    def _store(self, actions: list[Action]) -> None:
        batch = [action for action in actions if isinstance(action, STORE_TYPES)]
        if not batch:
            return
        self.stored += batch
        self.batches.append(batch)
        if self.store is not None:
            self.store.apply(batch)

    # Checks

    def notices_of(self, kind: type) -> list[Any]:
        return [n for n in self.notices if isinstance(n, kind)]

    def stored_of(self, kind: type) -> list[Any]:
        return [a for a in self.stored if isinstance(a, kind)]

    def check_invariants(self) -> None:
        """The clock invariants that must hold after any sequence of valid frames."""
        hub = self.hub
        assert hub.frontier == merge_all(hub.latest.values())
        for client in dict.fromkeys(self.clients.values()):
            node = client.node
            waiting = [frame.clock for frame in node.held]  # broadcasts held back
            for clock in client.clocks_received:
                if clock in waiting:
                    continue
                assert clock <= node.clock, f"{client} lost part of received {clock}"
            if node.id is not None:
                assert node.clock[node.id] == client.event_count, client

    def check_persistence(self) -> None:
        """The store holds exactly the hub's durable state."""
        assert self.store is not None, "check_persistence needs a store"
        assert_same_state(self.store.load(), self.hub.state)


def assert_same_state(loaded: HubState, state: HubState) -> None:
    """Two hub states agree on cycle, latest clocks and inboxes (acked and messages)."""
    assert loaded.cycle == state.cycle
    assert loaded.latest == state.latest
    assert loaded.inboxes.keys() == state.inboxes.keys()
    for client_id, inbox in state.inboxes.items():
        assert loaded.inboxes[client_id].acked == inbox.acked, client_id
        assert list(loaded.inboxes[client_id].messages) == list(inbox.messages), client_id


def frame_error() -> FrameError:
    return FrameError("test: a line that failed to decode", path="$.clock")


def welcomed_with_limits(
    *, max_frame_size: int, max_clock_entries: int, max_id_length: int = 64, resume: bool = False
) -> ClientState:
    """Client "A" welcomed (peer "B") by a server that announced these limits."""
    limits = Limits(
        max_frame_size=max_frame_size,
        max_clock_entries=max_clock_entries,
        max_id_length=max_id_length,
        max_rate=0.0,
        max_inbox=10,
        window=10,
        hold_for=0.0,
    )
    node = ClientState("A", resume=resume)
    node.receive(Welcome(v=1, id="A", peers=["B"], sync_interval=1.0, limits=limits))
    return node
