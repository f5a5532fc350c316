"""Causal broadcast with real processes on one server: three clients that only
broadcast; the logs must pass the checker with causal delivery required."""

from __future__ import annotations

from pathlib import Path

from vclock.tools.checker import check, format_report

from .conftest import count_kinds, wait_until


def test_broadcasts_reach_every_other_client_in_causal_order(start_server, start_client, tmp_path):
    logs = tmp_path / "logs"
    server = start_server("--log", str(logs))
    ids = ["A", "B", "C"]
    clients = [
        start_client(i, server.port, "--log", str(logs), "--broadcast-every", "1") for i in ids
    ]

    def enough() -> bool:
        return all(count_kinds(logs, i, "receive") >= 8 for i in ids)

    wait_until(enough, what="each client to deliver 8 broadcasts")
    for client in clients:
        client.stop()
    server.stop()
    assert any("broadcast <- " in line for line in clients[0].lines())
    report = check(Path(logs), require_causal_delivery=True, causal_scope="broadcast")
    assert report.ok, format_report(report)
    assert report.summary.receives >= 24
