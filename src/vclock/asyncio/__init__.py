"""The asyncio I/O layer: a client library and a server around the sans-I/O core.

Embed a client in any asyncio program: :func:`connect` says hello, waits for the
server's welcome and gives a :class:`Client`::

    import asyncio
    import vclock.asyncio

    async def main():
        async with vclock.asyncio.connect("127.0.0.1", 4999, id="A") as client:
            await client.send("B", body={"hello": "world"})
            async for event in client:  # until the session ends
                print(event)

    asyncio.run(main())

Iterating over a client yields the events defined in :mod:`vclock`:
``vclock.Message`` (a peer's message), ``vclock.Synced`` (a synchronization
cycle), ``vclock.PeerChange`` (a client joined or left), ``vclock.ServerError``
(the server refused one of our frames), ``vclock.Welcomed`` (again after a
reconnect), ``vclock.Disconnected`` and ``vclock.Acked`` (with
``reconnect=True``), and ``vclock.Goodbye`` (the server ended the session).
:func:`run` is the ``vclock client`` command's behaviour.

Run a server with :func:`serve` and a :class:`ServerConfig`, as ``vclock
server`` does; docs/operations.md explains each setting.
"""

from .client import Client, ConnectError, SessionEnded, connect, run
from .server import Console, Server, ServerConfig, serve

__all__ = [
    "ConnectError",
    "Console",
    "Client",
    "Server",
    "ServerConfig",
    "SessionEnded",
    "connect",
    "run",
    "serve",
]
