"""The asyncio client library: embed a vclock node in any asyncio program.

::

    async with vclock.asyncio.connect("127.0.0.1", 4999, id="A") as node:
        await node.send("B", body={"hello": "world"})
        async for event in node:           # Message, Synced, PeerChange, ServerError, ...
            print(event)

The node keeps its clock by the rules of docs/protocol.md (via the sans-I/O
:class:`~vclock.client.ClientState`); this module only moves bytes, logs events and,
with ``reconnect=True``, gets the connection back after a loss: it resumes its
session under the same id, resends what the server had not acknowledged, and
drops deliveries it already handled. Iteration ends when the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import ssl
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ..client import (
    DEFAULT_MAX_HELD,
    ClientEvent,
    ClientState,
    Disconnected,
    Goodbye,
    Measure,
    Message,
    PeerPage,
    ServerError,
    Synced,
    Welcomed,
)
from ..clock import ClockLimits, VectorClock
from ..errors import HoldBackFull, ProtocolError, VClockError
from ..events import EVERYONE, SERVER_ID, message_id, sync_id
from ..net import READ_CHUNK
from ..protocol import DEFAULT_MAX_FRAME_SIZE, Connection, server_frame_decoder
from ..protocol.frames import (
    MAX_PEERS_PAGE,
    Broadcast,
    Deliver,
    Frame,
    Limits,
    PeersMode,
    Report,
    Send,
)
from ..tools.eventlog import EventLog
from .statefile import StateFile, StateFileError, load_state, save_state

#: A client trusts its server more than the server trusts clients: a sync carries
#: one entry per client ever seen, so accept much larger frames and clocks.
CLIENT_MAX_FRAME_SIZE = max(DEFAULT_MAX_FRAME_SIZE, 64 << 20)
CLIENT_LIMITS = ClockLimits(max_entries=10_000_000, max_id_length=1024)

#: Refusals of a hello that a reconnecting client waits out (with backoff).
_RETRIED_CODES = frozenset({"duplicate-id", "too-many-connections", "server-busy", "hello-timeout"})


class ConnectError(VClockError, ConnectionError):
    """The server refused the hello (``code`` says why) or could not be reached
    (``unreachable``: nothing listens there, or no route)."""

    def __init__(self, message: str, code: str | None = None, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.unreachable = unreachable


async def _speaks_tls(host: str, port: int, timeout: float = 5.0) -> bool:
    """Whether ``host:port`` completes a TLS handshake: asked only after a plain
    connection was closed before ``welcome``, to say why. The certificate is not
    checked; nothing is sent after the handshake."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), timeout
        )
    except (OSError, TimeoutError):  # ssl.SSLError is an OSError
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class SessionEnded(VClockError, ConnectionError):
    """The node's session ended for good (:attr:`Client.closed_reason`): it no longer
    ticks, sends or logs. Connect again for a new session."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    host: str = "127.0.0.1"
    port: int = 4999
    id: str | None = None
    token: str | None = None
    reconnect: bool = False  # also asks for a resume session
    delta: bool = True  # delta-encoded clocks, if the server agrees
    state_path: Path | None = None  # persist clock, deliveries and unacked frames
    max_held: int = DEFAULT_MAX_HELD  # causal broadcasts held back at most
    ssl: ssl.SSLContext | None = None
    log: EventLog | None = None
    max_frame_size: int = CLIENT_MAX_FRAME_SIZE
    backoff: tuple[float, float] = (0.1, 5.0)  # first and longest wait between attempts
    # More servers to fail over to (cluster nodes), tried in turn after host:port.
    fallbacks: tuple[tuple[str, int], ...] = ()
    peers: PeersMode = "all"  # what to be told about the other clients (hello.peers)

    @property
    def servers(self) -> list[tuple[str, int]]:
        """Every server address, the first one first."""
        first = (self.host, self.port)
        return [first, *(address for address in self.fallbacks if address != first)]


class Client:
    """A connected vclock client. Create it with :func:`connect`."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self._state = ClientState(
            options.id,
            token=options.token,
            resume=options.reconnect,
            delta=options.delta,
            max_held=options.max_held,
            peers=options.peers,
        )
        self._store: StateFile | None = None
        if options.state_path is not None:
            self._store = StateFile(options.state_path)
            saved = self._store.load()
            if saved is not None:
                self._state.restore(saved)
                if options.log is not None:
                    options.log.complete(saved.journal)  # in case we crashed between
        self._log = options.log
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._conn = self._new_connection()
        # What the application iterates over; None ends it, an error is raised.
        self._events: asyncio.Queue[ClientEvent | HoldBackFull | None] = asyncio.Queue()
        self._failure: HoldBackFull | None = None  # ends the session for good
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._server = 0  # index into options.servers of the server we use
        self._resending = False  # reconnecting: new frames wait behind the resends
        self._page: asyncio.Future[PeerPage] | None = None  # the who being answered
        self._who_lock = asyncio.Lock()  # one paging at a time: answers come in order
        self._welcomed = False  # once: no more TLS probing (only a first connect is misset)
        self.closed_reason: str | None = None

    # What the node knows

    @property
    def id(self) -> str:
        """This client's id: the one asked for, or the one the server assigned."""
        assert self._state.id is not None, "not welcomed yet"
        return self._state.id

    @property
    def clock(self) -> VectorClock:
        """This client's vector clock now (after its last event)."""
        return self._state.clock

    @property
    def server(self) -> tuple[str, int]:
        """The address of the server this node is (or was last) connected to."""
        return self.options.servers[self._server]

    @property
    def peers(self) -> list[str]:
        """The other connected clients, in the order the node heard of them
        (always empty for a node connected with ``peers="none"``: see
        :meth:`fetch_peers`)."""
        return list(self._state.peers)

    async def fetch_peers(self) -> list[str]:
        """Ask the server who else is connected, a page at a time (``who``,
        docs/protocol.md 4.5): every other client, in id order. For any node,
        and the only way for one connected with ``peers="none"``. Clients that
        come or go meanwhile may or may not be listed.

        Raises:
            SessionEnded: the session is over.
            ConnectionError: the connection was lost before the last page.
        """
        self._check_open()
        ids: list[str] = []
        after: str | None = None
        async with self._who_lock:
            while True:
                page = await self._who(after, MAX_PEERS_PAGE)
                ids += page.ids
                if page.next is None:
                    return ids
                after = page.next

    async def fetch_peer_page(
        self, after: str | None = None, limit: int = MAX_PEERS_PAGE
    ) -> PeerPage:
        """Ask the server for one page of the other connected clients (``who``):
        at most ``limit`` ids (the server caps it at 1000), in id order, after
        ``after``. ``next`` is the ``after`` of the next page, None on the last.
        A page may hold fewer ids than asked, even none, and still have a next.

        Raises:
            SessionEnded: the session is over.
            ConnectionError: the connection was lost before the answer.
        """
        self._check_open()
        async with self._who_lock:
            return await self._who(after, limit)

    async def _who(self, after: str | None, limit: int) -> PeerPage:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise ConnectionResetError("not connected to the server")
        self._page = asyncio.get_running_loop().create_future()
        await self._write(self._state.who(after, limit))
        return await self._page

    @property
    def limits(self) -> Limits | None:
        """The server's limits, as its ``welcome`` announced them (None: it did not)."""
        return self._state.limits

    @property
    def unacked(self) -> int:
        """Reconnecting nodes: frames sent that the server has not acknowledged yet."""
        return len(self._state.unacked)

    @property
    def held(self) -> int:
        """Causal broadcasts received and held back until those they depend on arrive."""
        return len(self._state.held)

    # Our own events

    def local_event(self, description: str | None = None) -> VectorClock:
        """Record a local event; returns the new clock."""
        self._check_open()
        clock = self._state.local_event()
        self._commit(self._line("local", clock, desc=description))
        return clock

    async def send(self, to: str, body: Any = None) -> VectorClock:
        """Send our clock (and ``body``) to peer ``to``; returns the clock sent.

        A reconnecting node keeps the frame until the server acknowledges it, so a
        send while disconnected is not lost: it goes out after the reconnect.

        Raises:
            LimitExceeded: the frame would be over the server's ``max_frame_size``
                or ``max_clock_entries`` (``welcome.limits``). Nothing happened:
                no tick, no log line, nothing sent; the session goes on.
            SessionEnded: the session is over (it was closed, or the server
                ended it); nothing happened.
        """
        self._check_open()
        frame = self._state.send(to, body, measure=self._measure())
        self._commit(self._line("send", frame.clock, peer=to, msg=message_id(self.id, frame.seq)))
        await self._write(frame)
        return frame.clock

    async def broadcast(self, body: Any = None) -> VectorClock:
        """Send our clock (and ``body``) to every other client; returns the clock sent.

        Receivers deliver broadcasts in causal order (docs/protocol.md, section 13).
        Like :meth:`send`, a reconnecting node keeps it until it is acknowledged.

        Raises:
            LimitExceeded, SessionEnded: as for :meth:`send`.
        """
        self._check_open()
        frame = self._state.broadcast(body, measure=self._measure())
        self._commit(
            self._line("send", frame.clock, peer=EVERYONE, msg=message_id(self.id, frame.seq))
        )
        await self._write(frame)
        return frame.clock

    async def report(self) -> VectorClock:
        """Send our clock to the server alone; returns the clock sent.

        Raises:
            LimitExceeded, SessionEnded: as for :meth:`send`.
        """
        self._check_open()
        frame = self._state.report(measure=self._measure())
        self._commit(
            self._line("send", frame.clock, peer=SERVER_ID, msg=message_id(self.id, frame.seq))
        )
        await self._write(frame)
        return frame.clock

    # Receiving

    def __aiter__(self) -> AsyncIterator[ClientEvent]:
        return self

    async def __anext__(self) -> ClientEvent:
        """The next event; the iteration ends with the session.

        Raises:
            HoldBackFull: the session ended because the causal-broadcast hold-back
                queue is full (after every event before it); later calls end
                the iteration.
        """
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # later calls end too
            raise StopAsyncIteration
        if isinstance(event, HoldBackFull):
            raise event
        return event

    async def close(self, reason: str = "client closing") -> None:
        """Say bye (leaving for good) and close the connection."""
        self._closing = True
        writer = self._writer
        open_ = writer is not None and not writer.is_closing()
        bye = self._state.bye(reason) if open_ else None  # saved with our leave, below
        self._finish(reason)  # logged as our leave, unless the session had ended already
        if writer is not None and bye is not None:
            try:
                await self._write(bye)
            except (ConnectionError, OSError):
                pass
            writer.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._store is not None:
            self._store.close()
            self._store = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Connecting

    async def _open(self) -> None:
        """Connect, hello, wait for welcome, then resend what was not acknowledged.

        Raises:
            ConnectError: unreachable, refused, or not a vclock server.
        """
        host, port = self.server
        self._resending = True
        try:
            self._reader, self._writer = await asyncio.open_connection(
                host, port, limit=READ_CHUNK, ssl=self.options.ssl
            )
        except ssl.SSLCertVerificationError as exc:
            raise ConnectError(
                f"{host}:{port}: the server's TLS certificate is not trusted: {exc}"
            ) from None
        except ssl.SSLError as exc:
            if exc.reason == "WRONG_VERSION_NUMBER":  # its first bytes were no TLS record
                raise ConnectError(
                    f"{host}:{port} does not speak TLS (a server without --tls-cert?):"
                    " connect without TLS, or start the server with --tls-cert and --tls-key"
                ) from None
            raise ConnectError(f"TLS with {host}:{port} failed: {exc}") from None
        except OSError as exc:
            raise ConnectError(
                f"cannot reach a vclock server at {host}:{port}: {exc.strerror or exc}",
                unreachable=True,
            ) from None
        self._conn = self._new_connection()
        try:
            await self._handshake()
        except ConnectError:
            self._writer.close()
            raise
        except ProtocolError as exc:
            self._writer.close()
            raise ConnectError(f"{host}:{port} does not speak the vclock protocol: {exc}") from None
        except (ConnectionError, OSError) as exc:
            self._writer.close()
            # A server that restarts or stops closes connections before welcome too:
            # only a node never welcomed asks, so reconnects add no connection.
            if not self._welcomed and self.options.ssl is None and await _speaks_tls(host, port):
                raise ConnectError(
                    f"{host}:{port} speaks TLS and closed a plain connection before welcome:"
                    " connect with TLS (vclock client --tls-ca FILE, or --tls for a"
                    " certificate the system trusts)"
                ) from None
            raise ConnectError(
                f"{host}:{port} closed the connection before welcome: {exc}"
            ) from None
        self._welcomed = True
        if self._failure is not None:
            return  # the welcome's replay filled the hold-back queue: _run ends it
        # Resend what was not acknowledged, oldest first, before any new frame:
        # sends made meanwhile wait in unacked and go out in this loop too, so
        # the server never sees a higher seq before a lower one (it would take
        # the lower one for a duplicate).
        sent = 0
        while pending := [f for f in self._state.to_resend() if f.seq > sent]:
            for frame in pending:
                await self._write(frame, resend=True)
                sent = frame.seq
        self._resending = False

    async def _handshake(self) -> None:
        await self._write(self._state.hello())
        while True:
            batch = await self._read_events()
            for index, event in enumerate(batch):
                if isinstance(event, Welcomed):
                    for later in batch[index + 1 :]:
                        self._events.put_nowait(later)
                    return
                if isinstance(event, ServerError):
                    raise ConnectError(f"server refused hello: {event.message}", event.code)
                if isinstance(event, Goodbye):
                    raise ConnectError(f"server closed the session: {event.reason}")

    async def _run(self) -> None:
        """Read until the session ends; with ``reconnect``, get it back after losses."""
        while True:
            reason = await self._read_until_lost()
            if not self.options.reconnect or self._closing or self._failure is not None:
                self._finish(reason)
                return
            self._commit(self._line("leave", self._state.clock, peer=SERVER_ID, desc=reason))
            self._events.put_nowait(Disconnected(reason))
            try:
                await self._reconnect()
            except ConnectError as exc:
                self._finish(str(exc))
                return
            self._events.put_nowait(Welcomed(self.id, tuple(self.peers), self.clock))

    async def _read_until_lost(self) -> str:
        try:
            while self._failure is None:
                for event in await self._read_events():
                    self._events.put_nowait(event)
                    if isinstance(event, Goodbye):
                        return event.reason or "server said bye"
            # Closed without bye: a held inbox keeps what we did not take.
            return str(self._failure)
        except (ConnectionError, OSError) as exc:
            return str(exc) or "connection lost"
        except ProtocolError as exc:
            return f"server broke the protocol: {exc}"
        finally:
            if self._writer is not None:
                self._writer.close()
            if self._page is not None and not self._page.done():
                self._page.set_exception(ConnectionResetError("connection lost"))

    async def _reconnect(self) -> None:
        first, longest = self.options.backoff
        wait = first
        while True:
            await asyncio.sleep(wait * random.uniform(0.5, 1.0))
            try:
                await self._open()
                return
            except ConnectError as exc:
                # duplicate-id is retried: the server (in a cluster, the node that
                # held our id and died) may not have noticed yet that we are gone;
                # so are a full or busy server and a hello that came too late.
                if exc.code is not None and exc.code not in _RETRIED_CODES:
                    raise  # refused, e.g. auth: retrying will not help
                # the same server first, then each other one in turn
                self._server = (self._server + 1) % len(self.options.servers)
                wait = min(longest, wait * 2)

    async def _open_any(self) -> None:
        """The first connection: try each server once, in order."""
        for index in range(len(self.options.servers)):
            self._server = index
            try:
                await self._open()
                return
            except ConnectError as exc:
                if exc.code is not None or index == len(self.options.servers) - 1:
                    raise

    def _check_open(self) -> None:
        if self.closed_reason is not None:
            raise SessionEnded(
                f"the session ended ({self.closed_reason}); connect again for a new one"
            )

    def _finish(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self._commit(self._line("leave", self._state.clock, peer=SERVER_ID, desc=reason))
            if self._failure is not None:
                self._events.put_nowait(self._failure)
            self._events.put_nowait(None)

    # Private methods

    def _new_connection(self) -> Connection[Any]:
        return Connection(
            server_frame_decoder(CLIENT_LIMITS), max_frame_size=self.options.max_frame_size
        )

    async def _read_events(self) -> list[ClientEvent]:
        assert self._reader is not None
        data = await self._reader.read(READ_CHUNK)
        if data:
            self._conn.receive_data(data)
        else:
            self._conn.receive_eof()
        events: list[ClientEvent] = []
        taken = False  # a delivery changed the state without an event (held back, a copy)
        for item in self._conn.events_received():
            if isinstance(item, ProtocolError):
                raise item
            try:
                events += self._state.receive_all(item)  # a broadcast may release several
            except HoldBackFull as exc:
                # Nothing of this frame or after it is taken, nor acknowledged.
                self._failure = exc
                break
            taken = taken or isinstance(item, Deliver)
        events = [event for event in events if not self._answered(event)]
        if events or taken:
            self._commit(*(line for event in events if (line := self._event_line(event))))
        if self._state.ack_due:
            await self._write(self._state.delivered_frame())  # saved above
        if not data and not events and self._failure is None:
            raise ConnectionResetError("server closed the connection")
        return events

    def _answered(self, event: ClientEvent) -> bool:
        """A page of peers is the answer to :meth:`fetch_peers`, not an event."""
        if not isinstance(event, PeerPage):
            return False
        if self._page is not None and not self._page.done():
            self._page.set_result(event)
        return True

    def _event_line(self, event: ClientEvent) -> str | None:
        match event:
            case Welcomed(clock=clock):
                return self._line("join", clock, peer=SERVER_ID)
            case Message(sender=sender, seq=seq, clock=clock):
                return self._line("receive", clock, peer=sender, msg=message_id(sender, seq))
            case Synced(cycle=cycle, clock=clock):
                return self._line("sync-receive", clock, peer=SERVER_ID, msg=sync_id(cycle))
        return None

    async def _write(self, frame: Frame, *, resend: bool = False) -> None:
        writer = self._writer
        if self._resending and not resend and isinstance(frame, Send | Report | Broadcast):
            return  # kept in unacked: _open sends it after the older ones
        if writer is None or writer.is_closing():
            if self.options.reconnect and not self._closing:
                return  # kept in unacked; resent after the reconnect
            raise ConnectionResetError("not connected to the server")
        self._conn.send(frame)
        writer.write(self._conn.data_to_send())
        try:
            await writer.drain()
        except (ConnectionError, OSError):
            if not self.options.reconnect:
                raise

    def _commit(self, *lines: str | None) -> None:
        """Persist what just happened: the state file first, carrying the event-log
        lines as a write-ahead copy, then the log. A crash between the two writes
        leaves lines the next start appends (:meth:`EventLog.complete`), so the log
        and the state never disagree (no receive logged twice, no send missing)."""
        journal = [line for line in lines if line is not None]
        if self._store is not None and self._state.id is not None:
            self._store.save(self._state, journal)
        if self._log is not None:
            self._log.append(journal)

    def _measure(self) -> Measure | None:
        """How to size our next frame for the server's limits (ClientState.check_limits).

        A reconnecting node may resend it as the first frame of a new connection,
        where its clock goes in full: the default measure (None), the full encoding,
        is what must fit. Otherwise it goes out now, on this connection, with the
        delta encoding if there is one (measured without moving the reference).
        """
        return None if self.options.reconnect else self._conn.measure

    def _line(self, kind: str, clock: VectorClock, **fields: Any) -> str | None:
        return None if self._log is None else self._log.line(kind, clock.items(), **fields)


class connect:
    """Connect, say hello and wait for welcome.

    Use it with ``async with connect(...) as node:`` (the node says bye on exit),
    or ``node = await connect(...)`` and later ``await node.close()``.

    Args:
        host, port: the server.
        id: the id to ask for (``None``: the server assigns one).
        token: for servers that require authentication.
        reconnect: resume the session after a lost connection (with backoff),
            without losing or duplicating acknowledged messages.
        state_path: a file to keep the node's clock, deliveries and unacknowledged
            frames in, so a restarted process carries on (needs an ``id``): an
            SQLite database, written a little per event (a JSON state file of
            earlier versions is converted).
        max_held: causal broadcasts held back at most; one more ends the
            session with :class:`~vclock.errors.HoldBackFull`.
        ssl: a client SSL context for TLS servers.
        log: an event log for the node's events.
        delta: ask for delta-encoded clocks (on by default; the server decides).
        fallbacks: more ``(host, port)`` servers, e.g. the other nodes of a
            cluster: the first connection tries them in turn if ``host:port``
            cannot be reached, and a reconnecting node fails over to them.
        peers: what to be told about the other clients: ``"all"`` (the
            default: every change as it happens), ``"batched"`` (several
            changes to a frame, at most ten frames a second) or
            ``"none"`` (nothing; :meth:`Client.fetch_peers` and
            :meth:`Client.fetch_peer_page` ask, and :func:`run` pages through
            the others itself). With many clients, ``"none"`` keeps the
            server's cost per client constant.

    Raises:
        ConnectError: the server is unreachable or refused the hello (see ``code``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4999,
        *,
        id: str | None = None,
        token: str | None = None,
        reconnect: bool = False,
        state_path: str | Path | None = None,
        ssl: ssl.SSLContext | None = None,
        log: EventLog | None = None,
        max_frame_size: int = CLIENT_MAX_FRAME_SIZE,
        delta: bool = True,
        fallbacks: list[tuple[str, int]] | None = None,
        max_held: int = DEFAULT_MAX_HELD,
        peers: PeersMode = "all",
    ) -> None:
        self._options = ClientOptions(
            peers=peers,
            max_held=max_held,
            fallbacks=tuple(fallbacks or ()),
            host=host,
            port=port,
            id=id,
            token=token,
            reconnect=reconnect,
            state_path=Path(state_path) if state_path is not None else None,
            ssl=ssl,
            log=log,
            max_frame_size=max_frame_size,
            delta=delta,
        )
        self._node: Client | None = None

    def __await__(self) -> Generator[Any, None, Client]:
        return self._connect().__await__()

    async def __aenter__(self) -> Client:
        self._node = await self._connect()
        return self._node

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._node is not None
        await self._node.close()

    async def _connect(self) -> Client:
        node = Client(self._options)
        try:
            await node._open_any()
        except BaseException:
            if node._store is not None:
                node._store.close()
            raise
        node._task = asyncio.create_task(node._run())
        return node


#: ``run()`` with ``peers="none"``: the ids a node holds to choose from (one
#: ``who`` page), and the sends before it moves on to the next page.
WINDOW_SIZE = 100
WINDOW_SENDS = 10


class _PeerWindow:
    """What :func:`run` chooses from for a node that asked for no peer list
    (``peers="none"``): one page of at most ``size`` other clients, from ``who``.
    Every ``sends`` choices it moves on to the next page, in id order, and back
    to the first after the last; so every client is chosen in time while the
    node holds ``size`` ids, however many clients there are. With up to
    ``size`` clients the page is all of them, as good as a full list. An id the
    server says is gone (``unknown-peer``) leaves the page at once.
    """

    def __init__(self, node: Client, size: int = WINDOW_SIZE, sends: int = WINDOW_SENDS) -> None:
        self.node = node
        self.size = size
        self.sends = sends
        self.ids: list[str] = []
        self._after: str | None = None  # where the next page starts
        self._left = 0  # choices before the next page

    async def choices(self) -> list[str]:
        """The ids to choose from now (empty: the node is alone). A lost
        connection keeps the page it has, to be refreshed on the next call."""
        if self._left <= 0 or not self.ids:
            try:
                self.ids = await self._next_page()
                self._left = self.sends
            except ConnectionError:
                pass  # reconnecting, or ending: the session's loop says which
        self._left -= 1
        return self.ids

    def gone(self, peer: str) -> None:
        """The server said ``peer`` is not connected (an ``unknown-peer`` refusal)."""
        if peer in self.ids:
            self.ids.remove(peer)

    async def _next_page(self) -> list[str]:
        """The next non-empty page, going round once at most (empty: no one else)."""
        after, wrapped = self._after, self._after is None
        while True:
            page = await self.node.fetch_peer_page(after, self.size)
            after = page.next
            if page.ids:
                self._after = after
                return list(page.ids)
            if after is None:
                if wrapped:
                    self._after = None
                    return []
                wrapped = True


async def run(
    node: Client,
    *,
    interval: tuple[float, float] = (2.0, 10.0),
    rng: random.Random | None = None,
    on_event: Callable[[ClientEvent], None] | None = None,
    on_send: Callable[[str, VectorClock], None] | None = None,
    broadcast_every: int = 0,
) -> str:
    """The seed's client behaviour, until the session ends.

    Every ``interval`` seconds (uniformly random in the range) send our clock to a
    random other connected client, or, when alone, report it to the server. With
    ``broadcast_every=N`` every Nth of these is a broadcast to all other clients
    instead (N=1: broadcasts only). ``on_send(target, clock)`` is told of each
    send (target ``"server"`` for a report, ``"*"`` for a broadcast) and
    ``on_event`` of everything received. Returns the reason the session ended.

    A node connected with ``peers="none"`` knows no peers by itself: it asks the
    server with ``who`` and chooses from one page of them at a time, the next
    page every 10 sends: it holds at most 100 ids, whatever the number of clients.
    """
    rng = rng or random.Random()
    turns = itertools.count(1)
    window = _PeerWindow(node) if node.options.peers == "none" else None

    async def sender() -> None:
        while True:
            await asyncio.sleep(rng.uniform(*interval))
            peers = node.peers if window is None else await window.choices()
            if peers and broadcast_every > 0 and next(turns) % broadcast_every == 0:
                target, clock = EVERYONE, await node.broadcast()
            elif peers:
                target = rng.choice(peers)
                clock = await node.send(target)
            else:
                target, clock = SERVER_ID, await node.report()
            if on_send is not None:
                on_send(target, clock)

    task = asyncio.create_task(sender())
    try:
        async for event in node:
            if window is not None and isinstance(event, ServerError) and event.peer is not None:
                if event.code == "unknown-peer":
                    window.gone(event.peer)
            if on_event is not None:
                on_event(event)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return node.closed_reason or "session ended"


__all__ = [
    "ClientOptions",
    "ConnectError",
    "Client",
    "SessionEnded",
    "StateFileError",
    "connect",
    "load_state",
    "run",
    "save_state",
]
