"""The asyncio client library: embed a vclock node in any asyncio program.

::

    async with vclock.asyncio.connect("127.0.0.1", 4999, id="A") as node:
        await node.send("B", body={"hello": "world"})
        async for event in node:           # Message, Synced, PeerChange, ServerError
            print(event)

The node keeps its clock by the rules of docs/protocol.md (via the sans-I/O
:class:`~vclock.node.NodeState`); this module only moves bytes and logs events.
Iteration ends when the server closes the session.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Generator
from types import TracebackType
from typing import Any

from ..clock import VectorClock
from ..errors import ProtocolError, VClockError
from ..node import (
    Event,
    Goodbye,
    Message,
    NodeState,
    ServerError,
    Synced,
    Welcomed,
    message_id,
    sync_id,
)
from ..protocol import DEFAULT_MAX_FRAME_SIZE, Connection, server_frame_decoder
from ..protocol.frames import Bye, Frame
from ..tools.eventlog import EventLog

SERVER = "server"


class ConnectError(VClockError, ConnectionError):
    """The server refused the hello (``code`` says why) or could not be reached."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class Node:
    """A connected vclock client. Create it with :func:`connect`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        state: NodeState,
        *,
        log: EventLog | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._state = state
        self._log = log
        self._conn = Connection(server_frame_decoder(), max_frame_size=max_frame_size)
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._reader_task: asyncio.Task[None] | None = None
        self.closed_reason: str | None = None

    # What the node knows

    @property
    def id(self) -> str:
        assert self._state.id is not None
        return self._state.id

    @property
    def clock(self) -> VectorClock:
        return self._state.clock

    @property
    def peers(self) -> list[str]:
        """The other connected clients, in the order they joined."""
        return list(self._state.peers)

    # Our own events

    def local_event(self, description: str | None = None) -> VectorClock:
        """Record a local event; returns the new clock."""
        clock = self._state.local_event()
        self._record("local", clock, desc=description)
        return clock

    async def send(self, to: str, body: Any = None) -> VectorClock:
        """Send our clock (and ``body``) to peer ``to``; returns the clock sent."""
        frame = self._state.send(to, body)
        self._record("send", frame.clock, peer=to, msg=message_id(self.id, frame.seq))
        await self._write(frame)
        return frame.clock

    async def report(self) -> VectorClock:
        """Send our clock to the server alone; returns the clock sent."""
        frame = self._state.report()
        self._record("send", frame.clock, peer=SERVER, msg=message_id(self.id, frame.seq))
        await self._write(frame)
        return frame.clock

    # Receiving

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # later calls end too
            raise StopAsyncIteration
        return event

    async def close(self, reason: str = "client closing") -> None:
        """Say bye and close the connection."""
        if not self._writer.is_closing():
            try:
                await self._write(Bye(reason=reason))
            except (ConnectionError, OSError):
                pass
            self._writer.close()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)

    async def __aenter__(self) -> Node:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Private methods

    async def _handshake(self) -> None:
        await self._write(self._state.hello())
        while True:
            batch = await self._read_events()
            for index, event in enumerate(batch):
                if isinstance(event, Welcomed):
                    for later in batch[index + 1 :]:
                        self._events.put_nowait(later)
                    self._reader_task = asyncio.create_task(self._read_loop())
                    return
                if isinstance(event, ServerError):
                    raise ConnectError(f"server refused hello: {event.message}", event.code)
                if isinstance(event, Goodbye):
                    raise ConnectError(f"server closed the session: {event.reason}")

    async def _read_events(self) -> list[Event]:
        data = await self._reader.read(64 * 1024)
        if data:
            self._conn.receive_data(data)
        else:
            self._conn.receive_eof()
        events: list[Event] = []
        for item in self._conn.events_received():
            if isinstance(item, ProtocolError):
                raise item
            events.append(self._apply(self._state.receive(item)))
        if not data and not events:
            raise ConnectionResetError("server closed the connection")
        return events

    async def _read_loop(self) -> None:
        try:
            while True:
                for event in await self._read_events():
                    self._events.put_nowait(event)
                    if isinstance(event, Goodbye):
                        self.closed_reason = event.reason
                        return
        except (ConnectionError, OSError) as exc:
            self.closed_reason = str(exc) or "connection lost"
        except ProtocolError as exc:
            self.closed_reason = f"server broke the protocol: {exc}"
        finally:
            self._record("leave", self._state.clock, peer=SERVER, desc=self.closed_reason)
            self._events.put_nowait(None)
            self._writer.close()

    def _apply(self, event: Event) -> Event:
        match event:
            case Welcomed(clock=clock):
                self._record("join", clock, peer=SERVER)
            case Message(sender=sender, seq=seq, clock=clock):
                self._record("receive", clock, peer=sender, msg=message_id(sender, seq))
            case Synced(cycle=cycle, clock=clock):
                self._record("sync-receive", clock, peer=SERVER, msg=sync_id(cycle))
        return event

    async def _write(self, frame: Frame) -> None:
        self._conn.send(frame)
        self._writer.write(self._conn.data_to_send())
        await self._writer.drain()

    def _record(self, kind: str, clock: VectorClock, **fields: Any) -> None:
        if self._log is not None:
            self._log.record(kind, clock.items(), **fields)


class connect:
    """Connect, say hello and wait for welcome.

    Use it with ``async with connect(...) as node:`` (the node says bye on exit),
    or ``node = await connect(...)`` and later ``await node.close()``.

    Raises:
        ConnectError: the server is unreachable or refused the hello (see ``code``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4999,
        *,
        id: str | None = None,
        log: EventLog | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self._args = (host, port, id, log, max_frame_size)
        self._node: Node | None = None

    def __await__(self) -> Generator[Any, None, Node]:
        return self._connect().__await__()

    async def __aenter__(self) -> Node:
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

    async def _connect(self) -> Node:
        host, port, id, log, max_frame_size = self._args
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=64 * 1024)
        except OSError as exc:
            raise ConnectError(
                f"cannot reach a vclock server at {host}:{port}: {exc.strerror or exc}"
            ) from None
        node = Node(reader, writer, NodeState(id), log=log, max_frame_size=max_frame_size)
        try:
            await node._handshake()
        except ConnectError:
            writer.close()
            raise
        except ProtocolError as exc:
            writer.close()
            raise ConnectError(f"{host}:{port} does not speak the vclock protocol: {exc}") from None
        except (ConnectionError, OSError) as exc:
            writer.close()
            raise ConnectError(f"{host}:{port} closed the connection before welcome: {exc}") from None
        except BaseException:
            writer.close()
            raise
        return node


async def run(
    node: Node,
    *,
    interval: tuple[float, float] = (2.0, 10.0),
    rng: random.Random | None = None,
    on_event: Callable[[Event], None] | None = None,
    on_send: Callable[[str, VectorClock], None] | None = None,
) -> str:
    """The seed's client behaviour, until the server ends the session.

    Every ``interval`` seconds (uniformly random in the range) send our clock to a
    random other connected client, or, when alone, report it to the server.
    ``on_send(target, clock)`` is told of each send (target ``"server"`` for a
    report) and ``on_event`` of everything received. Returns the reason the
    session ended.
    """
    rng = rng or random.Random()

    async def sender() -> None:
        while True:
            await asyncio.sleep(rng.uniform(*interval))
            peers = node.peers
            if peers:
                target = rng.choice(peers)
                clock = await node.send(target)
            else:
                target, clock = SERVER, await node.report()
            if on_send is not None:
                on_send(target, clock)

    task = asyncio.create_task(sender())
    try:
        async for event in node:
            if on_event is not None:
                on_event(event)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return node.closed_reason or "session ended"


__all__ = ["ConnectError", "Node", "connect", "run"]
