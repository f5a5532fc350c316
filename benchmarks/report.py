"""The report: one Markdown file and one JSON file with the same content.

A cell's section is a plain dict (see :func:`section`), so the JSON is the
sections as they are and the Markdown is rendered from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MET, MISSED, UNKNOWN = "met", "MISSED", "not measured"


def section(name: str, title: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "what": what,
        "method": [],
        "tables": [],
        "targets": [],
        "notes": [],
        "status": "ok",
        "data": {},
    }


def table(title: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": rows}


def target(name: str, goal: str, measured: str, met: bool | None, source: str) -> dict[str, Any]:
    """A target check; ``source`` says who set it (the brief or issue 5)."""
    status = UNKNOWN if met is None else MET if met else MISSED
    return {"target": name, "goal": goal, "measured": measured, "status": status, "source": source}


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers with ``digits`` significant digits, thousands separated; '–' for None."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or abs(value) >= 10 ** (digits - 1):
        return f"{round(value):,}"
    return f"{value:.{digits}g}"


def write(out_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    md_path = out_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md_path.write_text(markdown(report))
    return md_path, json_path


def markdown(report: dict[str, Any]) -> str:
    quick = " (quick mode: short cells, smaller sizes; for smoke tests, not for numbers)"
    quick = quick if report["quick"] else ""
    lines = [
        "# vclock benchmark report",
        "",
        f"Generated {report['started']}; the run took {report['elapsed_s']:.0f} s{quick}.",
        "",
        "Command (from the repository root):",
        "",
        f"    {report['command']}",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    machine = report["machine"]
    for key in ("cpu", "cores", "ram_gib", "os", "python", "open_files_limit", "git"):
        label = {"ram_gib": "RAM (GiB)", "open_files_limit": "open files"}.get(key, key)
        lines.append(f"| {label} | {machine[key]} |")
    for name, ver in machine["versions"].items():
        lines.append(f"| {name} | {ver} |")
    lines.append(
        f"| load average (1, 5, 15 min) | before {report.get('load_average_before', '?')};"
        f" after {report.get('load_average_after', '?')} |"
    )
    lines += ["", "## Targets", ""]
    checks = [(s["title"], t) for s in report["sections"] for t in s["targets"]]
    if checks:
        lines += [
            "Each target as measured in this run. *brief*: the benchmark brief's targets;"
            " *issue 5*: the stricter targets of the issue.",
            "",
            "| cell | target | source | goal | measured | status |",
            "|---|---|---|---|---|---|",
        ]
        for title, check in checks:
            status = {"met": "✅ met", "MISSED": "❌ **MISSED**"}.get(
                check["status"], "– not measured"
            )
            lines.append(
                f"| {title} | {check['target']} | {check['source']} | {check['goal']}"
                f" | {check['measured']} | {status} |"
            )
    else:
        lines.append("No target was measured in this run.")
    for sec in report["sections"]:
        lines += ["", f"## {sec['title']}", ""]
        if sec["status"] != "ok":
            lines += [f"**Status: {sec['status']}**", ""]
        lines += [sec["what"], ""]
        for item in sec["method"]:
            lines.append(f"- {item}")
        if sec["method"]:
            lines.append("")
        for tab in sec["tables"]:
            lines += [f"**{tab['title']}**", "", _md_table(tab["columns"], tab["rows"]), ""]
        for note in sec["notes"]:
            lines.append(f"- {note}")
        if sec.get("elapsed_s") is not None:
            lines += ["", f"_Cell time: {sec['elapsed_s']:.1f} s._"]
    return "\n".join(lines).rstrip() + "\n"


def _md_table(columns: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        out.append("| " + " | ".join(fmt(cell) for cell in row) + " |")
    return "\n".join(out)
