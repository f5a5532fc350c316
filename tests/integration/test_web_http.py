"""The live dashboard's web app over real HTTP on 127.0.0.1:0, with a real server
and real clients (its model and drawing: tests/unit/test_web.py).

No HTTP client library is needed: :func:`request` speaks HTTP/1.1 over asyncio streams.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from vclock.asyncio import Console, ServerConfig, connect, serve
from vclock.clock import VectorClock
from vclock.hub import SyncCycle
from vclock.tracing import check_run, parse_runs
from vclock.web import Dashboard

from ..helpers import async_wait_until, unchunk


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


async def request(
    port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> Reply:
    """One HTTP/1.1 request to 127.0.0.1:port, read to the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items()), "", ""]
    writer.write("\r\n".join(lines).encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode().split("\r\n")
    parsed: dict[str, str] = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        parsed[key.strip().lower()] = (
            parsed[key.strip().lower()] + ", " if key.strip().lower() in parsed else ""
        ) + value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        body = unchunk(body)
    return Reply(int(status_line.split()[1]), parsed, body)


class EventStream:
    """The page's event stream, read as a browser would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = b""

    @classmethod
    async def open(cls, port: int, headers: dict[str, str] | None = None) -> EventStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = {"Host": f"127.0.0.1:{port}", "Accept": "text/event-stream", **(headers or {})}
        lines = ["GET /events HTTP/1.1", *(f"{k}: {v}" for k, v in head.items()), "", ""]
        writer.write("\r\n".join(lines).encode())
        stream = cls(reader, writer)
        while b"\r\n\r\n" not in stream.buffer:
            stream.buffer += await asyncio.wait_for(reader.read(65536), 10)
        top, _, stream.buffer = stream.buffer.partition(b"\r\n\r\n")
        assert top.startswith(b"HTTP/1.1 200"), top
        assert b"text/event-stream" in top
        return stream

    async def events(self, seconds: float) -> list[tuple[str, Any]]:
        """The events that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(self.reader.read(1 << 20), left)
            except TimeoutError:
                break
            if not chunk:
                break
            self.buffer += chunk
        return self._parse()

    async def next_event(self, timeout: float = 10) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            events = self._parse(limit=1)
            if events:
                return events[0]
            left = deadline - time.monotonic()
            assert left > 0, "no event in time"
            self.buffer += await asyncio.wait_for(self.reader.read(1 << 20), left)

    def _parse(self, limit: int | None = None) -> list[tuple[str, Any]]:
        text = _unchunk_stream(self)
        out = []
        while "\n\n" in text and (limit is None or len(out) < limit):
            block, text = text.split("\n\n", 1)
            fields = dict(
                line.split(": ", 1) for line in block.split("\n") if ": " in line and line[0] != ":"
            )
            if "data" in fields:
                out.append((fields.get("event", "message"), msgspec.json.decode(fields["data"])))
        self.text = text
        return out

    def close(self) -> None:
        self.writer.close()


def _unchunk_stream(stream: EventStream) -> str:
    """Move whole chunks from the raw buffer to the decoded text."""
    text = getattr(stream, "text", "")
    data = stream.buffer
    while True:
        size_line, sep, rest = data.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if len(rest) < size + 2:
            break
        text += rest[:size].decode()
        data = rest[size + 2 :]
    stream.buffer = data
    return text


@pytest.fixture
async def service() -> AsyncIterator[Dashboard]:
    server = await serve(ServerConfig(port=0, sync_interval=0.2), Console(None))
    dashboard = Dashboard(server)
    try:
        await dashboard.start()
        yield dashboard
    finally:
        await dashboard.close()
        await server.close()


@pytest.fixture
async def guarded() -> AsyncIterator[Dashboard]:
    server = await serve(ServerConfig(port=0, sync_interval=0.2), Console(None))
    dashboard = Dashboard(server, token="s3cret-token")
    try:
        await dashboard.start()
        yield dashboard
    finally:
        await dashboard.close()
        await server.close()


def _network_references(page: str) -> list[str]:
    """Anything in a page that could make a browser fetch, but its own event stream."""
    patterns = [
        r"https?://",
        r"<script[^>]*\ssrc\s*=",
        r"<link\b",
        r"<img\b",
        r"<iframe\b",
        r"@import",
        r"url\(\s*['\"]?(?!#)",
        r"\bfetch\(|XMLHttpRequest|WebSocket|sendBeacon",
    ]
    return [p for p in patterns if re.search(p, page, re.IGNORECASE)]


async def test_the_page_is_one_self_contained_file_with_a_strict_policy(service: Dashboard):
    assert service.url == f"http://127.0.0.1:{service.port}/"
    reply = await request(service.port, "/")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in reply.headers["content-security-policy"]
    assert "connect-src 'self'" in reply.headers["content-security-policy"]
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["cache-control"] == "no-store"
    page = reply.text
    assert _network_references(page) == []
    assert "Content-Security-Policy" in page  # in the page too, as offline
    assert "new EventSource(config.events)" in page and '"events":"events"' in page
    assert "var VClockDiagram" in page  # the offline diagram's script, inlined
    assert "{{" not in page
    assert 'href="shiviz.log"' in page


async def test_the_dashboard_is_read_only(service: Dashboard):
    for path in ("/", "/state", "/shiviz.log"):
        assert (await request(service.port, path, method="POST")).status == 405
    assert (await request(service.port, "/nothing")).status == 404


async def test_it_answers_only_to_a_localhost_host_header(service: Dashboard):
    rebound = await request(
        service.port, "/state", headers={"Host": f"evil.example:{service.port}"}
    )
    assert rebound.status == 400 and "localhost" in rebound.text
    for host in ("localhost", "127.0.0.1", "[::1]"):
        ok = await request(service.port, "/state", headers={"Host": f"{host}:{service.port}"})
        assert ok.status == 200, host


async def test_with_a_token_every_request_needs_it(guarded: Dashboard):
    port = guarded.port
    assert guarded.url == f"http://127.0.0.1:{port}/?token=s3cret-token"
    for path in ("/", "/events", "/state", "/shiviz.log", "/?token=wrong"):
        reply = await request(port, path)
        assert reply.status == 401, path
        assert "needs its token" in reply.text and "Bearer" in reply.headers["www-authenticate"]

    # ?token= on the page: a cookie (not the token itself), and the token leaves the URL
    first = await request(port, "/?token=s3cret-token")
    assert first.status == 303 and first.headers["location"] == "./"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "s3cret" not in cookie
    pair = cookie.split(";", 1)[0]
    assert (await request(port, "/", headers={"Cookie": pair})).status == 200
    assert (await request(port, "/state", headers={"Cookie": pair})).status == 200
    forged = pair.split("=", 1)[0] + "=" + "0" * 64
    assert (await request(port, "/state", headers={"Cookie": forged})).status == 401

    bearer = {"Authorization": "Bearer s3cret-token"}
    assert (await request(port, "/shiviz.log", headers=bearer)).status == 200
    assert (await request(port, "/state", headers={"X-Vclock-Token": "s3cret-token"})).status == 200
    assert (await request(port, "/state?token=s3cret-token")).status == 200
    stream = await EventStream.open(port, bearer)
    kind, _ = await stream.next_event()
    assert kind == "snapshot"
    stream.close()


async def test_the_state_and_the_shiviz_log_follow_real_clients(service: Dashboard):
    port = service.server.port
    nodes = [await connect("127.0.0.1", port, id=c) for c in "ABC"]
    try:
        for n in range(5):
            for node in nodes:
                others = [x.id for x in nodes if x is not node]
                await node.send(others[n % 2])
        await nodes[0].report()
        await async_wait_until(
            lambda: sum(r.sends + r.reports for r in service.model.table.clients.values()) == 16,
            "the dashboard to count 15 sends and a report",
        )
        state = msgspec.json.decode((await request(service.port, "/state")).body)
        shown = {c["id"]: c["clock"] for c in state["clients"]}
        assert shown == {c: service.server.hub.latest[c].to_dict() for c in "ABC"}
        assert state["connected"] == 3

        log = await request(service.port, "/shiviz.log")
        assert log.status == 200 and "attachment" in log.headers["content-disposition"]
        [run] = parse_runs(log.text)
        check_run(run.records)
        sends = [r for r in run.records if r.description.startswith("send")]
        assert len(sends) == 16
    finally:
        for node in nodes:
            await node.close()


class PageModel:
    """What dashboard.js does with the diagram messages, for the dot ids."""

    def __init__(self) -> None:
        self.dots: set[str] = set()
        self.upto = 0

    def apply(self, d: dict[str, Any]) -> None:
        if d["kind"] == "reset":
            self.dots = set(re.findall(r'<g class="event[^"]*" data-id="([^"]+)"', d["diagram"]))
            self.upto = d["upto"]
            return
        self.dots -= set(d["removed"])
        for serial, fragment in d["events"]:
            if serial > self.upto:
                [dot] = re.findall(r'<g class="event[^"]*" data-id="([^"]+)"', fragment)
                assert dot not in self.dots
                self.dots.add(dot)
        self.upto = max(self.upto, d["upto"])


async def test_the_event_stream_sends_a_snapshot_then_batched_updates(service: Dashboard):
    port = service.server.port
    nodes = [await connect("127.0.0.1", port, id=c) for c in "ABC"]
    stream = await EventStream.open(service.port)
    try:
        kind, snapshot = await stream.next_event()
        assert kind == "snapshot"
        assert {c["id"] for c in snapshot["state"]["clients"]} == {"A", "B", "C"}
        assert snapshot["diagram"]["kind"] == "reset"

        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < 1.0:  # a few hundred messages a second
            for node in nodes:
                await node.send(random.choice([x.id for x in nodes if x is not node]))
                sent += 1
            await asyncio.sleep(0.005)  # pacing: a few hundred messages a second
        elapsed = time.monotonic() - started
        events = await stream.events(0.6)
        updates = [data for kind, data in events if kind == "update"]
        assert sent >= 200
        # at most one push per 0.1 s, however many messages: batched
        assert 3 <= len(updates) <= (elapsed + 0.6) / service.push_interval + 2
        assert all(u["state"]["rates"].keys() >= {"messages", "deliveries"} for u in updates)

        # A page applying the snapshot and the updates holds the model's window.
        page = PageModel()
        page.apply(snapshot["diagram"])
        for update in updates:
            if update["diagram"]:
                page.apply(update["diagram"])
        await async_wait_until(
            lambda: service.model.table.rates.rates(time.time())["messages"] == 0,
            "the message rate to fall to 0",
        )
        for _, update in await stream.events(0.4):
            if update["diagram"]:
                page.apply(update["diagram"])
        assert page.dots == {e.event.id for e in service.model.diagram.window}
        assert page.dots >= {f"{c}:{n}" for c in "ABC" for n in (1, 2, 3)}
    finally:
        stream.close()
        for node in nodes:
            await node.close()


async def test_a_page_that_falls_behind_is_cut_off_not_waited_for(service: Dashboard):
    service.max_queue = 3
    subscriber = service.subscribe()  # never read
    try:
        for n in range(10):
            service.model.observe(SyncCycle(n + 1, 0, VectorClock(), ()), time.time())
            service.push(time.time() + n)  # a push per "second"
        assert subscriber.closed
        assert service.pages == 1  # until its stream notices; the server never waited
    finally:
        service.unsubscribe(subscriber)
    assert service.pages == 0


async def test_close_ends_open_streams_and_frees_the_port(service: Dashboard):
    stream = await EventStream.open(service.port)
    await stream.next_event()
    port = service.port
    await service.close()
    rest = await asyncio.wait_for(stream.reader.read(), 5)  # the stream ends
    assert rest.endswith(b"0\r\n\r\n")
    stream.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_busy_port_is_an_oserror():
    server = await serve(ServerConfig(port=0), Console(None))
    first, second = Dashboard(server), Dashboard(server)
    try:
        await first.start()
        with pytest.raises(OSError):
            await second.start(port=first.port)
    finally:
        await first.close()
        await second.close()
        await server.close()
