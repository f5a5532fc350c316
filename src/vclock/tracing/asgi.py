"""The Tracer around an ASGI application: the clock travels in an HTTP header.

:class:`TracingMiddleware` wraps any ASGI app (Starlette, FastAPI, Django's
ASGI handler...): a request that carries the :data:`HEADER` becomes a receive
of the tracer (:meth:`~vclock.tracing.Tracer.receive_header`), and its response
a send, whose clock goes back in the same header of the response. Requests
without the header pass through untraced. Clients put the header on with
:meth:`~vclock.tracing.Tracer.send_header` and read the answer's with
:meth:`~vclock.tracing.Tracer.receive_header`, whatever their HTTP library (see
docs/tracing.md). Plain ASGI: this module imports no web framework.

The tracer writes its log synchronously, one short write per request and
response, on the event loop's thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .tracer import Tracer, UnpackError

__all__ = ["HEADER", "TracingMiddleware"]

#: The header that carries a clock, in requests and responses.
HEADER = "x-vclock"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TracingMiddleware:
    """Wrap ``app``: traced requests are receives of ``tracer``, their responses sends.

    A request whose header is not a clock gets ``400 Bad Request`` (naming what was
    wrong), and the app does not see it; nothing is logged.
    """

    def __init__(self, app: ASGIApp, tracer: Tracer, *, header: str = HEADER) -> None:
        self.app = app
        self.tracer = tracer
        self.header = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = next((v for k, v in scope.get("headers", []) if k.lower() == self.header), None)
        if value is None:
            await self.app(scope, receive, send)
            return
        what = f"{scope.get('method', 'GET')} {scope.get('path', '/')}"
        try:
            self.tracer.receive_header(f"request {what}", value)
        except UnpackError as exc:
            await _bad_request(send, f"bad {self.header.decode()} header: {exc}")
            return

        async def traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message.get("status", 200)
                clock = self.tracer.send_header(f"response {status} to {what}")
                headers = [*message.get("headers", []), (self.header, clock.encode("ascii"))]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, traced)


async def _bad_request(send: Send, text: str) -> None:
    body = text.encode("utf-8", "replace")
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
