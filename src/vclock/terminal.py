"""Text from the network, made safe to print on one terminal line.

Clients choose clock ids (any string up to the id limit), and msgspec's error
messages quote what they sent; servers choose the messages their clients print.
Printed raw, a newline forges a console line, an escape sequence (ESC, or the
one-byte C1 CSI ``\\x9b``) rewrites the screen, and a bidi override (U+202E)
reorders what the reader sees. :func:`one_line` escapes every character that is
not printable, Python's way (``str.isprintable``: control, format, separator
other than space, surrogate, private-use and unassigned code points), as
``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``. Printable text, the seed's console
lines among it, comes out unchanged.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """``text`` with every non-printable character escaped: one line, no control codes."""
    if text.isprintable():  # the common case, in C
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


__all__ = ["one_line"]
