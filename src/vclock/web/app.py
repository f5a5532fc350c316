"""The dashboard's web app: one page, its event stream, a JSON state and the ShiViz log.

Routes (all ``GET``; the dashboard changes nothing, so other methods get 405):

``/``            the page (self-contained HTML: inline CSS and script, fetches nothing else)
``/events``      server-sent events: a ``snapshot``, then batched ``update`` messages
``/state``       the current state as JSON (clients, sync, rates, counts)
``/shiviz.log``  what the server saw, as a ShiViz/GoVector log (a download)

Gates sit in front: with a token, every request must carry it (``?token=`` once,
which sets a cookie, or an ``Authorization: Bearer`` header), else 401; a dashboard
bound to a loopback address answers only to a loopback ``Host`` header, so a web
page elsewhere cannot reach it by DNS rebinding; and the data routes (``/events``,
``/state``, ``/shiviz.log``) answer a request from another web page (an ``Origin``
that is not the dashboard's own, or ``Sec-Fetch-Site`` other than ``same-origin``
or ``none``) with 403, token or not, so no page elsewhere can make the server build
snapshots or hold streams for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import time
from collections.abc import Awaitable, Callable, Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import msgspec
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..net import host_from_header, is_loopback
from ..tools.drawing import fill_page, json_for_script, page_assets
from .render import legend, state_json

if TYPE_CHECKING:
    from .dashboard import Dashboard

ABORT = "vclock.abort"  # the scope extension dashboard._H11 adds: drops the connection

__all__ = ["create_app"]

#: What the browser may do with the page: nothing but run its own inline code and
#: open its own event stream.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
KEEPALIVE = 15.0  # seconds between comments on an idle event stream
PIECE = 16 * 1024  # bytes of a stream written at a time (see Dashboard: what a page costs)
DATA_PATHS = frozenset({"/events", "/state", "/shiviz.log"})


def create_app(dashboard: Dashboard) -> ASGIApp:
    """The ASGI app of ``dashboard``, gates included."""
    routes = [
        Route("/", _page(dashboard), methods=["GET", "HEAD"]),
        Route("/events", _EventStream(dashboard), methods=["GET"]),
        Route("/state", _state(dashboard), methods=["GET", "HEAD"]),
        Route("/shiviz.log", _shiviz(dashboard), methods=["GET", "HEAD"]),
    ]
    app: ASGIApp = Starlette(routes=routes)
    if dashboard.token is not None:
        app = TokenGate(app, dashboard.token, cookie=f"vclock_dashboard_{dashboard.port}")
    app = SameOriginGate(app)
    if dashboard.loopback:
        app = LoopbackHostGate(app)
    return SecurityHeaders(app)


# Routes


def _page(dashboard: Dashboard) -> Callable[[Request], Awaitable[Response]]:
    style, script = page_assets()
    files = resources.files("vclock.web")
    template = files.joinpath("dashboard.html").read_text("utf-8")
    page_script = files.joinpath("dashboard.js").read_text("utf-8")
    values = {
        "TITLE": html.escape(dashboard.title or "vclock", quote=True),
        "STYLE": style,
        "SCRIPT": script,
        "PAGE_SCRIPT": page_script,
        "LEGEND": legend(),
        "CONFIG": json_for_script({"events": "events"}),
    }
    body = fill_page(template, values).encode()

    async def page(request: Request) -> Response:
        return Response(
            body, media_type="text/html; charset=utf-8", headers={"content-security-policy": CSP}
        )

    return page


def _state(dashboard: Dashboard) -> Callable[[Request], Awaitable[Response]]:
    async def state(request: Request) -> Response:
        streams = {"open": dashboard.pages, "max": dashboard.max_streams}
        return JSONResponse({**state_json(dashboard.model, time.time()), "streams": streams})

    return state


def _shiviz(dashboard: Dashboard) -> Callable[[Request], Awaitable[Response]]:
    async def shiviz(request: Request) -> Response:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        return PlainTextResponse(
            dashboard.model.shiviz_log(),
            headers={"content-disposition": f'attachment; filename="vclock-{stamp}.log"'},
        )

    return shiviz


class _EventStream:
    """``/events``: a snapshot, then the dashboard's batched updates, as server-sent events.

    Each page gets its own bounded queue. A page that falls ``Dashboard.max_queue``
    updates behind is cut off; its browser reconnects and starts again from a snapshot.
    A page that stopped reading altogether is cut off the same way, and its
    connection aborted. Past ``Dashboard.max_streams`` open streams: 503.
    """

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.dashboard.full:
            limit = self.dashboard.max_streams
            response = PlainTextResponse(
                f"503 Service Unavailable: this dashboard already streams to {limit} pages,"
                f" its limit (vclock server --web-max-streams {limit}). Close one of them,"
                " or restart the server with a higher --web-max-streams.\n",
                status_code=503,
                headers={"retry-after": "10"},
            )
            await response(scope, receive, send)
            return
        abort = scope.get("extensions", {}).get(ABORT)
        subscriber = self.dashboard.subscribe()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await _body(send, b"retry: 2000\n\n")
            gone = asyncio.ensure_future(_disconnected(receive))
            try:
                while True:
                    getting = asyncio.ensure_future(subscriber.get())
                    done, _ = await asyncio.wait(
                        {getting, gone}, timeout=KEEPALIVE, return_when=asyncio.FIRST_COMPLETED
                    )
                    if gone in done:
                        getting.cancel()
                        return
                    if getting not in done:
                        getting.cancel()
                        await _body(send, b": keepalive\n\n")
                        continue
                    message = getting.result()
                    if message is None:  # the dashboard is closing, or this page fell behind
                        break
                    if not await _write(send, message, subscriber.cut, gone):
                        # It stopped reading and fell max_queue updates behind.
                        if abort is not None:
                            abort()
                            await asyncio.wait({gone}, timeout=5)
                        return
            finally:
                gone.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the page went away mid-write
        finally:
            self.dashboard.unsubscribe(subscriber)


async def _body(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _write(
    send: Send, message: bytes, cut: asyncio.Event, gone: asyncio.Future[None]
) -> bool:
    """Write ``message`` a piece at a time; False if the page was cut off (or went
    away) while a piece waited for the connection to take it."""
    for piece in pieces(message):
        writing = asyncio.ensure_future(_body(send, piece))
        cutting = asyncio.ensure_future(cut.wait())
        waits: set[asyncio.Future[Any]] = {writing, cutting, gone}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        cutting.cancel()
        if not writing.done():
            writing.cancel()
            return False
        writing.result()
    return True


def pieces(message: bytes, size: int = PIECE) -> Iterator[bytes]:
    """``message`` in pieces of at most ``size`` bytes (4 or more), each cut between
    UTF-8 characters: a client that decodes each HTTP chunk on its own (as the tests
    do) never sees half a character."""
    start = 0
    while start < len(message):
        end = min(start + size, len(message))
        while end < len(message) and message[end] & 0xC0 == 0x80:  # a continuation byte
            end -= 1
        yield message[start:end]
        start = end


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; ``data`` as JSON on one line."""
    return b"event: " + event.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


# Gates


class TokenGate:
    """Every request needs the token: in ``?token=``, a cookie, or a header.

    ``?token=`` on the page sets the cookie (an HMAC of the token, not the token) and
    redirects to the bare URL, so the token leaves the address bar. The cookie is
    ``HttpOnly`` and ``SameSite=Strict``. Headers: ``Authorization: Bearer TOKEN``
    or ``X-Vclock-Token: TOKEN``.
    """

    def __init__(self, app: ASGIApp, token: str, *, cookie: str) -> None:
        if not token:
            raise ValueError("the dashboard token must not be empty")
        self.app = app
        self.token = token.encode()
        self.cookie = cookie
        self.cookie_value = hmac.new(self.token, b"vclock dashboard", hashlib.sha256).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        query = request.query_params.get("token")
        if query is not None and self._is_token(query):
            if request.url.path == "/" and request.method in ("GET", "HEAD"):
                rest = [(k, v) for k, v in parse_qsl(request.url.query) if k != "token"]
                target = "./" + (f"?{urlencode(rest)}" if rest else "")
                response: Response = RedirectResponse(target, status_code=303)
                self._set_cookie(response)
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if self._has_cookie(request) or self._has_header(request):
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(
            "401 Unauthorized: this vclock dashboard needs its token. Open the URL the "
            "server printed (it ends in ?token=...), or send the header "
            "'Authorization: Bearer TOKEN'.\n",
            status_code=401,
            headers={"www-authenticate": 'Bearer realm="vclock dashboard"'},
        )
        await response(scope, receive, send)

    def _is_token(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token)

    def _has_cookie(self, request: Request) -> bool:
        value = request.cookies.get(self.cookie)
        return value is not None and hmac.compare_digest(value.encode(), self.cookie_value.encode())

    def _has_header(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and self._is_token(value.strip()):
            return True
        direct = request.headers.get("x-vclock-token")
        return direct is not None and self._is_token(direct)

    def _set_cookie(self, response: Response) -> None:
        response.set_cookie(
            self.cookie, self.cookie_value, httponly=True, samesite="strict", path="/"
        )


class SameOriginGate:
    """The data routes answer only the dashboard's own page, or a client that is no
    web page (curl, scripts: they send neither header), token or not.

    A browser names the page behind a request: ``Origin`` (on cross-origin fetches,
    EventSource included) and ``Sec-Fetch-Site``. Refused with 403: an ``Origin``
    other than this dashboard's (``http://`` + the ``Host`` asked for), and a
    ``Sec-Fetch-Site`` other than ``same-origin`` or ``none`` (typed by the user).
    ``same-site`` is refused too: a page on another port of the same host is another
    program. The page ``/`` itself stays reachable from a link.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in DATA_PATHS and _from_elsewhere(scope):
            response = PlainTextResponse(
                "403 Forbidden: the dashboard's data is served only to its own page; this"
                " request comes from another web page (its Origin or Sec-Fetch-Site header"
                " says so).\n",
                status_code=403,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _from_elsewhere(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    site = headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
    return origin.strip().lower() != own.lower()


class LoopbackHostGate:
    """A dashboard on a loopback address answers only to a loopback ``Host`` header.

    Otherwise a page on any site could point its own name at 127.0.0.1 (DNS
    rebinding) and read the dashboard from the visitor's browser.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_loopback(
            host_from_header(Request(scope).headers.get("host", ""))
        ):
            response = PlainTextResponse(
                "400 Bad Request: this dashboard is bound to localhost and answers only to "
                "a localhost, 127.0.0.1 or [::1] Host header.\n",
                status_code=400,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """No caching, no sniffing, no referrer, no framing: on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + self.headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
