"""Delta-encoded connections over real sockets: a refused line never leaves the two
ends disagreeing about the previous clock (docs/protocol.md, section 12)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from vclock import Message, PeerChange, VectorClock
from vclock.asyncio import Client, Console, Server, ServerConfig, connect, serve
from vclock.protocol import Connection, Deliver, Hello, Send, server_frame_decoder
from vclock.protocol.frames import Error, ServerFrame, Welcome

pytestmark = pytest.mark.timeout(60)
WAIT = 10.0


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = await serve(ServerConfig(port=0, sync_interval=60, max_frame_size=4096), Console(None))
    try:
        yield srv
    finally:
        await srv.close()


class DeltaSocket:
    """A hand-driven client on a real socket, speaking delta after welcome."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn: Connection[ServerFrame] = Connection(
            server_frame_decoder(), max_frame_size=1 << 20
        )

    @classmethod
    async def hello(cls, port: int, client_id: str) -> DeltaSocket:
        sock = cls(*await asyncio.open_connection("127.0.0.1", port))
        await sock.write(Hello(v=1, id=client_id, delta=True))
        welcome = await sock.expect(Welcome)
        assert welcome.delta
        return sock

    async def write(self, frame: object) -> None:
        self.conn.send(frame)  # type: ignore[arg-type]
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()

    async def expect(self, kind: type, timeout: float = WAIT) -> object:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.conn.events_received():
                    if isinstance(event, kind):
                        return event
                data = await self.reader.read(65536)
                if not data:
                    raise AssertionError(f"closed before a {kind.__name__}")
                self.conn.receive_data(data)

    async def errors_until_closed(self) -> list[str]:
        codes: list[str] = []
        async with asyncio.timeout(WAIT):
            while data := await self.reader.read(65536):
                self.conn.receive_data(data)
                codes += [e.code for e in self.conn.events_received() if isinstance(e, Error)]
        return codes


async def next_message(node: Client) -> Message:
    async with asyncio.timeout(WAIT):
        async for event in node:
            if isinstance(event, Message):
                return event
    raise AssertionError("session ended")


async def test_clocks_relayed_after_a_refused_line_are_the_ones_sent(server: Server) -> None:
    """A line refused for its ``to`` (after the client's encoder moved on) used to
    leave the server's reference behind: B then got {"A": 2} for {"A": 2, "B": 1}."""
    async with connect("127.0.0.1", server.port, id="B") as b:
        a = await DeltaSocket.hello(server.port, "A")
        await b.send("A")  # so that A's clock has an entry that stays: {"B": 1}
        assert (await a.expect(Deliver)).clock == VectorClock({"B": 1})  # type: ignore[attr-defined]
        await a.write(Send(to="a b", seq=1, clock=VectorClock({"A": 1, "B": 1})))
        assert (await a.expect(Error)).code == "bad-frame"  # type: ignore[attr-defined]
        for seq in (2, 3):
            clock = VectorClock({"A": seq, "B": 1})
            await a.write(Send(to="B", seq=seq, clock=clock))
            assert (await next_message(b)).sent_clock == clock
        a.writer.close()


async def test_an_unreadable_clock_closes_the_delta_connection_others_unharmed(
    server: Server,
) -> None:
    async with (
        connect("127.0.0.1", server.port, id="B") as b,
        connect("127.0.0.1", server.port, id="C") as c,
    ):
        a = await DeltaSocket.hello(server.port, "A")
        await a.write(Send(to="B", seq=1, clock=VectorClock({"A": 1}), body="x" * 5000))
        assert await a.errors_until_closed() == ["frame-too-large", "delta-lost"]
        sent = await b.send("C", body="still here")
        assert (await next_message(c)).sent_clock == sent
        async with asyncio.timeout(WAIT):
            async for event in b:
                if isinstance(event, PeerChange) and event.id == "A" and not event.joined:
                    break
        assert "A" not in server.hub.clients
