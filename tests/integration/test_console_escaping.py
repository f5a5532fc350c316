"""Console forging: what a client (or a server) chooses is printed as one safe line.

A hostile peer puts a newline, a carriage return, ESC and C1 escape sequences, DEL
and a bidi override into a field the server refuses (msgspec's error message
quotes it) and into a clock id (relayed to other clients, which print it). The
server's stdout, and the stdout and stderr of a ``vclock client``, must gain no
raw control or format character and no line the peer wrote.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import msgspec
import pytest

from .conftest import HOST, Process, Processes, RawClient, vclock_argv, wait_until

pytestmark = pytest.mark.timeout(60)

#: A forged console line, wrapped in terminal tricks.
FORGED = "H (127.0.0.1:1) disconnected"
HOSTILE = f"\n{FORGED}\r\x1b[2J\x9b31m\u202e\x7f"


def assert_clean(lines: list[str], what: str) -> None:
    for line in lines:
        assert line.isprintable(), f"{what} printed a raw control character: {line!r}"
        assert not line.startswith(FORGED), f"{what} printed a forged line: {line!r}"


def test_the_server_console_escapes_what_clients_choose(processes: Processes, raw_client) -> None:
    server = processes.server("--data", ":memory:")
    b = processes.client("B", server.port)
    raw: RawClient = raw_client(server.port)
    raw.hello("H")
    b.wait_for_line(r"peer joined: H\s")

    # A refused field: msgspec's message quotes it.
    raw.send_line(msgspec.json.encode({"type": "sned" + HOSTILE, "to": "B"}))
    assert raw.expect("error").code == "bad-frame"
    _, refused = server.wait_for_line(r" refused: bad-frame: Invalid value 'sned(.*)' - at")
    assert refused[1] == "\\x0aH (127.0.0.1:1) disconnected\\x0d\\x1b[2J\\x9b31m\\u202e\\x7f"
    # A clock id: printed by the server, and relayed to B, which prints it.
    clock = {"H": 2, HOSTILE: 1}
    raw.send_line(msgspec.json.encode({"type": "send", "to": "B", "seq": 2, "clock": clock}))
    server.wait_for_line(r"^  H for B: ")
    b.wait_for_line(r"receive <- H \(H#2\)")

    assert_clean(server.lines(), "the server")
    assert server.count(r"^H \(") == 0, server.describe()  # H is still connected
    assert_clean(b.lines() + b.err_lines(), "client B")


# A hostile server, for what the client prints from it: error messages, reasons.


@pytest.fixture
def hostile_server() -> Iterator[int]:
    """A fake server: welcomes one client, sends it a hostile error and bye."""
    listener = socket.create_server((HOST, 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the hello
            frames = [
                {"type": "welcome", "v": 1, "id": "B", "peers": [], "sync_interval": 5,
                 "clock": {}},
                {"type": "error", "code": "bad-frame", "message": "oops" + HOSTILE},
            ]  # fmt: skip
            conn.sendall(b"".join(msgspec.json.encode(f) + b"\n" for f in frames))
            conn.recv(65536)  # the client's first frame: it is running
            conn.sendall(msgspec.json.encode({"type": "bye", "reason": "gone" + HOSTILE}) + b"\n")
            conn.recv(65536)  # until the client closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(5)


def test_the_client_escapes_what_the_server_sends(
    processes: Processes, hostile_server: int
) -> None:
    argv = vclock_argv("client", "--port", str(hostile_server), "--id", "B", "--interval", "0.1")
    client = processes.add(lambda: Process("client B", argv, cwd=processes.cwd))
    assert client.wait() == 0
    wait_until(lambda: client.err_lines(), what="the server error on stderr")
    assert re.search(r"server error bad-frame: oops\\x0aH \(127", client.err_lines()[0])
    assert re.search(r"Server closed the session \(gone\\x0aH", client.lines()[-1])
    assert_clean(client.lines() + client.err_lines(), "the client")
