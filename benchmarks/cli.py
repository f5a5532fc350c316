"""``python -m benchmarks``: run the cells, show progress, write the report."""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from . import machine, procs, report
from .cells import CELLS, Context

DEFAULT_OUT = procs.REPO_ROOT / "benchmarks" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="vclock side by side with NATS, the vectorclock package and a bare relay;"
        " writes report.md and report.json.",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds per cell (smoke test)")
    parser.add_argument(
        "--cells",
        default=",".join(CELLS),
        help=f"comma-separated cells to run (default: all): {', '.join(CELLS)}",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    args = parser.parse_args(argv)
    names = {name.strip() for name in args.cells.split(",") if name.strip()}
    unknown = sorted(names - set(CELLS))
    args.cell_names = [name for name in CELLS if name in names]  # always in report order
    if unknown or not args.cell_names:
        parser.error(
            f"unknown cell(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(CELLS)}"
        )
    return args


def _own_cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (servers, load)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    argv_shown = sys.argv[1:] if argv is None else argv
    console = Console(stderr=True)
    procs.raise_nofile_limit()  # inherited by every server and load process
    started = time.monotonic()
    result: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "benchmarks", *argv_shown]),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick,
        "cells": args.cell_names,
        "machine": machine.facts(),
        "load_average_before": procs.load_average(),
        "sections": [],
    }
    crashed = False
    with (
        tempfile.TemporaryDirectory(prefix="vclock-bench-") as work,
        Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[cell]}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} cells"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("", total=len(args.cell_names), cell="")
        for name in args.cell_names:
            progress.update(task, cell=name, description="starting")

            def step(text: str, name: str = name) -> None:
                progress.update(task, description=text)

            ctx = Context(quick=args.quick, work_dir=Path(work), step=step)
            cell_start = time.monotonic()
            busy_start, own_start = procs.machine_busy_seconds(), _own_cpu_seconds()
            try:
                sec = CELLS[name](ctx)
            except Exception as exc:  # one broken cell must not lose the others
                crashed = True
                sec = report.section(name, name, "This cell crashed.")
                sec["status"] = f"crashed: {type(exc).__name__}: {exc}"
                sec["notes"].append("```\n" + traceback.format_exc()[-3000:] + "\n```")
            sec["elapsed_s"] = time.monotonic() - cell_start
            busy = procs.machine_busy_seconds() - busy_start
            other = max(0.0, busy - (_own_cpu_seconds() - own_start)) / max(sec["elapsed_s"], 1e-9)
            sec["other_cpu"] = other
            sec["notes"].append(
                f"Other work on the machine during this cell: {other:.2f} cores on average"
                " (CPU time of processes that are not this benchmark or its children; ~0 means"
                " an undisturbed run)."
            )
            result["sections"].append(sec)
            progress.console.print(
                f"[green]✓[/] {name} ({sec['elapsed_s']:.1f} s): {sec['status']}"
            )
            progress.advance(task)
    result["elapsed_s"] = time.monotonic() - started
    result["load_average_after"] = procs.load_average()
    md_path, json_path = report.write(args.out, result)
    console.print(f"Report: {md_path} and {json_path.name}")
    missed = [t for s in result["sections"] for t in s["targets"] if t["status"] == report.MISSED]
    if missed:
        console.print(f"[yellow]{len(missed)} target check(s) missed; see the Targets section.")
    return 1 if crashed else 0
