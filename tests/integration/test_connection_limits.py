"""A last line cut off by the end of the stream (a half-close) gets its bad-frame."""

from __future__ import annotations

import re
import socket

import pytest

from vclock.protocol import Error

from .conftest import Processes, frames_until_closed

pytestmark = pytest.mark.timeout(120)


# Item 17: a last line cut off by the end of the stream gets its bad-frame


def test_a_torn_last_line_before_a_half_close_gets_bad_frame(
    processes: Processes, raw_client
) -> None:
    server = processes.server("--data", ":memory:")
    for hello in (True, False):
        raw = raw_client(server.port)
        if hello:
            raw.hello("Torn")
        raw.send_bytes(b'{"type":"report","seq":1,"clo')
        raw.sock.shutdown(socket.SHUT_WR)  # we are done writing, still reading
        frames = frames_until_closed(raw)
        errors = [f for f in frames if isinstance(f, Error)]
        assert [e.code for e in errors] == ["bad-frame"], frames
        assert "connection closed in the middle of a 29-byte frame" in errors[0].message
        server.wait_for_line(
            rf"^{re.escape(raw.address)} refused: bad-frame: connection closed in the middle"
        )
