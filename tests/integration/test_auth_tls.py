"""Authentication (--auth-file) and TLS (--tls-cert/--tls-key, client --tls-ca).

A refused hello says ``auth-failed`` with one message whatever was wrong (a bad
token, an unknown id, no token), then the server closes the connection. TLS
certificates come from trustme, made by the test itself.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from vclock.auth import hash_token
from vclock.protocol import Error

from .conftest import (
    Process,
    Processes,
    RawClient,
    ServerProcess,
    frames_until_closed,
    vclock_argv,
    wait_for_exchanges,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


def refused(raw: RawClient, hello: dict[str, Any]) -> Error:
    """Send ``hello``; expect exactly one auth-failed error, then the close."""
    raw.send_line({"type": "hello", "v": 1, **hello})
    frames = frames_until_closed(raw)
    assert len(frames) == 1 and isinstance(frames[0], Error), frames
    assert frames[0].code == "auth-failed", frames[0]
    return frames[0]


def failed_client(processes: Processes, port: int, *args: str) -> Process:
    """A client process that is expected to give up: it exits 1 with a clear error."""
    proc = processes.add(
        lambda: Process("client", vclock_argv("client", "--port", str(port), *args))
    )
    assert proc.wait() == 1, proc.describe()
    errors = "\n".join(proc.err_lines())
    assert "Traceback" not in errors, proc.describe()
    assert errors.startswith("Error: "), proc.describe()
    return proc


def hash_with_cli(token: str) -> str:
    out = subprocess.run(
        vclock_argv("hash-token", "--token", token),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert re.fullmatch(r"scrypt\$[0-9a-f]{32}\$[0-9a-f]{64}", out), out
    return out


# Authentication


def test_tokens_per_id_plain_and_hashed(
    processes: Processes,
    start_server,
    start_client,
    raw_client: Callable[[int], RawClient],
    tmp_path: Path,
) -> None:
    auth = tmp_path / "tokens"
    auth.write_text(f"# id token\nA token-a\nB {hash_with_cli('token-b')}\n")
    server: ServerProcess = start_server("--data", ":memory:", "--auth-file", str(auth))
    logs = tmp_path / "logs"
    start_client("A", server.port, "--token", "token-a", "--log", str(logs))
    start_client("B", server.port, "--token", "token-b", "--log", str(logs))
    wait_for_exchanges(logs, ["A", "B"], n=2)

    # Every way of being wrong gets the same answer.
    wrong = {
        "wrong token": {"id": "A", "token": "nope"},
        "unknown id": {"id": "Z", "token": "token-a"},
        "no token": {"id": "B"},
        "no id": {"token": "token-a"},
        # Nobody takes another client's id with their own token.
        "B's token for A": {"id": "A", "token": "token-b"},
        "A's token for B": {"id": "B", "token": "token-a"},
    }
    messages = {case: refused(raw_client(server.port), h).message for case, h in wrong.items()}
    assert len(set(messages.values())) == 1, messages
    assert "token" not in next(iter(messages.values())).lower(), messages
    wait_until(
        lambda: server.count(r"refused: auth-failed: authentication failed$") == len(wrong),
        what="the console to show each refusal",
    )
    # The right token still works after all that; the id is taken, so: duplicate-id.
    raw = raw_client(server.port)
    raw.send_line({"type": "hello", "v": 1, "id": "A", "token": "token-a"})
    frame = raw.expect("error")
    assert frame.code == "duplicate-id", frame

    # The command-line client reports the refusal and exits 1, without a traceback.
    proc = failed_client(processes, server.port, "--id", "A", "--token", "bad")
    assert "authentication failed" in "\n".join(proc.err_lines()), proc.describe()


def test_shared_secret_lets_any_id_in_and_nobody_without_it(
    start_server, start_client, raw_client, tmp_path: Path
) -> None:
    auth = tmp_path / "tokens"
    auth.write_text(f"* {hash_token('shared')}\n")
    server = start_server("--data", ":memory:", "--auth-file", str(auth))
    logs = tmp_path / "logs"
    for client_id in ("P", "Q"):
        start_client(client_id, server.port, "--token", "shared", "--log", str(logs))
    wait_for_exchanges(logs, ["P", "Q"], n=2)
    wrong = refused(raw_client(server.port), {"id": "R", "token": "guess"})
    missing = refused(raw_client(server.port), {"id": "R"})
    assert wrong.message == missing.message
    raw = raw_client(server.port)
    raw.send_line({"type": "hello", "v": 1, "id": "R", "token": "shared"})
    welcome = raw.expect("welcome")
    assert welcome.id == "R" and set(welcome.peers) == {"P", "Q"}, welcome


def test_listening_beyond_loopback_without_auth_warns(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        for extra, warned in (([], True), (["--auth-file", str(tmp_path / "t")], False)):
            (tmp_path / "t").write_text("* secret\n")
            argv = vclock_argv(
                "server", "--host", "0.0.0.0", "--port", "0", "--data", ":memory:", *extra
            )
            server = procs.add(lambda argv=argv: Process("server", argv))
            server.wait_for_line(r"^vclock server listening on 0\.0\.0\.0:\d+ ")
            server.stop()
            stderr = "\n".join(server.err_lines())
            assert ("warning: listening on 0.0.0.0 without --auth-file" in stderr) == warned, (
                server.describe()
            )
            assert "Traceback" not in stderr, server.describe()
    finally:
        procs.stop_all()


# TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    files = {"ca": root / "ca.pem", "cert": root / "cert.pem", "key": root / "key.pem"}
    ca.cert_pem.write_to_path(files["ca"])
    cert.private_key_pem.write_to_path(files["key"])
    for i, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(files["cert"], append=i > 0)
    other = root / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(other)
    files["other-ca"] = other
    return files


def test_tls_clients_exchange_and_a_plain_client_gets_a_clear_error(
    processes: Processes,
    start_server,
    start_client,
    tls_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    server = start_server(
        "--data", ":memory:",
        "--tls-cert", str(tls_files["cert"]),
        "--tls-key", str(tls_files["key"]),
    )  # fmt: skip
    assert "TLS" in server.lines()[0], server.lines()[0]
    logs = tmp_path / "logs"
    ca = str(tls_files["ca"])
    for client_id in ("A", "B"):
        start_client(client_id, server.port, "--tls-ca", ca, "--log", str(logs))
    wait_for_exchanges(logs, ["A", "B"], n=3)

    procs = processes
    # Plain TCP against the TLS port: refused, clearly.
    plain = failed_client(procs, server.port, "--id", "P")
    (line,) = plain.err_lines()  # one line, saying what the server speaks and what to do
    assert f"127.0.0.1:{server.port} speaks TLS" in line, line
    assert "--tls-ca FILE" in line and "Start one with" not in line, line
    # A CA that did not sign the server's certificate: refused, clearly.
    other_ca = str(tls_files["other-ca"])
    stranger = failed_client(procs, server.port, "--id", "S", "--tls-ca", other_ca)
    assert "CERTIFICATE_VERIFY_FAILED" in "\n".join(stranger.err_lines()), stranger.describe()

    wait_for_exchanges(logs, ["A", "B"], more_than=None, n=5)
    assert server.alive(), server.describe()
    assert not any("Traceback" in line for line in server.err_lines()), server.describe()


def test_tls_client_against_a_plain_server_gets_a_clear_error(
    processes: Processes, tls_files: dict[str, Path]
) -> None:
    server = processes.server("--data", ":memory:")
    proc = failed_client(processes, server.port, "--id", "T", "--tls-ca", str(tls_files["ca"]))
    (line,) = proc.err_lines()
    assert f"127.0.0.1:{server.port} does not speak TLS" in line, line
    assert "connect without TLS" in line and "Start one with" not in line, line
