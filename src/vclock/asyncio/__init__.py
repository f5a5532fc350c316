"""The asyncio I/O layer: a server and a client library around the sans-I/O core."""

from .client import ConnectError, Node, SessionEnded, connect, run
from .server import Console, Server, ServerConfig, serve

__all__ = [
    "ConnectError",
    "Console",
    "Node",
    "Server",
    "ServerConfig",
    "SessionEnded",
    "connect",
    "run",
    "serve",
]
