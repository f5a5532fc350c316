"""The demo's run summary stays readable with many clients (issue 15, item 5).

The table is rendered by :func:`vclock.demo.summary_table` into a recording rich
Console 120 columns wide, as ``vclock demo`` prints it when its output is not a
terminal. A real ``vclock demo --clients 25`` run is in
tests/integration/test_demo.py.
"""

from __future__ import annotations

import io
import random
import re

import pytest
from rich.console import Console

from vclock.demo import client_ids, summary_table
from vclock.events import SERVER_ID, Event

TS = "2026-12-07T15:00:00+00:00"


def events_of(ids: list[str], seed: int = 1) -> list[Event]:
    """Each client: a few sends, reports and receives, and a last clock whose every
    entry is large (three digits): the widest clocks a short run gives."""
    rng = random.Random(seed)
    out = []
    for c in ids:
        out.append(Event(ts=TS, pid=c, kind="join", clock={}, peer=SERVER_ID))
        for n in range(1, 4):
            out.append(Event(ts=TS, pid=c, kind="send", clock={c: n}, peer=ids[0], msg=f"{c}#{n}"))
        out.append(Event(ts=TS, pid=c, kind="send", clock={c: 4}, peer=SERVER_ID, msg=f"{c}#4"))
        final = {k: rng.randint(100, 999) for k in ids}
        out.append(Event(ts=TS, pid=c, kind="receive", clock=final, peer=ids[-1]))
        out.append(Event(ts=TS, pid=c, kind="leave", clock=final, peer=SERVER_ID))
    return out


def rendered(ids: list[str], width: int = 120) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(summary_table(events_of(ids), ids, dict.fromkeys(ids, 0), width=width))
    return console.export_text()


def body_rows(text: str) -> list[str]:
    """The lines between the header's rule and the bottom border."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("┡", "├")))
    end = next(i for i, line in enumerate(lines) if line.startswith("└"))
    return lines[start + 1 : end]


@pytest.mark.parametrize("clients", [25, 40])
def test_the_summary_of_many_clients_fits_120_columns_one_line_per_client(clients: int):
    ids = client_ids(clients)
    text = rendered(ids)
    too_long = [line for line in text.splitlines() if len(line) > 120]
    assert too_long == [], too_long[:3]
    rows = body_rows(text)
    assert len(rows) == clients, "\n".join(rows[:6])  # no row wraps onto a second line
    for c, row in zip(ids, rows, strict=True):
        assert re.match(rf"│ {c} +│ 0 +│ 3 +│ 1 +│ 1 +│ 0 +│ ", row), row
        final = next(e.clock for e in reversed(events_of(ids)) if e.pid == c)
        assert f"{c}:{final[c]}" in row  # its own entry, first
        shown = re.findall(r"\b(\w+):(\d+)\b", row)
        assert all(final[k] == int(v) for k, v in shown)
        hidden = re.search(r"\+(\d+) more", row)
        assert hidden and len(shown) + int(hidden[1]) == clients  # and how many are not shown
    assert "own entry first" in text  # the table says how it shows a clock


def test_a_few_clients_show_their_whole_clock():
    ids = client_ids(3)
    rows = body_rows(rendered(ids))
    final = next(e.clock for e in reversed(events_of(ids)) if e.pid == "B")
    assert f"B:{final['B']} A:{final['A']} C:{final['C']}" in rows[1]
    assert "more" not in "".join(rows)
