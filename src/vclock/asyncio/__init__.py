"""The asyncio I/O layer: a server and a client library around the sans-I/O core."""

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
