"""The asyncio server: sockets, tasks, the sync timer and the console, around a Hub.

This layer makes no protocol decisions. It feeds each connection's bytes (an
``asyncio.Protocol`` per connection: no task, stream reader or writer each) to a
sans-I/O :class:`~vclock.protocol.Connection`, hands the frames to the
:class:`~vclock.hub.Hub`, and carries out the actions the hub returns: writing
frames, closing connections, printing the console lines
(:class:`~vclock.asyncio.console.Console`) and logging events.

What the server shares with other servers goes through one interface, its
:class:`~vclock.asyncio.link.Link`: a lone server's shares nothing; in cluster
mode (a :class:`~vclock.cluster.backplane.ClusterConfig`) the
:class:`~vclock.asyncio.cluster_link.ClusterLink` claims ids, relays messages
and makes acks durable across the cluster before they are written.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import socket
import ssl
import sys
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from ..auth import Authenticator
from ..clock import DEFAULT_LIMITS, ClockLimits
from ..errors import ErrorCode, PeerError
from ..events import message_id, sync_id
from ..hub import (
    DEFAULT_MAX_LEAD,
    DEFAULT_WINDOW,
    STORE_TYPES,
    Action,
    Close,
    ClusterHub,
    Forward,
    Hub,
    Joined,
    Left,
    Outgoing,
    PeerId,
    Received,
    SaveClock,
    StoreAction,
    SyncCycle,
)
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
from ..store import MEMORY, Store, StoreError
from ..tools.eventlog import EventLog
from .console import Console
from .link import LateFrame, Link
from .ratelimit import TokenBucket

if TYPE_CHECKING:
    from ..cluster.backplane import ClusterConfig

_STORE_TYPES = frozenset(STORE_TYPES)
#: Joins and leaves are told to "batched" clients at most this often (protocol
#: 4.5): under a connect storm each loop iteration has few joins, so a frame
#: per iteration would cost nearly one frame per join, as "all" does.
PEER_NOTICE_INTERVAL = 0.1
#: How long close() waits for every connection to be lost; the rest are lost later,
#: when nothing is stored or logged any more.
CLOSE_WAIT = 5.0


def _limit(default: Any, help: str, *, least: float = 0, unit: str | None = None) -> Any:
    """A ServerConfig limit: its default, and the ``vclock server`` option's help
    (the option, ``--`` and the field's name with dashes, is made from this)."""
    return field(default=default, metadata={"help": help, "least": least, "unit": unit})


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where to listen and every limit. The defaults are safe for a public port.

    Each limit's ``metadata`` holds the help of its ``vclock server`` option;
    docs/operations.md section 4 says what happens when it is hit."""

    host: str = "127.0.0.1"
    port: int = 4999
    sync_interval: float = 5.0
    limits: ClockLimits = DEFAULT_LIMITS
    max_frame_size: int = _limit(
        DEFAULT_MAX_FRAME_SIZE, "Bytes in one line after welcome.", least=1
    )
    max_rate: float = _limit(5000.0, "Lines per second per client; 0: no limit.")
    max_pending: int = _limit(
        1 << 20, "Bytes waiting for a client that does not read before it is disconnected."
    )
    max_errors: int = _limit(20, "Refused frames before a client is disconnected.", least=1)
    max_inbox: int = _limit(10_000, "Messages kept for one away client.")
    hold_for: float = _limit(
        86_400.0,
        "How long an away resume client's inbox is kept; 0 keeps it forever.",
        unit="SECONDS",
    )
    max_inbox_bytes: int = _limit(64 << 20, "Bytes kept for one away client.")
    max_held: int = _limit(10_000, "Away resume clients whose messages are kept.")
    max_held_bytes: int = _limit(1 << 30, "Bytes kept for all away clients together.")
    max_ids: int = _limit(65_536, "Distinct client ids the server tracks (clocks name no more).")
    max_lead: int = _limit(
        DEFAULT_MAX_LEAD,
        "How far a clock may raise another id's entry past what that id reported"
        " itself; 0: not at all (every event goes through this server).",
    )
    hello_timeout: float = _limit(
        10.0,
        "Close a connection not welcomed this long after connecting; 0: no limit.",
        unit="SECONDS",
    )
    max_hello_size: int = _limit(
        8192, "Bytes a line may have before welcome (a hello is tiny).", least=1
    )
    max_connections: int = _limit(
        10_000,
        "Connections in total (lowered to fit the open-file limit); more are refused.",
        least=1,
    )
    max_connections_per_address: int = _limit(
        256, "Connections from one IP address; more are refused.", least=1
    )
    max_buffered: int = _limit(
        64 << 20,
        "Bytes of unfinished lines held for all clients together; past it the"
        " clients with the largest are disconnected, down to three quarters of it.",
        least=1,
    )
    web_max_streams: int = _limit(
        16,
        "Dashboard (--web) pages with a live stream at once; one more gets HTTP 503.",
        least=1,
    )
    auth: Authenticator | None = None
    ssl: ssl.SSLContext | None = None


@dataclass(slots=True, eq=False)
class _Peer:
    """One client connection as the I/O layer sees it."""

    id: PeerId
    transport: asyncio.Transport
    conn: Connection[ClientFrame]
    host: str  # the remote IP address, for max_connections_per_address
    bucket: TokenBucket | None  # the --max-rate limit (None: no limit)
    out: list[bytes | LateFrame] = field(default_factory=list)  # written each loop tick
    closing: bool = False
    buffered: int = 0  # conn.buffered when last counted in Server._buffered
    claiming: bool = False  # its hello waits for the link's claim of the id
    waiting: bool = False  # reading paused until something of the link's is done
    gone: bool = False  # its end of stream or loss is taken care of (Server._gone)
    hello_timer: asyncio.TimerHandle | None = None
    # Frames wait until this is done (an ack's durability beyond the local store).
    barrier: asyncio.Future[object] | None = None


class _PeerProtocol(asyncio.Protocol):
    """The transport's callbacks, handed to the server: one per connection."""

    __slots__ = ("owner", "peer")

    def __init__(self, server: Server) -> None:
        self.owner = server
        self.peer: _Peer | None = None  # None: refused (over a connection cap)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.peer = self.owner._connected(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and not peer.gone:
            peer.conn.receive_data(data)
            if not peer.waiting:
                self.owner._process(peer)

    def eof_received(self) -> bool:
        peer = self.peer
        if peer is not None and not peer.gone:
            peer.conn.receive_eof()
            if not peer.waiting:
                self.owner._process(peer)
        # Half-closed: the server closes once its last words are written (TLS
        # cannot half-close; asyncio warns when asked to).
        return self.owner.config.ssl is None

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and not peer.gone:
            if peer.waiting:  # for the link: its frames are handled, then it is gone
                peer.conn.receive_eof()
            else:
                self.owner._gone(peer)


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
        self._link = Link()  # a lone server's; a cluster node's from start()
        options: dict[str, Any] = dict(
            sync_interval=config.sync_interval,
            auth=config.auth,
            max_errors=config.max_errors,
            max_inbox=config.max_inbox,
            max_inbox_bytes=config.max_inbox_bytes,
            max_held=config.max_held,
            max_held_bytes=config.max_held_bytes,
            max_ids=config.max_ids,
            max_frame_size=config.max_frame_size,
            max_lead=config.max_lead,
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
                max_inbox_bytes=config.max_inbox_bytes,
                max_ids=config.max_ids,
                max_lead=config.max_lead,
                hello_timeout=config.hello_timeout,
                max_hello_size=config.max_hello_size,
            ),
        )
        self.hub = (
            Hub(**options) if cluster is None else ClusterHub(node_id=cluster.node_id, **options)
        )
        self.console = console
        self.log = log
        self._peers: dict[PeerId, _Peer] = {}
        self._dirty: set[PeerId] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._notices: asyncio.TimerHandle | None = None  # the next peers_changed
        self._peer_ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._waits: set[asyncio.Future[None]] = set()  # of paused peers (_wait)
        self._clocks: dict[str, SaveClock] = {}  # stored at the end of the iteration
        # Event-log lines of this iteration, written once its clocks are stored:
        # the log never says the server received what a crash or a full disk
        # kept from being stored (the client sends it again, and it is received
        # again). In order, whatever their kind: a sync after its receives.
        self._log_lines: list[str] = []
        self._all_gone: asyncio.Future[None] | None = None  # set by close()
        self._observers: list[Callable[[Action], None]] = []
        # Away clients whose inbox is held here -> since when (loop time), for hold_for
        self._away: dict[str, float] = {}
        #: Why the server stopped by itself (a failed store write), or None.
        self.failure: StoreError | None = None
        self._closed = False
        self._failed = asyncio.Event()
        #: The cap on connections in force: ``config.max_connections``, lowered
        #: at start if the open-file limit cannot hold that many.
        self.max_connections = config.max_connections
        self._hosts: Counter[str] = Counter()  # open connections per remote address
        self._buffered = 0  # bytes of unfinished lines, all connections together
        self._refused = 0  # connections refused since the last console line about it
        self._refused_noted = -math.inf  # when that line was printed (loop time)
        self._refused_why = ""  # the reason for the last of them
        self._refused_report: asyncio.TimerHandle | None = None  # the next such line

    def observe(self, callback: Callable[[Action], None]) -> Callable[[], None]:
        """Call ``callback`` with every action the hub returns (notices, frames sent,
        closes), after the server has carried it out. For dashboards and metrics;
        the callback must not block. Returns a function that stops the calls."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback)

    async def wait_failed(self) -> StoreError:
        """Wait until the server stops by itself, and say why (see :meth:`_fail`)."""
        await self._failed.wait()
        assert self.failure is not None
        return self.failure

    @property
    def port(self) -> int:
        """The TCP port the server listens on (the one picked, for ``port=0``)."""
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Join the cluster (if any), then listen. :func:`serve` calls it."""
        if self.cluster is not None:
            from .cluster_link import ClusterLink  # nats-py only when clustering

            assert isinstance(self.hub, ClusterHub)
            self._link = await ClusterLink.start(self.hub, self.apply, self.cluster)
        if self.log is not None:  # what it starts from: the checker's frontier, again
            self.log.record("start", self.hub.frontier.items())
        # inboxes held before a restart: their clients are away from now on
        self._away = dict.fromkeys(self.hub.inboxes, asyncio.get_running_loop().time())
        self.max_connections = connection_cap(self.config.max_connections)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _PeerProtocol(self),
            self.config.host,
            self.config.port,
            ssl=self.config.ssl,
            backlog=4096,  # the default 100 makes mass connects crawl
        )
        self._sync_task = asyncio.create_task(self._sync_loop())

    async def close(self, reason: str = "server shutting down") -> None:
        """Say bye to every client, stop listening, and wait for connections to end."""
        if self._sync_task is not None:
            self._sync_task.cancel()
        for timer in (self._refused_report, self._notices):
            if timer is not None:
                timer.cancel()
        claims = self.hub.clients
        self.apply(self.hub.shutdown(reason))
        barriers = [p.barrier for p in self._peers.values() if p.barrier is not None]
        if barriers:  # acks waiting for the link's durability (bounded)
            await asyncio.wait(barriers, timeout=5)
        self._flush()
        if self._server is not None:
            self._server.close()
        for peer in list(self._peers.values()):
            peer.transport.close()
        waits: list[asyncio.Future[None]] = [*self._waits]
        if self._peers:  # until every connection is lost (bounded)
            self._all_gone = asyncio.get_running_loop().create_future()
            waits.append(self._all_gone)
        if waits:
            await asyncio.wait(waits, timeout=CLOSE_WAIT)
        await self._link.close(claims)
        if self._flush_handle is not None:  # the last iteration's clocks and log lines
            self._flush_handle.cancel()
            self._flush()
        self._closed = True  # nothing more is stored or logged
        self.store.close()
        if self.log is not None:
            self.log.close()

    # Connections

    def _connected(self, transport: asyncio.Transport) -> _Peer | None:
        """A connection was accepted: its peer, or None if a cap refused it."""
        host = _host(transport)
        if self._refused_for_capacity(transport, host):
            return None
        peer_id = PeerId(next(self._peer_ids))
        _keep_alive(transport)
        conn = Connection(
            client_frame_decoder(self.config.limits),
            max_frame_size=self.config.max_frame_size,
            max_hello_size=self.config.max_hello_size,
        )
        rate = self.config.max_rate
        bucket = TokenBucket(rate, 2 * rate) if rate > 0 else None
        peer = self._peers[peer_id] = _Peer(peer_id, transport, conn, host, bucket)
        self._hosts[host] += 1
        if self.config.hello_timeout > 0:
            loop = asyncio.get_running_loop()
            peer.hello_timer = loop.call_later(
                self.config.hello_timeout, self._hello_expired, peer_id
            )
        address = _address(transport)
        self.console.connected(address)
        self.apply(self.hub.connect(peer_id, address))
        return peer

    def _process(self, peer: _Peer, event: object = None, settled: bool = False) -> None:
        """Hand the hub the frames received so far, as one batch (one commit, then
        the writes). Where the link says a frame must wait (a cluster node:
        earlier relays still arriving, a hello's id claim), reading pauses and
        :meth:`_wait` goes on from that frame once it may. After the end of the
        stream, the peer is gone once its last frame is handled."""
        conn, link, hub, peer_id = peer.conn, self._link, self.hub, peer.id
        bucket = peer.bucket
        # Whether a send may have to wait (a cluster node's link), asked once a
        # batch: a lone server's link never makes one wait.
        settles = type(link).settling is not Link.settling
        actions: list[Action] = []  # one batch: one commit, then the writes
        while True:
            if event is None and (event := conn.next_event()) is None:
                break
            if not settled and settles and isinstance(event, Send):
                settling = link.settling(event.to)
                if settling is not None:
                    self.apply(actions)  # what came before, then wait (FIFO)
                    self._wait(peer, self._settle(peer, settling, event))
                    return
            settled = False
            if bucket is not None and not bucket.take(asyncio.get_running_loop().time()):
                rate = self.config.max_rate
                limited = PeerError(
                    f"more than {rate:g} frames per second; frame dropped",
                    code=ErrorCode.RATE_LIMITED,
                    seq=getattr(event, "seq", None),
                )
                actions += hub.receive(peer_id, limited)
            elif link.claims_ids and isinstance(event, Hello):
                self.apply(actions)  # what came before, then the claim
                self._wait(peer, self._claim(peer, event))
                return
            else:
                actions += hub.receive(peer_id, event)  # type: ignore[arg-type]
            if isinstance(event, Hello):
                # The welcome raises the line limit (max_hello_size) for the
                # very next line: encode it now, not at the end of the batch.
                self.apply(actions)
                actions = []
            event = None
        blank = conn.take_blank_lines()
        if blank and bucket is not None:
            now = asyncio.get_running_loop().time()
            actions += self._charge_blank_lines(peer_id, bucket.take_many(blank, now))
        self.apply(actions)
        self._count_buffered(peer_id, peer)
        if conn.eof_received:
            self._gone(peer)

    def _wait(self, peer: _Peer, waiting: Coroutine[Any, Any, None]) -> None:
        """Pause reading from ``peer`` while ``waiting`` runs (it then goes on)."""
        peer.waiting = True
        peer.transport.pause_reading()
        task = asyncio.ensure_future(waiting)
        self._waits.add(task)
        task.add_done_callback(self._waits.discard)

    async def _settle(self, peer: _Peer, settling: Awaitable[None], send: Send) -> None:
        try:
            await asyncio.shield(settling)
        except Exception:
            _report_bug("waiting for earlier relays failed; the send goes on")
        self._go_on(peer, send, settled=True)

    async def _claim(self, peer: _Peer, hello: Hello) -> None:
        peer.claiming = True
        try:
            claimed = await self._link.claim(hello)
        except Exception:  # a bug: this connection ends, the server goes on
            _report_bug("claiming a hello's id failed; closing that connection")
            peer.waiting = False
            self._gone(peer)
            return
        finally:
            peer.claiming = False
        if not peer.gone:
            self.apply(self.hub.receive(peer.id, claimed))
        self._go_on(peer)

    def _go_on(self, peer: _Peer, event: object = None, settled: bool = False) -> None:
        """What :meth:`_wait` waited for is done: read and handle frames again."""
        peer.waiting = False
        if peer.gone:
            return
        if not peer.transport.is_closing():
            peer.transport.resume_reading()
        self._process(peer, event, settled)  # ends the session after its last frame

    def _gone(self, peer: _Peer) -> None:
        """The client closed its side or the connection was lost: write what is
        queued for it, close, and tell the hub (once)."""
        if peer.gone:
            return
        peer.gone = True
        if peer.hello_timer is not None:
            peer.hello_timer.cancel()
        self._write_last_words(peer.id)
        self._peers.pop(peer.id, None)
        self._hosts[peer.host] -= 1
        if not self._hosts[peer.host]:
            del self._hosts[peer.host]
        self._buffered -= peer.buffered
        peer.buffered = 0
        self.apply(self.hub.disconnect(peer.id))
        peer.transport.close()
        if not self._peers and self._all_gone is not None and not self._all_gone.done():
            self._all_gone.set_result(None)

    # Protecting the server: connection caps, the hello timeout, buffered bytes

    def _refused_for_capacity(self, transport: asyncio.Transport, host: str) -> bool:
        """Refuse a connection over ``max_connections`` (in total, or from one
        address) with ``too-many-connections``, and close it at once: it never
        reaches the hub, and costs one write and one close."""
        if len(self._peers) >= self.max_connections:
            why = f"the server has its maximum of {self.max_connections} connections"
        elif self._hosts[host] >= self.config.max_connections_per_address:
            why = (
                f"{host} has the maximum of {self.config.max_connections_per_address}"
                " connections from one address"
            )
        else:
            return False
        error = Error(code=ErrorCode.TOO_MANY_CONNECTIONS.value, message=f"{why}; try later")
        try:
            transport.write(encode_frame(error))
        except (ConnectionError, RuntimeError):
            pass
        transport.close()
        self._note_refusal(why)
        return True

    def _note_refusal(self, why: str) -> None:
        """One console line per second at most, however fast connections come:
        the refusals in between are counted, and reported a second later."""
        self._refused += 1
        self._refused_why = why
        if self._refused_report is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._refused_noted + 1.0 - loop.time())
            self._refused_report = loop.call_later(delay, self._report_refusals)

    def _report_refusals(self) -> None:
        self._refused_report = None
        self.console.line(
            f"refused {self._refused} connection(s): too-many-connections: {self._refused_why}"
        )
        self._refused, self._refused_noted = 0, asyncio.get_running_loop().time()

    def _hello_expired(self, peer_id: PeerId) -> None:
        """``hello_timeout`` after connecting: close the connection if not welcomed."""
        peer = self._peers.get(peer_id)
        if peer is None or self.hub.client_id(peer_id) is not None:
            return
        timeout = self.config.hello_timeout
        if peer.claiming:  # the link's claim is bounded on its own; check again later
            loop = asyncio.get_running_loop()
            peer.hello_timer = loop.call_later(timeout, self._hello_expired, peer_id)
            return
        error = PeerError(
            f"no hello welcomed within {timeout:g} s of connecting; closing",
            code=ErrorCode.HELLO_TIMEOUT,
        )
        self._close_for(peer_id, peer, error)

    def _charge_blank_lines(self, peer_id: PeerId, refused: int) -> list[Action]:
        """Blank lines spend rate-limit tokens like frames (protocol 9.3): one
        ``rate-limited`` for each that found the bucket empty, up to the error
        budget, which then closes the connection."""
        actions: list[Action] = []
        for _ in range(min(refused, self.config.max_errors)):
            limited = PeerError(
                f"more than {self.config.max_rate:g} lines per second; blank line refused",
                code=ErrorCode.RATE_LIMITED,
            )
            actions += self.hub.receive(peer_id, limited)
        return actions

    def _count_buffered(self, peer_id: PeerId, peer: _Peer) -> None:
        """Keep the total of unfinished-line bytes; past ``max_buffered``, close the
        connections holding the largest unfinished lines until it is back to
        three quarters of it. (The margin makes the scan of every connection
        rare: whoever pushes the total over again must first send a quarter of
        ``max_buffered``.)"""
        held = peer.conn.buffered
        self._buffered += held - peer.buffered
        peer.buffered = held
        if self._buffered <= self.config.max_buffered:
            return
        target = self.config.max_buffered * 3 // 4
        holders = sorted(self._peers.items(), key=lambda item: item[1].buffered, reverse=True)
        for victim_id, victim in holders:
            if self._buffered <= target or victim.buffered == 0:
                break
            error = PeerError(
                f"the server holds more than {self.config.max_buffered} bytes of unfinished"
                f" lines; yours, {victim.buffered} bytes, is among the largest: closing",
                code=ErrorCode.SERVER_BUSY,
            )
            self._close_for(victim_id, victim, error)

    def _close_for(self, peer_id: PeerId, peer: _Peer, error: PeerError) -> None:
        """Close a connection with a fatal ``error`` the I/O layer found, and give
        back the memory of its unfinished line at once."""
        actions = self.hub.receive(peer_id, error)  # error frame and Close
        if not any(isinstance(action, Close) for action in actions):
            actions.append(Close(peer_id, str(error)))  # its session had ended already
        self.apply(actions)
        peer.conn.discard_buffered()
        self._buffered -= peer.buffered
        peer.buffered = 0

    def _write_last_words(self, peer_id: PeerId) -> None:
        """The client closed its side: write what is queued for it (say the
        ``bad-frame`` for a line its end of stream cut off) before closing.
        A half-closed peer still reads; for a gone one this is a no-op."""
        peer = self._peers.get(peer_id)
        if peer is None or not peer.out or peer.transport.is_closing():
            return
        if not self._store_clocks():
            return
        if peer.barrier is not None and not peer.barrier.done():
            return  # an ack not yet durable is never written
        data, peer.out = b"".join(self._written(peer)), []
        try:
            peer.transport.write(data)
        except (ConnectionError, RuntimeError):
            pass

    async def _sync_loop(self) -> None:
        """A cycle (and the --hold-for check) every sync_interval seconds. A cycle
        that fails is reported and the next one runs as planned: the cycles never
        stop silently."""
        loop = asyncio.get_running_loop()
        while self.failure is None:
            try:
                self._drop_expired(loop.time())
                self.apply(self.hub.begin_sync_cycle())
                self._link.cycle_done()
            except Exception:
                _report_bug("a synchronization cycle failed; the next one runs as planned")
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
        link's for what other servers send): store, ask the link what to wait
        for, write. Returns what the batch's durability waits for beyond the
        local store (a cluster's writes and relays): empty for a lone server."""
        if self.failure is not None or self._closed:
            return []  # stopped: nothing is written any more
        link = self._link
        stores = cast(
            "list[StoreAction]", [action for action in actions if type(action) in _STORE_TYPES]
        )
        pending: list[Awaitable[object]] = []
        if stores and not link.sees_clocks:
            # A message's clock waits for the end of the loop iteration (one
            # transaction for all, the latest per client), unless the batch
            # stores more: then they go with it, in its transaction.
            clocks = self._clocks
            others: list[StoreAction] = []
            for store in stores:
                if type(store) is SaveClock:
                    clocks[store.client_id] = store
                else:
                    others.append(store)
            if others:
                stores = [*clocks.values(), *others]
                clocks.clear()
            else:
                stores = []
            if clocks and self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        if stores:
            try:
                self.store.apply(stores)  # durable before any ack goes out
            except StoreError as exc:
                self._fail(exc)
                return []
            pending += link.stored(stores)
        shared: dict[int, bytes] = {}  # a frame sent to many plain peers is encoded once
        deltas: EncodeCache = {}  # and to many delta peers in the same state, once
        peers, dirty = self._peers, self._dirty
        # --quiet and no event log: a message's Received costs nothing here
        quiet = not self.console.enabled and self.log is None
        for action in actions:
            kind = type(action)  # dispatch on the exact type: the hot path of every batch
            if kind is Outgoing:
                peer_id, frame = action.peer, action.frame  # type: ignore[union-attr]
                peer = peers.get(peer_id)
                if peer is None or peer.closing:
                    continue
                if type(frame) is Ack:
                    client_id = self.hub.client_id(peer_id) or ""
                    late = link.answer_later(client_id, frame, pending)
                    if late is not None:  # written in its place, once known
                        peer.out.append(late)
                        dirty.add(peer_id)
                        continue
                conn = peer.conn
                if conn.delta or type(frame) is Welcome:
                    # Per connection state; the cache only for what may go to many
                    # (a sync, a broadcast), not a send's deliver, made for one.
                    unicast = type(frame) is Deliver and frame.bclock is None
                    data = conn.encode(frame, None if unicast else deltas)
                else:
                    data = shared.get(id(frame)) or shared.setdefault(
                        id(frame), encode_frame(frame)
                    )
                peer.out.append(data)
                dirty.add(peer_id)
            elif kind in _STORE_TYPES or (quiet and kind is Received):
                continue
            elif kind is Close:
                peer_id = action.peer  # type: ignore[union-attr]
                peer = peers.get(peer_id)
                if peer is not None:
                    peer.closing = True
                    dirty.add(peer_id)
            elif kind is Forward:
                link.carry(action, pending)  # type: ignore[arg-type]
            else:
                if isinstance(action, Joined | Left):
                    link.carry(action, pending)
                    self._track_away(action)
                if self.console.enabled:  # --quiet costs nothing per message
                    self.console.show(action)
                if self.log is not None:
                    self._record(action)
        link.batch_done(pending)
        if pending:
            self._hold_until_durable(actions, pending)
        if self.hub.members.due and self._notices is None:  # peers_changed, batched
            loop = asyncio.get_running_loop()
            self._notices = loop.call_later(PEER_NOTICE_INTERVAL, self._peer_notices)
        if (self._dirty or self._log_lines) and self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        for observer in list(self._observers) if self._observers else ():
            try:
                for action in actions:
                    observer(action)
            except Exception:
                _report_bug(f"observer {observer!r} failed; the server goes on")
        return pending

    def _fail(self, exc: StoreError) -> None:
        """A batch could not be stored. The hub has already taken it in (in memory
        only), so going on would acknowledge, as a duplicate, a resent frame that
        is not durable. Stop instead, loudly: drop every connection at once without
        writing anything more (no ack of what is not durable goes out), stop
        listening and the cycles. Everything acknowledged before is in the
        database; a restart on it carries on from there, and clients resend what
        was not acknowledged."""
        if self.failure is not None:
            return
        self.failure = exc
        if self._sync_task is not None and self._sync_task is not asyncio.current_task():
            self._sync_task.cancel()
        if self._server is not None:
            self._server.close()
        self._log_lines.clear()  # what they say was not stored
        for peer in self._peers.values():
            peer.out.clear()
            peer.transport.abort()
        self._failed.set()

    def _hold_until_durable(self, actions: list[Action], pending: list[Awaitable[object]]) -> None:
        """Hold back the frames of every client this batch acks, or
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

    def _wake_after(self, peer_id: PeerId, _: object) -> None:
        self._wake(peer_id)

    def _wake(self, peer_id: PeerId) -> None:
        self._dirty.add(peer_id)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _store_clocks(self) -> bool:
        """Store the clocks :meth:`apply` kept for the end of the loop iteration
        (before anything is written: a frame never goes out before what it
        stands for is stored). False if the store failed (the server stops)."""
        if not self._clocks or self.failure is not None:
            return self.failure is None
        clocks = list(self._clocks.values())
        self._clocks.clear()
        try:
            self.store.apply(clocks)
        except StoreError as exc:
            self._fail(exc)
            return False
        return True

    def _flush(self) -> None:
        """Store the clocks of this loop iteration, then write what each client got
        in it, in one call per client."""
        self._flush_handle = None
        if not self._store_clocks():
            return
        if self._log_lines and self.log is not None:
            lines, self._log_lines = self._log_lines, []
            self.log.append(lines)
        dirty, self._dirty = self._dirty, set()
        for peer_id in dirty:
            peer = self._peers.get(peer_id)
            if peer is None:
                continue
            if peer.barrier is not None and not peer.barrier.done():
                continue  # its ack is not durable yet; _wake flushes it
            try:
                data = b"".join(peer.out)  # type: ignore[arg-type]
            except TypeError:  # a cluster's LateFrame among them
                data = b"".join(self._written(peer))
            peer.out = []
            transport = peer.transport
            if transport.is_closing():
                continue  # the client is gone; connection_lost cleans up
            try:
                if data:
                    transport.write(data)
                if peer.closing:
                    transport.close()  # buffered frames are flushed first
                elif transport.get_write_buffer_size() > self.config.max_pending:
                    self._drop_slow_consumer(peer_id)
            except (ConnectionError, RuntimeError):
                # The transport died under us (uvloop raises RuntimeError): drop
                # this client only; the others in this flush still get theirs.
                transport.abort()

    def _peer_notices(self) -> None:
        self._notices = None
        self.apply(self.hub.peer_notices())

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
        peer.transport.abort()

    def _record(self, action: Action) -> None:
        """The event-log line of ``action``, written by the next :meth:`_flush`."""
        if self.log is None:
            return
        line = self.log.line
        match action:
            case Received(client_id=client_id, frame=frame):
                msg = message_id(client_id, frame.seq)
                record = line("receive", frame.clock.items(), peer=client_id, msg=msg)
            case SyncCycle(cycle=cycle, frontier=frontier, synced=synced) if synced:
                record = line("sync", frontier.items(), msg=sync_id(cycle), to=list(synced))
            case Joined(client_id=client_id):
                record = line("join", {}, peer=client_id)
            case Left(client_id=client_id):
                record = line("leave", {}, peer=client_id)
            case _:
                return
        self._log_lines.append(record)


def _report_bug(what: str) -> None:
    """An exception that is a bug, where the server can go on: say so on stderr."""
    print(f"vclock server: {what}:", file=sys.stderr)
    traceback.print_exc()


#: TCP keepalive: probe a connection idle this long, then every KEEPALIVE_INTERVAL
#: seconds; KEEPALIVE_PROBES unanswered probes close it. A client that vanished
#: without a FIN (power loss, a dropped network) so frees its id within about a
#: minute instead of holding it until the operating system gives up (hours).
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 30, 10, 3


def _keep_alive(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
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


def _host(transport: asyncio.BaseTransport) -> str:
    """The remote IP address (without the port): what max_connections_per_address counts."""
    peername = transport.get_extra_info("peername")
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return str(peername or "unknown")


#: Open files kept free below the process's limit for what is not a client
#: connection: the database, event logs, the dashboard, the cluster link, and
#: the connections being refused.
FD_RESERVE = 100


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered if needed to leave ``FD_RESERVE`` (or a tenth of the
    limit, if more) open files free below the soft open-file limit, after raising
    that limit to the hard one (best effort)."""
    try:
        import resource
    except ImportError:  # not a Unix: no limit to read
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # keep the limit we have
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - max(FD_RESERVE, soft // 10)))


def _address(transport: asyncio.BaseTransport) -> str:
    peername = transport.get_extra_info("peername")
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


__all__ = ["Console", "Server", "ServerConfig", "serve"]
