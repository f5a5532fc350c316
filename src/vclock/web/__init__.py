"""A live web dashboard for a vclock server: clients, clocks, syncs and messages.

::

    server = await vclock.asyncio.serve(ServerConfig(), Console())
    dashboard = Dashboard(server)          # Dashboard(server, token="...") to require one
    await dashboard.start("127.0.0.1", 8080)
    print(dashboard.url)
    ...
    await dashboard.close()

Needs the ``web`` extra (starlette, uvicorn). See docs/dashboard.md.
"""

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        f"the vclock dashboard needs starlette and uvicorn ({exc.name} is missing):"
        " pip install 'vclock[web]'"
    ) from exc

from .clients_table import ClientView, SyncView
from .dashboard import Dashboard, parse_address
from .model import LiveModel

__all__ = ["ClientView", "Dashboard", "LiveModel", "SyncView", "parse_address"]
