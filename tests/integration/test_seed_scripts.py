"""The seed's way to run the service: `python server.py`, `python client.py`,
`python client2.py`, `python client3.py`, from the repository root."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT, ClientProcess, Processes, ServerProcess

pytestmark = pytest.mark.timeout(90)

CYCLE = "New synchronization cycle started."
WAITING = (
    "No client data received. Synchronization not applicable at the moment. Waiting for a client."
)
SCRIPTS = {"client.py": "A", "client2.py": "B", "client3.py": "C"}


def seed_server(processes: Processes, python: str, *args: str) -> ServerProcess:
    argv = [python, "server.py", "--port", "0", "--sync-interval", "0.5", *args]
    return processes.add(lambda: ServerProcess(argv, cwd=REPO_ROOT, name=f"{python} server.py"))


def seed_client(processes: Processes, script: str, port: int) -> ClientProcess:
    argv = [sys.executable, script, "--port", str(port), "--interval", "0.1-0.3"]
    return processes.add(lambda: ClientProcess(SCRIPTS[script], argv, cwd=REPO_ROOT))


def test_seed_scripts_run_the_service_and_stop_together(processes: Processes) -> None:
    server = seed_server(processes, sys.executable)
    first, _ = server.wait_for_line("^Number of clients to be synchronized: 0$")
    assert server.lines()[first - 1] == CYCLE
    server.wait_for_line(f"^{re.escape(WAITING)}$", start=first)

    clients = []
    for script, client_id in SCRIPTS.items():
        client = seed_client(processes, script, server.port)
        client.wait_for_line(rf"^Connected to 127\.0\.0\.1:{server.port} as {client_id};")
        clients.append(client)

    connected, match = server.wait_for_line(r"^(127\.0\.0\.1:\d+) got connected successfully$")
    at, _ = server.wait_for_line(r"^At .+, data was received from client$", start=connected)
    server.wait_for_line(r"^Client Data updated by Server with: 127\.0\.0\.1:\d+$", start=at)
    three, _ = server.wait_for_line("^Number of clients to be synchronized: 3$", start=at)
    assert server.lines()[three - 1] == CYCLE
    for client in clients:
        client.wait_for_line(r"receive <- ")

    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()
    assert server.lines()[-1] == "Server stopped."
    for client in clients:
        assert client.wait() == 0, client.describe()
        client.wait_for_line(r"^Server closed the session \(.+\); exiting\.$")


def _python_without_vclock_deps() -> str | None:
    """A Python 3.11+ on PATH that cannot import msgspec, like a fresh system Python."""
    for name in ("/usr/bin/python3", "python3", "python"):
        python = shutil.which(name)
        if python is None:
            continue
        probe = subprocess.run(
            [python, "-c", "import sys; assert sys.version_info >= (3, 11); import msgspec"],
            capture_output=True,
            timeout=30,
        )
        if probe.returncode != 0 and b"ModuleNotFoundError" in probe.stderr:
            return python
    return None


def test_plain_python_falls_back_to_the_checkout_venv(processes: Processes) -> None:
    python = _python_without_vclock_deps()
    if python is None or not (REPO_ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("needs a Python 3.11+ without vclock's dependencies, and the checkout's .venv")
    server = seed_server(processes, python, "--quiet")
    argv = [python, "client.py", "--port", str(server.port), "--interval", "0.1-0.3"]
    client = processes.add(lambda: ClientProcess("A", argv, cwd=REPO_ROOT))
    client.wait_for_line(rf"^Connected to 127\.0\.0\.1:{server.port} as A;")
    client.wait_for_line(r"report -> server")
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()
    assert client.wait() == 0, client.describe()
