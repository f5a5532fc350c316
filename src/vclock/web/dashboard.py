"""The dashboard's I/O layer: uvicorn on the server's own event loop, and the pushes.

:class:`Dashboard` watches a running :class:`vclock.asyncio.Server` through
``Server.observe`` (every hub action, after the server carried it out), keeps a
:class:`~vclock.web.model.LiveModel` of it, and serves the page with starlette and
uvicorn, as tasks on the loop the vclock server runs on: no threads, no polling.

**Batching and backpressure.** Actions only update the model. Every
``push_interval`` (0.1 s) a task takes what changed (new dots, changed rows, the
rates) and sends it to every open page as one server-sent event, so a page gets at
most 10 updates a second however busy the service is. Each page has a queue of
``max_queue`` updates; a page that falls that far behind is cut off, and its
browser reconnects and starts again from a snapshot. The vclock server never waits
for a page.

**What a page costs.** The snapshot a new page starts from is built at most once
per push and shared by every page that connects before the next one (a burst of
requests costs one snapshot, not one each). At most ``max_streams`` pages stream at
once (``ServerConfig.web_max_streams``); one more gets HTTP 503. A stream is
written in pieces, each waiting until the connection takes it, so a page that does
not read holds at most uvicorn's write buffer (64 KiB) and one piece, plus
references to the shared updates in its queue; once its queue is full its
connection is aborted, not closed politely (which would wait for it to read).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..asyncio.server import Server
from ..hub import Action
from ..net import is_loopback, parse_address
from .app import ABORT, create_app, sse
from .model import LiveModel
from .render import LiveDrawing, state_json

__all__ = ["Dashboard", "parse_address"]


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: the process that runs the vclock server owns
    SIGINT and SIGTERM, and stops the dashboard with :meth:`Dashboard.close`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _H11(H11Protocol):
    """uvicorn's h11 protocol, handing each request a way to abort its connection
    (``scope["extensions"]["vclock.abort"]``): uvicorn itself only closes, which
    waits, forever, for a page that does not read to take what is buffered."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        app = self.app

        async def with_abort(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})[ABORT] = transport.abort
            await app(scope, receive, send)

        self.app = with_abort


class _Subscriber:
    """One open page: a bounded queue of encoded events; None ends the stream.

    ``cut`` is set when it is closed, so a stream stuck writing to a page that does
    not read notices that the page fell too far behind."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(size + 1)
        self.size = size
        self.closed = False
        self.cut = asyncio.Event()

    def offer(self, message: bytes) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= self.size:  # too far behind: cut it off
            self.close()
            return
        self.queue.put_nowait(message)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cut.set()
            self.queue.put_nowait(None)

    async def get(self) -> bytes | None:
        return await self.queue.get()


class Dashboard:
    """A live web dashboard of a vclock server.

    Args:
        server: the running server to watch (:func:`vclock.asyncio.serve`).
        token: when set, every request must carry it (``?token=`` once, then a
            cookie; or ``Authorization: Bearer``); without it, 401.
        title: shown in the page's header; by default the server's address.
        max_events: dots kept on the live diagram; older ones scroll off.
        max_log_bytes: the size of the ShiViz log kept for the download (its start).
        push_interval: seconds between pushes to the pages.
        max_queue: updates a page may fall behind before it is cut off.
        max_streams: pages streaming at once (default: the server's
            ``ServerConfig.web_max_streams``); one more gets HTTP 503.

    Use ``await dashboard.start()`` then ``dashboard.url``; ``await dashboard.close()``.
    """

    def __init__(
        self,
        server: Server,
        *,
        token: str | None = None,
        title: str | None = None,
        max_events: int = 2000,
        max_log_bytes: int = 16 << 20,
        push_interval: float = 0.1,
        max_queue: int = 100,
        max_streams: int | None = None,
    ) -> None:
        if token is not None and not token:
            raise ValueError("the dashboard token must not be empty")
        self.server = server
        self.token = token
        self.title: str | None = title
        self.push_interval = push_interval
        self.max_queue = max_queue
        self.max_streams = server.config.web_max_streams if max_streams is None else max_streams
        if self.max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.model = LiveModel(
            max_events=max_events, max_log_bytes=max_log_bytes, resolve=server.hub.client_id
        )
        self.drawing = LiveDrawing(self.model)
        self.host = "127.0.0.1"
        self.port = 0
        self.pushes = 0  # updates sent (to all pages at once)
        self._subscribers: set[_Subscriber] = set()
        self._sent_version = -1
        self._snapshot: bytes | None = None  # shared by the pages until the next push
        self._last_push = 0.0
        self._unobserve: object = None
        self._uvicorn: _Uvicorn | None = None
        self._socket: socket.socket | None = None
        self._serving: asyncio.Task[None] | None = None
        self._pushing: asyncio.Task[None] | None = None

    @property
    def loopback(self) -> bool:
        """Bound to a loopback address (then only a loopback Host header is answered)."""
        return is_loopback(self.host)

    @property
    def url(self) -> str:
        """The page's address, with ``?token=`` when there is one."""
        if self._socket is None:
            raise RuntimeError("the dashboard is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?token={self.token}" if self.token else ""
        return f"http://{host}:{self.port}/{query}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (port 0: any free port) and start watching the server.

        Raises:
            OSError: the address cannot be bound.
        """
        if self._socket is not None:
            raise RuntimeError("the dashboard is already started")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host.strip("[]"), port), family=family)
        self.host, self.port = host.strip("[]"), self._socket.getsockname()[1]
        if self.title is None:
            self.title = f"server {self.server.config.host}:{self.server.port}"
        hub = self.server.hub
        self.model.seed(hub.clients, dict(hub.latest), time.time())
        self._unobserve = self.server.observe(self._observe)
        config = uvicorn.Config(
            create_app(self),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http=_H11,
            timeout_graceful_shutdown=2,
        )
        self._uvicorn = _Uvicorn(config)
        self._serving = asyncio.create_task(self._uvicorn.serve(sockets=[self._socket]))
        while not self._uvicorn.started:
            if self._serving.done():  # failed to start: raise its error
                await self._serving
                raise RuntimeError("the dashboard's web server stopped at start")
            await asyncio.sleep(0.01)
        self._pushing = asyncio.create_task(self._push_loop())

    async def close(self) -> None:
        """Stop watching, end every page's stream and stop the web server."""
        if callable(self._unobserve):
            self._unobserve()
            self._unobserve = None
        if self._pushing is not None:
            self._pushing.cancel()
            await asyncio.gather(self._pushing, return_exceptions=True)
            self._pushing = None
        for subscriber in list(self._subscribers):
            subscriber.close()
        if self._uvicorn is not None and self._serving is not None:
            self._uvicorn.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._serving), timeout=5)
            except TimeoutError:
                self._uvicorn.force_exit = True
                self._serving.cancel()
                await asyncio.gather(self._serving, return_exceptions=True)
            self._serving = None
        if self._socket is not None:
            self._socket.close()

    async def __aenter__(self) -> Dashboard:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Pages

    @property
    def full(self) -> bool:
        """``max_streams`` pages are streaming: a new one is refused."""
        return len(self._subscribers) >= self.max_streams

    def subscribe(self) -> _Subscriber:
        """A new page: its queue starts with a snapshot of everything (the one built
        since the last push, if any: the next push brings every page up to date)."""
        subscriber = _Subscriber(self.max_queue)
        subscriber.offer(self._snapshot or self._build_snapshot(time.time()))
        self._subscribers.add(subscriber)
        return subscriber

    def _build_snapshot(self, now: float) -> bytes:
        resets = self.drawing.resets
        diagram = self.drawing.snapshot(now)
        if self.drawing.resets != resets and self._subscribers:
            # The picture's frame changed (a new lane...): the open pages redraw too.
            state = state_json(self.model, now, since=self.model.table.version)
            message = sse("update", {"state": state, "diagram": diagram})
            for other in list(self._subscribers):
                other.offer(message)
        self._snapshot = sse("snapshot", {"state": state_json(self.model, now), "diagram": diagram})
        return self._snapshot

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        subscriber.closed = True
        self._subscribers.discard(subscriber)

    @property
    def pages(self) -> int:
        """Pages with an open event stream."""
        return len(self._subscribers)

    # Private methods

    def _observe(self, action: Action) -> None:
        self.model.observe(action, time.time())

    async def _push_loop(self) -> None:
        while True:
            await asyncio.sleep(self.push_interval)
            self.push(time.time())

    def push(self, now: float) -> None:
        """Send what changed since the last push to every page (the push task calls this)."""
        changes = self.model.diagram.take_changes()
        if not self._subscribers:
            self._sent_version = self.model.table.version
            self._snapshot = None
            return
        diagram = self.drawing.step(changes, now)
        fresh_rows = self.model.table.version > self._sent_version
        if diagram is not None or fresh_rows:
            # What changed goes to the open pages only: a page opened later needs a
            # new snapshot. (Rates alone do not count: the next push brings them.)
            self._snapshot = None
        elif now - self._last_push < 1.0:
            return  # nothing new; the rates still refresh once a second
        update = {
            "state": state_json(self.model, now, since=self._sent_version),
            "diagram": diagram,
        }
        self._sent_version = self.model.table.version
        self._last_push = now
        message = sse("update", update)
        self.pushes += 1
        for subscriber in list(self._subscribers):
            subscriber.offer(message)
