"""One answer to "is this address this machine only?" for the server, the
dashboard and the command line (three copies used to disagree on 127.0.0.2)."""

from __future__ import annotations

import pytest

from vclock.net import is_loopback


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "127.0.0.1", "127.0.0.2", "::1", "[::1]"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "::", "example.org", "", "[fe80::1]"])
def test_other_hosts(host: str) -> None:
    assert not is_loopback(host)
