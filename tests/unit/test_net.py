"""One answer to "is this address this machine only?" for the server, the
dashboard and the command line (three copies used to disagree on 127.0.0.2), and
one reading of a ``Host`` header (the dashboard's DNS-rebinding gate)."""

from __future__ import annotations

import pytest

from vclock.net import host_from_header, is_loopback


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "127.0.0.1", "127.0.0.2", "::1", "[::1]"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "::", "example.org", "", "[fe80::1]"])
def test_other_hosts(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(
    ("header", "host", "loopback"),
    [
        ("127.0.0.2", "127.0.0.2", True),
        ("127.0.0.2:8080", "127.0.0.2", True),
        ("::1", "::1", True),  # a bare IPv6 address: its colons are not a port
        ("localhost", "localhost", True),
        (" LocalHost:8080 ", "localhost", True),
        ("[::1]", "::1", True),
        ("[::1]:8080", "::1", True),
        ("example.com:80", "example.com", False),
        ("example.com", "example.com", False),
        ("[fe80::1]:80", "fe80::1", False),
        ("[::1", "", False),  # unclosed: no host, not a way round the gate
        ("", "", False),
    ],
)
def test_a_host_header_names_its_host_without_the_port(
    header: str, host: str, loopback: bool
) -> None:
    assert host_from_header(header) == host
    assert is_loopback(host_from_header(header)) is loopback
