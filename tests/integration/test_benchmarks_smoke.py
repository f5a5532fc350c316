"""Smoke test of the benchmark suite: it runs and writes its report.

Only the fast in-process cells (no servers, no load processes), in quick mode,
into a temporary folder. Nothing here asserts on a timing: the numbers belong
to the report, not to the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CELLS = ["clock-ops", "wire-bytes", "sync-cycle"]

pytest.importorskip("vectorclock", reason="the bench extra (pip install -e '.[bench]')")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--cells",
        ",".join(CELLS),
        "--out",
        str(out),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_writes_both_report_files(report_dir: Path) -> None:
    assert (report_dir / "report.md").is_file()
    assert (report_dir / "report.json").is_file()


def test_json_has_machine_facts_command_and_the_cells_asked_for(report_dir: Path) -> None:
    report = json.loads((report_dir / "report.json").read_text())
    assert report["quick"] is True
    assert report["command"].startswith("python -m benchmarks --quick --cells")
    machine = report["machine"]
    assert machine["cores"] and machine["cpu"] and machine["python"]
    for package in ("vclock", "msgspec", "nats-py", "uvloop", "vectorclock", "nats-server"):
        assert package in machine["versions"]
    assert sorted(section["name"] for section in report["sections"]) == sorted(CELLS)
    for section in report["sections"]:
        assert section["status"] == "ok", section["status"]
        assert section["tables"] and all(table["rows"] for table in section["tables"])


def test_clock_ops_covers_every_op_size_and_implementation(report_dir: Path) -> None:
    report = json.loads((report_dir / "report.json").read_text())
    clock_ops = next(s for s in report["sections"] if s["name"] == "clock-ops")
    rows = clock_ops["data"]["rows"]
    assert {(row["op"], row["entries"]) for row in rows} == {
        (op, size) for op in ("tick", "merge", "compare") for size in (3, 64, 1024)
    }
    for row in rows:
        assert set(row["ns"]) == {"vclock", "vectorclock", "vectorclock-copy", "dict"}
        assert all(ns > 0 for ns in row["ns"].values())


@pytest.mark.parametrize("size", [3, 64])
def test_clock_ops_compares_what_it_says_whatever_the_other_ops_did(size: int) -> None:
    """vectorclock ticks and merges in place: timing them must not change the
    clocks the compare timing compares (a clock and its successor: before)."""
    from benchmarks.clockops import callables

    impls = callables(size)
    for name in ("vclock", "vectorclock", "vectorclock-copy", "dict"):
        ops = impls[name]
        first = ops["compare"]()
        for _ in range(3):
            ops["tick"](), ops["merge"]()
        assert ops["compare"]() == first, name
    assert impls["vectorclock"]["compare"]() == -1  # before: every entry looked at


def test_markdown_has_the_sections_ratios_and_target_checks(report_dir: Path) -> None:
    text = (report_dir / "report.md").read_text()
    for heading in (
        "# vclock benchmark report",
        "## Machine",
        "## Targets",
        "## 2. Clock operations",
        "## 3. Synchronization cycle",
        "## 5. Wire bytes per message",
    ):
        assert heading in text
    assert "python -m benchmarks --quick" in text
    for ratio in ("vclock / vectorclock", "vclock / dict", "full / delta"):
        assert ratio in text
    assert "faster than vectorclock" in text  # the brief's target, checked whatever the result
    assert "< 20 ms" in text  # the sync-cycle target at 1,000 clients


def test_cluster_cell_is_offered_by_cells_and_quick() -> None:
    """The cluster cell starts nats-server and three nodes (~20 s even in quick mode),
    so it is not run here; only chosen."""
    from benchmarks.cli import parse_args

    args = parse_args(["--quick", "--cells", "cluster,relay"])
    assert args.quick and args.cell_names == ["relay", "cluster"]


def test_the_hot_path_script_relays_every_message_and_reports_its_cost() -> None:
    """scripts/hotpath.py (the in-process CPU per message quoted in
    docs/performance.md section 9) checks that every send became a deliver."""
    command = [sys.executable, "scripts/hotpath.py", "--messages", "2000", "--repeat", "1"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["3 clients", "100 clients"]
    assert all(float(line.split()[2]) > 0 for line in lines)
