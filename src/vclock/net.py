"""Network helpers shared by the server, the client, the dashboard and the command line."""

from __future__ import annotations

import ipaddress

#: Bytes the asyncio client reads from its connection at a time (also the limit of
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


def parse_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT``, ``:PORT`` or ``PORT`` as (host, port).

    Raises:
        ValueError: not an address, or a port outside 0-65535.
    """
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPV6]:PORT, got {text!r}")
    elif ":" in text:
        host, _, port = text.rpartition(":")
    else:
        host, port = "", text
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port from 0 to 65535, got {text!r}")
    return host or default_host, int(port)
