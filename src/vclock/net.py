"""Network helpers shared by the server, the client, the dashboard and the command line."""

from __future__ import annotations

import ipaddress

#: Bytes a server or client reads from a connection at a time (also the limit of
#: asyncio's stream buffer); the line reader, not this, bounds a frame.
READ_CHUNK = 64 * 1024


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is
    this machine only: ``localhost`` or any loopback address (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_from_header(value: str) -> str:
    """The host an HTTP ``Host`` header names, without its port, lowercase.

    ``name``, ``name:port``, ``[IPv6]`` and ``[IPv6]:port``; a bare IPv6 address
    (more than one colon) has no port. An unclosed bracket names no host: ``""``.
    """
    name = value.strip().lower()
    if name.startswith("["):
        return name[1 : name.find("]")] if "]" in name else ""
    return name.rsplit(":", 1)[0] if name.count(":") == 1 else name
