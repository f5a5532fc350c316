"""The examples run end to end, as a reader would run them (a real Python process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..unit.test_shiviz import assert_shiviz_accepts, read_upload

ROOT = Path(__file__).resolve().parents[2]


def test_the_tracer_example_runs_end_to_end(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tracer" / "run.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "28 events" in done.stdout
    _, delimiter, [execution] = read_upload((tmp_path / "shiviz.log").read_text())
    assert_shiviz_accepts(execution)
    hosts = [host for host, _, _ in execution.events]
    assert {host: hosts.count(host) for host in "ABC"} == {"A": 10, "B": 9, "C": 9}
    assert execution.events[-1][2] == "token came home after 6 hops"
    assert execution.events[-1][1] == {"A": 10, "B": 9, "C": 9}
