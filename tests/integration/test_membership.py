"""Membership that scales (protocol 4.5) on a real server: old-style clients keep
their notices, "none" clients get none, "batched" ones get peers_changed, and
who/peers pages the list."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from vclock import PeerChange
from vclock.asyncio import Console, Server, ServerConfig, connect, serve
from vclock.asyncio.client import _PeerWindow
from vclock.protocol import PeerJoined, PeerLeft, Peers, PeersChanged, Welcome

from .conftest import ClientProcess, RawClient, ServerProcess, wait_until

pytestmark = pytest.mark.timeout(60)


def hello(raw: RawClient, client_id: str, peers: str | None = None) -> Welcome:
    line: dict[str, object] = {"type": "hello", "v": 1, "id": client_id}
    if peers is not None:
        line["peers"] = peers
    raw.send_line(line)
    welcome = raw.expect("welcome")
    assert isinstance(welcome, Welcome) and welcome.id == client_id
    return welcome


def page_all(raw: RawClient, limit: int) -> list[str]:
    ids: list[str] = []
    after: str | None = None
    while True:
        raw.send_line({"type": "who", "after": after, "limit": limit})
        page = raw.read_frame()
        assert isinstance(page, Peers), f"expected a peers page, got {page!r}"
        assert len(page.ids) <= limit
        ids += page.ids
        if page.next is None:
            return ids
        after = page.next


def test_each_client_hears_of_the_others_as_its_hello_asked(
    start_server: Callable[..., ServerProcess], raw_client: Callable[[int], RawClient]
) -> None:
    server = start_server()
    old = raw_client(server.port)
    assert hello(old, "A").peers == []
    quiet = raw_client(server.port)
    assert hello(quiet, "Q", "none").peers == []
    watcher = raw_client(server.port)
    assert hello(watcher, "W", "batched").peers == ["A", "Q"]
    b = raw_client(server.port)
    assert hello(b, "B").peers == ["A", "Q", "W"]

    assert [old.read_frame() for _ in range(3)] == [
        PeerJoined(id="Q"),
        PeerJoined(id="W"),
        PeerJoined(id="B"),
    ]
    assert watcher.read_frame() == PeersChanged(joined=["B"])
    b.close()
    assert old.read_frame() == PeerLeft(id="B")
    assert watcher.read_frame() == PeersChanged(left=["B"])

    # Q was told nothing: the first frame after its welcome is the answer to who.
    assert page_all(quiet, 2) == ["A", "W"]
    assert quiet.received[1:] == [Peers(ids=["A"], next="Q"), Peers(ids=["W"])]


def test_paging_a_real_server_lists_every_client_once(
    start_server: Callable[..., ServerProcess], raw_client: Callable[[int], RawClient]
) -> None:
    server = start_server()
    ids = [f"c{index:02d}" for index in range(30)]
    clients = [raw_client(server.port) for _ in ids]
    for raw, client_id in zip(clients, ids, strict=True):
        hello(raw, client_id, "none")
    assert page_all(clients[0], 7) == ids[1:]
    assert page_all(clients[-1], 1000) == ids[:-1]
    clients[0].send_line({"type": "who", "limit": 0})
    error = clients[0].expect("error")
    assert error.code == "bad-frame" and "limit" in error.message


@pytest.fixture
async def lib_server() -> AsyncIterator[Server]:
    srv = await serve(ServerConfig(port=0, sync_interval=0.2), Console(None))
    try:
        yield srv
    finally:
        await srv.close()


async def test_the_library_fetches_peers_and_an_old_style_node_still_hears_joins(
    lib_server: Server,
) -> None:
    port = lib_server.port
    async with (
        connect("127.0.0.1", port, id="A") as a,
        connect("127.0.0.1", port, id="Q", peers="none") as q,
        connect("127.0.0.1", port, id="B", peers="batched") as b,
    ):
        async with asyncio.timeout(10):
            async for event in a:
                if event == PeerChange("B", joined=True):
                    break
        assert a.peers == ["Q", "B"]
        assert b.peers == ["A", "Q"]
        assert q.peers == []
        assert await q.fetch_peers() == ["A", "B"]
        assert await a.fetch_peers() == ["B", "Q"]
        async with connect("127.0.0.1", port, id="C", peers="none"):
            async with asyncio.timeout(10):
                async for event in b:
                    if event == PeerChange("C", joined=True):
                        break
            assert b.peers == ["A", "Q", "C"]
            assert await q.fetch_peers() == ["A", "B", "C"]
        await q.send("A", body="still works")
        assert q._events.empty()  # no peer notices were queued for Q


# vclock client --peers: the command-line client chooses its hello.peers


def test_a_client_with_peers_none_asks_who_and_sends_to_every_other_client(
    start_server: Callable[..., ServerProcess],
    start_client: Callable[..., ClientProcess],
    raw_client: Callable[[int], RawClient],
) -> None:
    server = start_server()
    quiet = start_client("Q", server.port, "--peers", "none", "--interval", "0.02-0.05")
    assert quiet.lines()[0].endswith("peers: not listed (--peers none: asked for with who)")
    others = [start_client(i, server.port, "--peers", "batched") for i in ("A", "B")]
    wait_until(
        lambda: quiet.count(r"send -> A ") and quiet.count(r"send -> B "),
        "Q to send to both A and B, found by who",
    )
    for other in others:
        other.stop()
    # Alone again: after the page it holds is refused (unknown-peer), it reports.
    before = quiet.count(r"report -> server ")
    wait_until(lambda: quiet.count(r"report -> server ") > before, "Q to report once alone")
    assert not quiet.count(r"peer (joined|left)")  # it asked for no notices, and got none
    # The server took the option: Q is listed, and said nothing of Q's peers to Q.
    watcher = raw_client(server.port)
    assert hello(watcher, "W").peers == ["Q"]


def test_the_command_line_client_passes_every_peers_mode_to_its_hello(
    start_server: Callable[..., ServerProcess],
    start_client: Callable[..., ClientProcess],
) -> None:
    server = start_server()
    first = start_client("A", server.port, "--peers", "all")
    batched = start_client("B", server.port, "--peers", "batched")
    assert batched.lines()[0].endswith("peers: A")
    start_client("C", server.port, "--peers", "all")
    first.wait_for_line(r"peer joined: C")
    # batched: one peers_changed, shown as the same line as a joined notice
    batched.wait_for_line(r"peer joined: C")
    assert first.count(r"peer joined: B") == 1


async def test_the_peer_window_walks_every_page_and_holds_one(lib_server: Server) -> None:
    port = lib_server.port
    ids = ["c1", "c2", "c3", "c4", "c5"]
    async with contextlib.AsyncExitStack() as stack:
        for client_id in ids:
            await stack.enter_async_context(connect("127.0.0.1", port, id=client_id))
        asker = connect("127.0.0.1", port, id="z", peers="none")  # sorts after them all
        node = await stack.enter_async_context(asker)
        window = _PeerWindow(node, size=2, sends=1)
        pages = [await window.choices() for _ in range(4)]
        assert pages == [["c1", "c2"], ["c3", "c4"], ["c5"], ["c1", "c2"]]
        window.gone("c1")
        assert window.ids == ["c2"]
