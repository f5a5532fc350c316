"""The asyncio library in one process: a real server and real nodes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import TypeVar

import pytest

from vclock import Goodbye, Message, PeerChange, Synced
from vclock.asyncio import Client, ConnectError, Console, Server, ServerConfig, connect, serve
from vclock.clock import VectorClock

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
E = TypeVar("E")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = await serve(ServerConfig(port=0, sync_interval=0.2), Console(None))
    try:
        yield srv
    finally:
        await srv.close()


async def next_event(node: Client, kind: type[E], **fields: object) -> E:
    """The next event of type ``kind`` (with these field values), skipping others."""
    async with asyncio.timeout(WAIT):
        async for event in node:
            if isinstance(event, kind) and all(getattr(event, k) == v for k, v in fields.items()):
                return event
    raise AssertionError(f"{node.id}: the session ended before a {kind.__name__} {fields}")


async def test_send_delivers_the_body_and_merges_clocks(server: Server) -> None:
    async with (
        connect("127.0.0.1", server.port, id="A") as a,
        connect("127.0.0.1", server.port, id="B") as b,
    ):
        await next_event(a, PeerChange, id="B", joined=True)
        a.local_event("warm up")
        old = b.clock
        body = {"text": "hello", "n": [1, 2, 3]}
        sent = await a.send("B", body=body)
        assert sent == a.clock and sent["A"] == 2

        message = await next_event(b, Message)
        assert (message.sender, message.body, message.seq) == ("A", body, 2)
        assert message.id == "A#2"
        assert message.sent_clock == sent
        assert message.clock == old.merge(sent).tick("B")
        assert message.clock > old and message.clock > sent

        # And back: A's receive merges B's clock.
        old_a = a.clock
        reply = await b.send("A", body=None)
        answer = await next_event(a, Message)
        assert answer.sender == "B" and answer.body is None
        assert answer.clock == old_a.merge(reply).tick("A")


async def test_local_event_ticks_only_our_own_entry(server: Server) -> None:
    async with connect("127.0.0.1", server.port, id="A") as a:
        before = a.clock
        after = a.local_event()
        assert after == before.tick("A") == a.clock
        assert a.local_event("again") == after.tick("A")


async def test_peers_follow_joins_and_leaves(server: Server) -> None:
    async with connect("127.0.0.1", server.port, id="A") as a:
        assert a.peers == []
        async with connect("127.0.0.1", server.port, id="B") as b:
            assert b.peers == ["A"]
            await next_event(a, PeerChange, id="B", joined=True)
            assert a.peers == ["B"]
            async with connect("127.0.0.1", server.port, id="C") as c:
                assert c.peers == ["A", "B"]
                await next_event(a, PeerChange, id="C", joined=True)
                assert a.peers == ["B", "C"]
            await next_event(a, PeerChange, id="C", joined=False)
            await next_event(b, PeerChange, id="C", joined=False)
            assert a.peers == ["B"] and b.peers == ["A"]
        await next_event(a, PeerChange, id="B", joined=False)
        assert a.peers == []


async def test_duplicate_id_is_refused_with_its_code(server: Server) -> None:
    async with connect("127.0.0.1", server.port, id="A") as a:
        with pytest.raises(ConnectError, match="already connected") as refused:
            await connect("127.0.0.1", server.port, id="A")
        assert refused.value.code == "duplicate-id"
        # The first A is unaffected and can still talk to a newcomer.
        async with connect("127.0.0.1", server.port, id="B") as b:
            sent = await a.send("B", body="still here")
            message = await next_event(b, Message)
            assert message.body == "still here" and message.sent_clock == sent


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connect_error_when_no_server_listens() -> None:
    port = _unused_port()
    with pytest.raises(ConnectError) as failed:
        await connect("127.0.0.1", port, id="A")
    assert failed.value.code is None
    assert f"127.0.0.1:{port}" in str(failed.value)
    assert isinstance(failed.value, ConnectionError)


async def test_synced_event_after_a_sync_cycle(server: Server) -> None:
    async with (
        connect("127.0.0.1", server.port, id="A") as a,
        connect("127.0.0.1", server.port, id="B") as b,
    ):
        # A's report reaches only the server: the next cycle must bring it to B.
        reported = await a.report()
        old = b.clock
        synced = await next_event(b, Synced)
        assert synced.cycle >= 1
        assert synced.frontier >= reported
        assert synced.clock == old.merge(synced.frontier).tick("B")
        assert synced.clock == b.clock or synced.clock < b.clock


async def test_server_close_ends_every_session(server: Server) -> None:
    async with (
        connect("127.0.0.1", server.port, id="A") as a,
        connect("127.0.0.1", server.port, id="B") as b,
    ):
        await server.close()
        for node in (a, b):
            events = []
            async with asyncio.timeout(WAIT):
                async for event in node:
                    events.append(event)
            assert events and isinstance(events[-1], Goodbye), events
            assert node.closed_reason == events[-1].reason
            with pytest.raises(StopAsyncIteration):
                await node.__anext__()  # it stays ended


async def test_vector_clock_is_what_the_nodes_carry(server: Server) -> None:
    async with connect("127.0.0.1", server.port, id="A") as a:
        assert isinstance(a.clock, VectorClock) and a.clock == VectorClock()
        assert a.id == "A"


async def test_server_assigns_an_id_when_none_is_asked_for(server: Server) -> None:
    async with connect("127.0.0.1", server.port) as anonymous:
        assert anonymous.id.startswith("client-")
        assert anonymous.local_event() == VectorClock({anonymous.id: 1})


NOT_VCLOCK = {"garbage": b"HTTP/1.1 400 Bad Request\r\n\r\n", "hang-up": None}


@pytest.mark.parametrize("answer", NOT_VCLOCK.values(), ids=NOT_VCLOCK.keys())
async def test_connect_error_when_the_peer_is_not_a_vclock_server(answer: bytes | None) -> None:
    async def not_vclock(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()

    fake = await asyncio.start_server(not_vclock, "127.0.0.1", 0)
    try:
        port = fake.sockets[0].getsockname()[1]
        with pytest.raises(ConnectError) as failed:
            async with asyncio.timeout(WAIT):
                await connect("127.0.0.1", port, id="A")
        assert failed.value.code is None
        assert f"127.0.0.1:{port}" in str(failed.value)
    finally:
        fake.close()
        await fake.wait_closed()
