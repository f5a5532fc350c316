"""Lines that cost the server without being frames: blank-line floods, and a
last line cut off by a half-close."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from vclock.protocol import Error

from .conftest import Bystanders, Processes, frames_until_closed

pytestmark = pytest.mark.timeout(120)


# Item 9: blank lines spend rate-limit tokens


def test_a_blank_line_flood_is_rate_limited_and_closed_by_the_error_budget(
    processes: Processes, tmp_path: Path, raw_client
) -> None:
    server = processes.server("--data", ":memory:", "--max-rate", "50", "--max-errors", "5")
    others = Bystanders(processes, server, tmp_path / "logs")
    before = others.counts()
    welcomed, early = raw_client(server.port), raw_client(server.port)
    welcomed.hello("Blank")
    for raw in (welcomed, early):  # after welcome, and before hello
        raw.send_bytes(b"\n" * 100_000)
        frames = frames_until_closed(raw)
        codes = [f.code for f in frames if isinstance(f, Error)]
        assert codes == ["rate-limited"] * 5 + ["too-many-errors"], frames
        assert "blank line" in frames[0].message, frames[0]  # type: ignore[union-attr]
        server.wait_for_line(rf"^{re.escape(raw.address)} refused: too-many-errors: ")
    others.assert_unharmed(before)


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
