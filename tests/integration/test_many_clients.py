"""Real runs the trace checker must accept: a server and 3, then 20, clients.

Each run: the server and every client log into one run folder; the clients
exchange for a few seconds (until each has sent and received a few messages),
then stop with SIGTERM (bye), then the server stops. ``vclock check`` on the
folder must be OK, counting every client as a process.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from vclock.tools.checker import check, format_report

from .conftest import ClientProcess, Processes, wait_for_exchanges

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("n", [3, 20])
def test_a_real_run_with_n_clients_passes_the_checker(
    processes: Processes, tmp_path: Path, n: int
) -> None:
    run = tmp_path / "run"
    server = processes.server("--data", ":memory:", "--log", str(run))
    ids = [f"P{i:02d}" for i in range(1, n + 1)]
    # Start them all, then wait for each: starting Python 20 times is the slow part.
    clients: list[ClientProcess] = [
        processes.client(
            i, server.port, "--interval", "0.1-0.3", "--log", str(run), wait_connected=False
        )
        for i in ids
    ]
    for client in clients:
        client.wait_for_line(r"^Connected to ")
    server.wait_for_line(rf"^Number of clients to be synchronized: {n}$")
    wait_for_exchanges(run, ids, n=5, timeout=60)

    for client in clients:
        client.send_signal(signal.SIGTERM)
    for client in clients:
        assert client.wait() == 0, client.describe()
        assert client.lines()[-1] == "Client stopped.", client.describe()
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()

    report = check(run)
    assert report.ok, format_report(report)
    summary = report.summary
    assert summary.processes == n, format_report(report)
    assert summary.server_log and summary.receives >= 5 * n, format_report(report)
