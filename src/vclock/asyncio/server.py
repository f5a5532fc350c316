"""The asyncio server: sockets, tasks, the sync timer and the console, around a Hub.

This layer makes no protocol decisions. It feeds each connection's bytes to a
sans-I/O :class:`~vclock.protocol.Connection`, hands the frames to the
:class:`~vclock.hub.Hub`, and carries out the actions the hub returns: writing
frames, closing connections, printing the console lines
(:class:`~vclock.asyncio.console.Console`) and logging events.

In cluster mode (a :class:`~vclock.cluster.backplane.ClusterConfig`), a
:class:`~vclock.asyncio.cluster_link.ClusterLink` connects the hub to the other
nodes; the server holds a client's frames back until what they acknowledge is
durable there, and answers a relayed send whose receiver vanished with
``unknown-peer`` instead of an ``ack``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..auth import Authenticator
from ..clock import DEFAULT_LIMITS, ClockLimits
from ..errors import ErrorCode, PeerError
from ..hub import (
    DEFAULT_WINDOW,
    SERVER_ID,
    STORE_TYPES,
    Action,
    Close,
    Forward,
    Hub,
    Joined,
    Left,
    Outgoing,
    PeerId,
    Received,
    SaveClock,
    SyncCycle,
    TokenBucket,
)
from ..node import message_id, sync_id
from ..protocol import DEFAULT_MAX_FRAME_SIZE, Connection, client_frame_decoder, encode_frame
from ..protocol.connection import EncodeCache
from ..protocol.frames import (
    Ack,
    ClientFrame,
    Deliver,
    Error,
    Hello,
    Limits,
    Send,
    Welcome,
)
from ..store import MEMORY, Store
from ..tools.eventlog import EventLog
from .console import Console

if TYPE_CHECKING:
    from ..cluster.backplane import ClusterConfig
    from .cluster_link import ClusterLink

READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where to listen and every limit. The defaults are safe for a public port."""

    host: str = "127.0.0.1"
    port: int = 4999
    sync_interval: float = 5.0
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    limits: ClockLimits = DEFAULT_LIMITS
    max_rate: float = 5000.0  # frames per second per connection; 0 = unlimited
    max_pending: int = 1 << 20  # bytes queued for a client that does not read
    max_errors: int = 20  # refused frames before a connection is closed
    max_inbox: int = 10_000  # messages kept for one away client
    hold_for: float = 86_400.0  # seconds an away client's inbox is kept; 0 = forever
    web_max_streams: int = 16  # dashboard (--web): open /events streams; more get 503
    auth: Authenticator | None = None
    ssl: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True)
class _RelayVerdict:
    """Cluster mode: the answer to a send relayed to another node, written once the
    relay is through (the client's frames wait for it): ``frame`` (an ``ack``, or
    None for a plain session) if it was delivered, else ``unknown-peer``."""

    relay: asyncio.Task[bool]
    sender: str
    seq: int
    to: str
    frame: Ack | None = None

    def answer(self) -> Ack | Error | None:
        relay = self.relay
        if relay.done() and not relay.cancelled() and relay.exception() is None:
            if relay.result():
                return self.frame
        return Error(
            code=ErrorCode.UNKNOWN_PEER.value,
            message=f"{self.to!r} left (or its node died) and did not come back;"
            f" your message {message_id(self.sender, self.seq)} was not delivered",
            peer=self.to,
            seq=self.seq,
        )


@dataclass(slots=True)
class _Peer:
    """One client connection as the I/O layer sees it."""

    writer: asyncio.StreamWriter
    conn: Connection[ClientFrame]
    out: list[bytes | _RelayVerdict] = field(default_factory=list)  # written each loop tick
    closing: bool = False
    # Cluster mode: frames wait until this is done (an ack's durability in JetStream).
    barrier: asyncio.Future[object] | None = None


class Server:
    """A vclock server. Use :func:`serve` to start one.

    Args:
        config: where to listen and the protocol limits.
        console: where console lines go (``Console(None)`` for quiet).
        log: an event log for the server's events, or None.
        store: where durable state goes (default: in memory).

    Writes are coalesced: frames for a client are queued while the loop runs
    and written with one call per client at the end of the loop iteration.
    """

    def __init__(
        self,
        config: ServerConfig,
        console: Console,
        log: EventLog | None = None,
        store: Store | None = None,
        cluster: ClusterConfig | None = None,
    ) -> None:
        self.config = config
        self.store = store or Store(MEMORY)
        self.cluster = cluster
        self._link: ClusterLink | None = None
        self.hub = Hub(
            cluster=cluster is not None,
            id_prefix=f"{cluster.node_id}-" if cluster is not None else "",
            sync_interval=config.sync_interval,
            auth=config.auth,
            max_errors=config.max_errors,
            max_inbox=config.max_inbox,
            max_id_length=config.limits.max_id_length,
            state=self.store.load(),
            limits=Limits(
                max_frame_size=config.max_frame_size,
                max_clock_entries=config.limits.max_entries,
                max_id_length=config.limits.max_id_length,
                max_rate=config.max_rate,
                max_inbox=config.max_inbox,
                window=DEFAULT_WINDOW,
                hold_for=config.hold_for,
            ),
        )
        self.console = console
        self.log = log
        self._peers: dict[PeerId, _Peer] = {}
        self._dirty: set[PeerId] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._peer_ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._observers: list[Callable[[Action], None]] = []
        # Away clients whose inbox is held here -> since when (loop time), for hold_for
        self._away: dict[str, float] = {}

    def observe(self, callback: Callable[[Action], None]) -> Callable[[], None]:
        """Call ``callback`` with every action the hub returns (notices, frames sent,
        closes), after the server has carried it out. For dashboards and metrics;
        the callback must not block. Returns a function that stops the calls."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback)

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self.cluster is not None:
            from .cluster_link import ClusterLink  # nats-py only when clustering

            self._link = await ClusterLink.start(self, self.cluster)
        # inboxes held before a restart: their clients are away from now on
        self._away = dict.fromkeys(self.hub.inboxes, asyncio.get_running_loop().time())
        self._server = await asyncio.start_server(
            self._handle_connection,
            self.config.host,
            self.config.port,
            limit=READ_CHUNK,
            ssl=self.config.ssl,
            backlog=4096,  # the default 100 makes mass connects crawl
        )
        self._sync_task = asyncio.create_task(self._sync_loop())

    async def close(self, reason: str = "server shutting down") -> None:
        """Say bye to every client, stop listening, and wait for connections to end."""
        if self._sync_task is not None:
            self._sync_task.cancel()
        claims = self.hub.clients
        self.apply(self.hub.shutdown(reason))
        barriers = [p.barrier for p in self._peers.values() if p.barrier is not None]
        if barriers:  # cluster: acks wait for JetStream (bounded)
            await asyncio.wait(barriers, timeout=5)
        self._flush()
        if self._server is not None:
            self._server.close()
        for peer in list(self._peers.values()):
            peer.writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        if self._link is not None:
            await self._link.close(claims)
        self.store.close()
        if self.log is not None:
            self.log.close()

    # Connections

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peer_id = PeerId(next(self._peer_ids))
        address = _address(writer)
        _keep_alive(writer)
        conn = Connection(
            client_frame_decoder(self.config.limits), max_frame_size=self.config.max_frame_size
        )
        rate = self.config.max_rate
        bucket = TokenBucket(rate, 2 * rate) if rate > 0 else None
        now = asyncio.get_running_loop().time
        self._peers[peer_id] = _Peer(writer, conn)
        self.console.connected(address)
        self.apply(self.hub.connect(peer_id, address))
        try:
            while not writer.is_closing():
                data = await reader.read(READ_CHUNK)
                if data:
                    conn.receive_data(data)
                else:
                    conn.receive_eof()
                actions: list[Action] = []  # one batch: one commit, then the writes
                while (event := conn.next_event()) is not None:
                    link = self._link
                    if link is not None and isinstance(event, Send) and event.to in link.settling:
                        self.apply(actions)  # what came before, then wait (FIFO)
                        actions = []
                        await asyncio.shield(link.settling[event.to])
                    if link is not None and isinstance(event, Hello):
                        self.apply(actions)  # what came before, then the claim
                        actions = []
                        if bucket is None or bucket.take(now()):
                            actions += self.hub.receive(peer_id, await link.claim(event))
                            continue
                    if bucket is not None and not bucket.take(now()):
                        limited = PeerError(
                            f"more than {rate:g} frames per second; frame dropped",
                            code=ErrorCode.RATE_LIMITED,
                            seq=getattr(event, "seq", None),
                        )
                        actions += self.hub.receive(peer_id, limited)
                    else:
                        actions += self.hub.receive(peer_id, event)
                self.apply(actions)
                if not data:
                    break
        except (ConnectionError, OSError):
            pass  # the client vanished; handled as a disconnect below
        finally:
            self._peers.pop(peer_id, None)
            self.apply(self.hub.disconnect(peer_id))
            writer.close()
            self._handlers.discard(task)

    async def _sync_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_expired(loop.time())
            self.apply(self.hub.begin_sync_cycle())
            if self._link is not None:
                self._link.publish_frontier()
            await asyncio.sleep(self.config.sync_interval)

    def _track_away(self, action: Joined | Left) -> None:
        if isinstance(action, Joined):
            self._away.pop(action.client_id, None)
        elif action.client_id in self.hub.inboxes:  # held: its hold time starts
            self._away[action.client_id] = asyncio.get_running_loop().time()

    def _drop_expired(self, now: float) -> None:
        """Drop the inboxes of clients away for longer than ``hold_for``."""
        hold_for = self.config.hold_for
        if hold_for <= 0:
            return
        for client_id, since in list(self._away.items()):
            if now - since > hold_for:
                del self._away[client_id]
                self.apply(self.hub.drop_held(client_id))

    # Carrying out the hub's actions

    def apply(self, actions: list[Action]) -> list[Awaitable[object]]:
        """Carry out one batch of the hub's actions (the server's own calls, and the
        cluster link's for what other nodes send). In cluster mode, returns what
        the batch's durability waits for (JetStream writes, confirmed relays):
        empty when nothing."""
        stores = [action for action in actions if isinstance(action, STORE_TYPES)]
        pending: list[Awaitable[object]] = []
        clocks: list[SaveClock] = []
        if stores:
            self.store.apply(stores)  # durable before any ack goes out
            if self._link is not None:  # cluster: in JetStream before any ack,
                clocks = [action for action in stores if isinstance(action, SaveClock)]
                rest = [action for action in stores if not isinstance(action, SaveClock)]
                if rest:  # but the clocks only after what they cover (below)
                    pending.append(self._link.submit(rest))
        shared: dict[int, bytes] = {}  # a frame sent to many plain peers is encoded once
        deltas: EncodeCache = {}  # and to many delta peers in the same state, once
        relays: dict[tuple[str, int], _RelayVerdict] = {}  # cluster: (sender, seq) -> relay
        for action in actions:
            if self._link is not None and isinstance(action, Forward | Joined | Left):
                relayed = self._link.forward(action)
                if relayed is not None:
                    pending.append(relayed)
                if isinstance(action, Forward) and action.to is not None and relayed is not None:
                    sent = action.frame
                    relays[sent.sender, sent.seq] = _RelayVerdict(
                        relayed, sent.sender, sent.seq, action.to
                    )
            match action:
                case Outgoing(peer=peer_id, frame=frame):
                    peer = self._peers.get(peer_id)
                    if peer is None or peer.closing:
                        continue
                    if isinstance(frame, Ack) and frame.duplicate and self._link is not None:
                        # a resent frame: durable once what the original caused is
                        effects = self._link.effects_of(self.hub.client_id(peer_id) or "")
                        if effects is not None:
                            pending.append(effects)
                    if isinstance(frame, Ack) and relays:
                        verdict = relays.pop((self.hub.client_id(peer_id) or "", frame.seq), None)
                        if verdict is not None:  # written once the relay is through
                            peer.out.append(dataclasses.replace(verdict, frame=frame))
                            self._dirty.add(peer_id)
                            continue
                    if peer.conn.delta or isinstance(frame, Welcome):
                        data = peer.conn.encode(frame, deltas)  # per connection state
                    else:
                        data = shared.get(id(frame)) or shared.setdefault(
                            id(frame), encode_frame(frame)
                        )
                    peer.out.append(data)
                    self._dirty.add(peer_id)
                case Close(peer=peer_id):
                    peer = self._peers.get(peer_id)
                    if peer is not None:
                        peer.closing = True
                        self._dirty.add(peer_id)
                case Forward():
                    pass
                case _ if isinstance(action, STORE_TYPES):
                    pass
                case _:
                    if isinstance(action, Joined | Left):
                        self._track_away(action)
                    if self.console.enabled:  # --quiet costs nothing per message
                        self.console.show(action)
                    if self.log is not None:
                        self._record(action)
        for verdict in relays.values():  # plain senders: told only if it failed
            verdict.relay.add_done_callback(functools.partial(self._relay_failed, verdict))
        if clocks:
            assert self._link is not None
            self._link.save_clocks(clocks, after=pending)
        if pending:
            self._hold_until_durable(actions, pending)
        if self._dirty and self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        for observer in list(self._observers):
            for action in actions:
                observer(action)
        return pending

    def _hold_until_durable(self, actions: list[Action], pending: list[Awaitable[object]]) -> None:
        """Cluster mode: hold back the frames of every client this batch acks, or
        hands a numbered ``deliver``, until ``pending`` is done (later frames wait
        behind them: one order per client). An ``ack`` then means durable, and a
        delivery number is in JetStream before the client sees it: a node that
        adopts the client after this one dies never hands the same number to
        another message (which the client would drop as a replay)."""
        held = {
            a.peer
            for a in actions
            if isinstance(a, Outgoing)
            and (isinstance(a.frame, Ack) or (isinstance(a.frame, Deliver) and a.frame.n))
            and a.peer in self._peers
        }
        if not held:
            return
        durable: asyncio.Future[Any] = asyncio.gather(*pending, return_exceptions=True)
        for peer_id in held:
            peer = self._peers[peer_id]
            barrier: asyncio.Future[Any] = durable
            if peer.barrier is not None and not peer.barrier.done():
                barrier = asyncio.gather(peer.barrier, durable, return_exceptions=True)
            peer.barrier = barrier
            barrier.add_done_callback(functools.partial(self._wake_after, peer_id))

    def _relay_failed(self, verdict: _RelayVerdict, _: object) -> None:
        error = verdict.answer()
        if error is not None:
            peer_id = self.hub.peer_of(verdict.sender)
            if peer_id is not None:
                self.apply([Outgoing(peer_id, error)])

    def _wake_after(self, peer_id: PeerId, _: object) -> None:
        self._wake(peer_id)

    def _wake(self, peer_id: PeerId) -> None:
        self._dirty.add(peer_id)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write what each client got this loop iteration, in one call per client."""
        self._flush_handle = None
        dirty, self._dirty = self._dirty, set()
        for peer_id in dirty:
            peer = self._peers.get(peer_id)
            if peer is None:
                continue
            if peer.barrier is not None and not peer.barrier.done():
                continue  # cluster: its ack is not durable yet; _wake flushes it
            data, peer.out = b"".join(self._written(peer)), []
            if peer.writer.is_closing():
                continue  # the client is gone; its handler cleans up
            try:
                if data:
                    peer.writer.write(data)
                if peer.closing:
                    peer.writer.close()  # buffered frames are flushed first
                elif peer.writer.transport.get_write_buffer_size() > self.config.max_pending:
                    self._drop_slow_consumer(peer_id)
            except (ConnectionError, RuntimeError):
                # The transport died under us (uvloop raises RuntimeError): drop
                # this client only; the others in this flush still get theirs.
                peer.writer.transport.abort()

    @staticmethod
    def _written(peer: _Peer) -> Iterator[bytes]:
        for item in peer.out:
            if isinstance(item, bytes):
                yield item
            elif (frame := item.answer()) is not None:
                yield peer.conn.encode(frame, {})

    def _drop_slow_consumer(self, peer_id: PeerId) -> None:
        """Policy: a client whose unread frames pass ``max_pending`` bytes is
        disconnected at once; what was queued for it is discarded, so the server's
        memory stays bounded. A resume client gets its messages again on return."""
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return
        error = PeerError(
            f"more than {self.config.max_pending} bytes waiting for you to read; disconnected",
            code=ErrorCode.SLOW_CONSUMER,
        )
        actions = self.hub.receive(peer_id, error)
        self.apply([a for a in actions if not isinstance(a, Outgoing | Close)])
        peer.writer.transport.abort()

    def _record(self, action: Action) -> None:
        if self.log is None:
            return
        match action:
            case Received(client_id=client_id, frame=frame):
                self.log.record(
                    "receive",
                    frame.clock.items(),
                    peer=client_id,
                    msg=message_id(client_id, frame.seq),
                )
            case SyncCycle(cycle=cycle, frontier=frontier, synced=synced) if synced:
                self.log.record("sync", frontier.items(), msg=sync_id(cycle), to=list(synced))
            case Joined(client_id=client_id):
                self.log.record("join", {}, peer=client_id)
            case Left(client_id=client_id):
                self.log.record("leave", {}, peer=client_id)


#: TCP keepalive: probe a connection idle this long, then every KEEPALIVE_INTERVAL
#: seconds; KEEPALIVE_PROBES unanswered probes close it. A client that vanished
#: without a FIN (power loss, a dropped network) so frees its id within about a
#: minute instead of holding it until the operating system gives up (hours).
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 30, 10, 3


def _keep_alive(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
    except OSError:
        pass  # not a TCP socket (a test transport): nothing to keep alive


def _address(writer: asyncio.StreamWriter) -> str:
    peername = writer.get_extra_info("peername")
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername or "unknown")


async def serve(
    config: ServerConfig,
    console: Console,
    log: EventLog | None = None,
    store: Store | None = None,
    cluster: ClusterConfig | None = None,
) -> Server:
    """Start a server; it runs until :meth:`Server.close`. ``store`` defaults to memory.

    With ``cluster``, the server is one node of a cluster on NATS (:mod:`vclock.cluster`).
    """
    server = Server(config, console, log, store, cluster)
    await server.start()
    return server


__all__ = ["SERVER_ID", "Console", "Server", "ServerConfig", "serve"]
