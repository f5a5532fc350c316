"""A real ``vclock demo`` with 25 clients: its run summary fits 120 columns, a line
per client (issue 15, item 5). The run's time starts once every client has joined,
so a short ``--duration`` still sees all 25 at work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vclock.demo import client_ids

from .conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(180)


def test_a_demo_of_25_clients_summarises_in_120_columns(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "vclock", "demo", "--clients", "25", "--duration", "2"]
    argv += ["--interval", "0.2-0.5", "--sync-interval", "1", "--seed", "1"]
    argv += ["--runs-dir", str(tmp_path)]
    # Not a terminal: the demo prints 120 columns wide, as a CI log or a pipe gets it.
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=150)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-2000:]
    lines = out.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("Run summary")))
    end = lines.index(next(line for line in lines if line.startswith("Messages sent:")))
    summary = lines[start:end]
    assert [line for line in summary if len(line) > 120] == []
    rows = [line for line in summary if line.startswith("│")]
    ids = client_ids(25)
    assert len(rows) == 25, "\n".join(summary)  # one line each: nothing wrapped
    for c, row in zip(ids, rows, strict=True):
        # every client joined and exited cleanly, and its own entry comes first
        assert re.match(rf"│ {c} +│ 0 +│ \d+ +│ \d+ +│ \d+ +│ \d+ +│ {c}:[1-9]\d* ", row), row
    assert "own entry first" in "\n".join(summary)
    assert "OK: causally consistent" in out
    assert re.search(r"^  processes +25$", out, re.M)
