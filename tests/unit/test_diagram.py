"""Space-time diagrams: layout (lanes, dots, arrows, causal x order) and the SVG/HTML drawings."""

from __future__ import annotations

import itertools
import json
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

import pytest

from vclock.clock import VectorClock, merge_all
from vclock.events import EVERYONE
from vclock.tools.diagram import (
    LABEL_LIMIT,
    Diagram,
    layout,
    load_diagram,
    render_html,
    render_svg,
    write_diagram,
)
from vclock.tools.eventlog import EventLog, read_events

SVG = "{http://www.w3.org/2000/svg}"


class Run:
    """Writes a consistent run folder by the protocol's clock rules.

    Clients log like ``vclock.asyncio.client`` (a report is a ``send`` to ``"server"``);
    the server logs like ``vclock.asyncio.server``: a ``receive`` for *every* client
    frame with a clock, relayed or reported, and a ``sync`` per cycle that sent one.
    """

    def __init__(self, directory: Path, clients: Iterable[str], *, server: bool = True) -> None:
        self.directory = directory
        self.clocks = {c: VectorClock() for c in clients}
        self.logs = {c: EventLog(directory, c) for c in self.clocks}
        self.server = EventLog(directory, "server") if server else None
        self.latest: dict[str, VectorClock] = {}
        self.in_flight: dict[str, tuple[str, str, VectorClock]] = {}  # msg -> (from, to, clock)
        self.cycle = 0

    def join(self, c: str) -> None:
        self.logs[c].record("join", self.clocks[c].items(), peer="server")
        if self.server:
            self.server.record("join", {}, peer=c)

    def leave(self, c: str) -> None:
        self.logs[c].record("leave", self.clocks[c].items(), peer="server", desc="bye")
        if self.server:
            self.server.record("leave", {}, peer=c)

    def local(self, c: str, desc: str | None = None) -> None:
        self.clocks[c] = self.clocks[c].tick(c)
        self.logs[c].record("local", self.clocks[c].items(), desc=desc)

    def send(self, c: str, to: str) -> str:
        """A peer message (``to`` a client) or a report (``to="server"``); returns its id."""
        clock = self.clocks[c] = self.clocks[c].tick(c)
        msg = f"{c}#{clock[c]}"
        self.logs[c].record("send", clock.items(), peer=to, msg=msg)
        self.latest[c] = self.latest.get(c, VectorClock()).merge(clock)
        if self.server:
            self.server.record("receive", clock.items(), peer=c, msg=msg)
        if to != "server":
            self.in_flight[msg] = (c, to, clock)
        return msg

    def deliver(self, msg: str) -> None:
        sender, to, sent = self.in_flight.pop(msg)
        self.clocks[to] = self.clocks[to].receive(sent, to)
        self.logs[to].record("receive", self.clocks[to].items(), peer=sender, msg=msg)

    def sync(self) -> list[str]:
        """One cycle: the frontier to every client whose report does not cover it."""
        frontier = merge_all(self.latest.values())
        synced = [c for c in self.clocks if not frontier <= self.latest.get(c, VectorClock())]
        if not synced:
            return []
        self.cycle += 1
        msg = f"sync#{self.cycle}"
        if self.server:
            self.server.record("sync", frontier.items(), msg=msg, to=synced)
        for c in synced:
            self.clocks[c] = self.clocks[c].receive(frontier, c)
            self.logs[c].record("sync-receive", self.clocks[c].items(), peer="server", msg=msg)
        return synced

    def close(self) -> Path:
        for log in [*self.logs.values(), *([self.server] if self.server else [])]:
            log.close()
        return self.directory


def small_run(directory: Path) -> Path:
    """Three clients, two peer messages, a report, one sync; drawn as 12 dots, 5 arrows.

    Clocks [A,B,C]: A1 local [1,0,0], A2 send→B [2,0,0]; B1 local [0,1,0],
    B2 receive [2,2,0], B3 send→C [2,3,0]; C1 local [0,0,1], C2 receive [2,3,2],
    C3 report [2,3,3]; server: receipt of C#3, sync#1 [2,3,3] to A and B;
    A3 [3,3,3], B4 [2,4,3].
    """
    run = Run(directory, ["C", "A", "B"])  # lanes are sorted whatever the order
    for c in "ABC":
        run.join(c)
    run.local("A", desc="boot")
    a2 = run.send("A", "B")
    run.local("B")
    run.deliver(a2)
    b3 = run.send("B", "C")
    run.local("C")
    run.deliver(b3)
    run.send("C", "server")
    assert run.sync() == ["A", "B"]
    run.leave("A")
    return run.close()


def random_run(directory: Path, events: int, *, clients: int = 3, seed: int = 1) -> Path:
    """About ``events`` random client events: locals, sends, deliveries, reports, syncs."""
    rng = random.Random(seed)
    ids = [f"c{i}" for i in range(1, clients + 1)]
    run = Run(directory, ids)
    for c in ids:
        run.join(c)
    for _ in range(events):
        c = rng.choice(ids)
        roll = rng.random()
        if roll < 0.3 and run.in_flight:
            run.deliver(rng.choice(sorted(run.in_flight)))
        elif roll < 0.6:
            run.send(c, rng.choice([p for p in ids if p != c]))
        elif roll < 0.7:
            run.send(c, "server")
        elif roll < 0.75:
            run.sync()
        else:
            run.local(c)
    for msg in sorted(run.in_flight):
        run.deliver(msg)
    return run.close()


@pytest.fixture
def small(tmp_path: Path) -> Diagram:
    return load_diagram(small_run(tmp_path / "small"))


def ranks(d: Diagram) -> dict[str, int]:
    return {e.id: e.rank for e in d.events}


# Layout: lanes, dots, arrows


def test_one_lane_per_client_sorted_then_the_server(small: Diagram):
    assert small.processes == ("A", "B", "C", "server")
    assert small.name == "small"


def test_client_lanes_sort_numbers_naturally(tmp_path: Path):
    d = load_diagram(random_run(tmp_path, 30, clients=11))
    assert d.processes[:3] == ("c1", "c2", "c3")
    assert d.processes[-2:] == ("c11", "server")


def test_causal_events_and_server_syncs_and_report_receipts_are_dots(small: Diagram):
    kinds = [(e.id, e.kind) for e in small.events]
    assert kinds == [
        ("A:1", "local"),
        ("A:2", "send"),
        ("A:3", "sync-receive"),
        ("B:1", "local"),
        ("B:2", "receive"),
        ("B:3", "send"),
        ("B:4", "sync-receive"),
        ("C:1", "local"),
        ("C:2", "receive"),
        ("C:3", "send"),
        ("server:1", "receive"),  # the report C#3; the relays of A#2 and B#3 are not dots
        ("server:2", "sync"),
    ]
    event = small.events[small.index("A:1")]
    assert event.clock == {"A": 1} and event.desc == "boot" and event.ref == "A.jsonl:2"


def test_joins_and_leaves_are_ticks_between_dots_not_dots(small: Diagram):
    ticks = [(m.pid, m.kind, m.position) for m in small.markers]
    assert ticks == [
        ("A", "join", 0.5),
        ("A", "leave", 9.5),
        ("B", "join", 0.5),
        ("C", "join", 0.5),
    ]


def test_arrows_link_sends_to_receives_reports_to_the_server_and_syncs_to_clients(small: Diagram):
    arrows = sorted((a.kind, a.msg, a.source, a.target) for a in small.arrows)
    assert arrows == [
        ("message", "A#2", "A:2", "B:2"),
        ("message", "B#3", "B:3", "C:2"),
        ("report", "C#3", "C:3", "server:1"),
        ("sync", "sync#1", "server:2", "A:3"),
        ("sync", "sync#1", "server:2", "B:4"),
    ]


# Layout: x is a causal order


def test_every_arrow_points_right(small: Diagram):
    r = ranks(small)
    assert all(r[a.source] < r[a.target] for a in small.arrows)


def test_ranks_are_longest_paths_and_concurrent_firsts_line_up(small: Diagram):
    assert ranks(small) == {
        "A:1": 1, "A:2": 2, "A:3": 9,
        "B:1": 1, "B:2": 3, "B:3": 4, "B:4": 9,
        "C:1": 1, "C:2": 5, "C:3": 6,
        "server:1": 7, "server:2": 8,
    }  # fmt: skip


def test_a_sync_is_right_of_everything_its_frontier_covers(tmp_path: Path):
    # Without reports the server lane has only the sync: its place comes from the frontier.
    run = Run(tmp_path, ["A", "B"])
    m = run.send("A", "B")
    run.deliver(m)
    for _ in range(5):
        run.local("B")
    run.send("B", "A")  # B#7, relayed: the server's latest[B] now covers B's 7 events
    run.sync()
    d = load_diagram(run.close())
    r = ranks(d)
    assert r["server:1"] == r["B:7"] + 1
    assert r["A:2"] == r["server:1"] + 1  # A's sync-receive


def test_happened_before_by_clocks_means_left_in_a_random_run(tmp_path: Path):
    d = load_diagram(random_run(tmp_path, 250, clients=4, seed=7))
    clients = [e for e in d.events if not e.server]
    for e, f in itertools.permutations(clients, 2):
        if VectorClock(e.clock) < VectorClock(f.clock):
            assert e.rank < f.rank, (e.id, f.id)
    r = ranks(d)
    assert all(r[d.events[a].id] < r[d.events[b].id] for a, b in d.edges)


def test_causal_past_and_future_follow_the_arrows(small: Diagram):
    assert small.causal_past("B:2") == {"A:1", "A:2", "B:1"}
    assert small.causal_future("B:2") == {
        "B:3", "B:4", "C:2", "C:3", "server:1", "server:2", "A:3",
    }  # fmt: skip
    assert small.causal_past("C:1") == set()
    # On client dots the diagram's reachability is exactly the clocks' order.
    for e in small.events:
        if not e.server:
            past = {f.id for f in small.events if not f.server and f.id != e.id
                    and VectorClock(f.clock) <= VectorClock(e.clock)}  # fmt: skip
            assert {p for p in small.causal_past(e.id) if not p.startswith("server")} == past


# Layout: logs that are incomplete or contradict themselves


def test_without_the_server_log_there_is_no_server_lane_and_syncs_have_no_arrow(tmp_path: Path):
    small_run(tmp_path)
    (tmp_path / "server.jsonl").unlink()
    d = load_diagram(tmp_path)
    assert d.processes == ("A", "B", "C")
    assert [a.kind for a in d.arrows] == ["message", "message"]
    assert {e.kind for e in d.events} == {"local", "send", "receive", "sync-receive"}


def test_a_reused_message_id_links_to_the_send_the_clock_covers():
    # A's first A#1 was lost with its connection, so the id came round again.
    from vclock.events import Event

    def ev(pid: str, kind: str, clock: dict[str, int], **kw: str) -> Event:
        return Event(ts="2025-01-01T00:00:00+00:00", pid=pid, kind=kind, clock=clock, **kw)

    d = layout(
        [
            ev("A", "send", {"A": 1, "X": 5}, peer="B", msg="A#1"),
            ev("A", "send", {"A": 1}, peer="B", msg="A#1"),
            ev("B", "receive", {"A": 1, "B": 1}, peer="A", msg="A#1"),
        ]
    )
    assert [(a.source, a.target) for a in d.arrows] == [("A:2", "B:1")]


def test_a_causal_cycle_still_draws_and_is_named_in_the_notes():
    from vclock.events import Event

    def ev(pid: str, kind: str, clock: dict[str, int], msg: str) -> Event:
        return Event(ts="2025-01-01T00:00:00+00:00", pid=pid, kind=kind, clock=clock, msg=msg)

    d = layout(  # B's clock goes back: its send claims less than its receive had
        [
            ev("A", "receive", {"A": 1, "B": 1}, "B#1"),
            ev("A", "send", {"A": 2, "B": 1}, "A#2"),
            ev("B", "receive", {"A": 2, "B": 1}, "A#2"),
            ev("B", "send", {"B": 1}, "B#1"),
        ]
    )
    assert len(d.events) == 4 and len(d.arrows) == 2
    assert len(d.notes) == 1 and "1 happened-before edge(s)" in d.notes[0]
    assert "(into A.jsonl:1)" in d.notes[0]  # B#1, the one edge running back in log order
    r = ranks(d)
    assert [(a.source, a.target) for a in d.arrows if r[a.source] >= r[a.target]] == [
        ("B:2", "A:1")
    ]
    ET.fromstring(render_svg(d).split("\n", 1)[1])


def test_two_runs_appended_to_one_folder_draw_every_dot_with_one_note(tmp_path: Path):
    once = len(load_diagram(random_run(tmp_path / "once", 120, clients=6, seed=5)).events)
    random_run(tmp_path / "twice", 120, clients=6, seed=5)
    d = load_diagram(random_run(tmp_path / "twice", 120, clients=6, seed=5))
    assert len(d.events) == 2 * once
    assert len(d.notes) == 1 and "two runs share a folder?" in d.notes[0]
    ET.fromstring(render_svg(d).encode())


# SVG


def test_svg_parses_and_has_a_line_per_process_a_group_per_dot_and_the_arrows(small: Diagram):
    root = ET.fromstring(render_svg(small).encode())
    lines = [e for e in root.iter(f"{SVG}line") if "process-line" in e.get("class", "")]
    assert [line.get("data-pid") for line in lines] == ["A", "B", "C", "server"]
    dots = [g for g in root.iter(f"{SVG}g") if "event" in g.get("class", "").split()]
    assert len(dots) == 12
    arrows = [e for e in root.iter() if "message" in e.get("class", "").split()]
    assert len(arrows) == 5
    assert len([a for a in arrows if "sync" in a.get("class", "").split()]) == 2
    assert all(a.get("marker-end", "").startswith("url(#vc-head-") for a in arrows)
    sync = next(a for a in arrows if "sync" in a.get("class", ""))
    message = next(a for a in arrows if a.get("class") == "message")
    assert sync.get("stroke-dasharray") and not message.get("stroke-dasharray")
    assert sync.get("stroke") != message.get("stroke")


def test_svg_of_a_small_run_labels_every_dot_with_its_clock(small: Diagram):
    root = ET.fromstring(render_svg(small).encode())
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "clock-label"]
    assert len(labels) == 12
    assert "[2,3,3]" in labels  # C's report, and the sync's frontier
    assert "[2,4,3]" in labels  # B after the sync
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert any("clock {A: 2, B: 4, C: 3}" in t and "B.jsonl:" in t for t in titles)


def test_svg_of_a_long_run_drops_the_labels_but_keeps_the_tooltips(tmp_path: Path):
    d = load_diagram(random_run(tmp_path, 200))
    assert len(d.events) > LABEL_LIMIT
    root = ET.fromstring(render_svg(d).encode())
    assert not [t for t in root.iter(f"{SVG}text") if t.get("class") == "clock-label"]
    dots = [g for g in root.iter(f"{SVG}g") if "event" in g.get("class", "").split()]
    assert len(dots) == len(d.events)
    assert all(g.find(f"{SVG}title") is not None for g in dots)


def test_svg_escapes_what_a_log_may_hold(tmp_path: Path):
    log = EventLog(tmp_path, "A&<B>")
    log.record("local", {"A&<B>": 1}, desc='</title><script>x</script> " & \x07 bell')
    log.close()
    root = ET.fromstring(render_svg(load_diagram(tmp_path)).encode())
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert any("</title><script>x</script>" in t and "\ufffd bell" in t for t in titles)


# HTML


def _network_references(page: str) -> list[str]:
    """Anything in a page that could make a browser fetch."""
    patterns = [
        r"https?://",
        r"<script[^>]*\ssrc\s*=",
        r"<link\b",
        r"<img\b",
        r"<iframe\b",
        r"@import",
        r"url\(\s*['\"]?(?!#)",  # url(#marker) is a fragment of this page
        r"\bfetch\(|XMLHttpRequest|WebSocket|EventSource|sendBeacon",
    ]
    return [p for p in patterns if re.search(p, page, re.IGNORECASE)]


def test_html_is_one_self_contained_file_that_fetches_nothing(small: Diagram):
    page = render_html(small)
    assert _network_references(page) == []
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert page.count("<script") == 2  # the data, the code


def test_html_has_the_test_hooks_and_the_counts(small: Diagram):
    page = render_html(small)
    assert len(re.findall(r'<line class="process-line[^"]*" data-pid=', page)) == 4
    assert len(re.findall(r'<g class="event[ "]', page)) == 12
    assert len(re.findall(r'<polyline class="message[ "]', page)) == 5
    assert len(re.findall(r'<polyline class="message sync"', page)) == 2
    assert 'data-processes="3" data-events="10" data-messages="3" data-reports="1"' in page
    assert 'data-receives="2" data-syncs="2"' in page
    assert "<h1>small</h1>" in page
    assert "[2,3,3]" in page  # labels, small run


def test_html_data_cannot_close_its_script_element():
    from vclock.events import Event

    hostile = "</script><script>alert(1)</script> {{DATA}}"
    event = Event(ts="2025-01-01T00:00:00+00:00", pid=hostile, kind="local", clock={hostile: 1})
    page = render_html(layout([event], name=hostile))
    assert page.count("</script>") == 2  # the pid is in the JSON data too, escaped there
    data = re.search(r'<script type="application/json" id="vc-data">(.*?)</script>', page, re.S)
    assert data and json.loads(data.group(1)) == {"ids": [f"{hostile}:1"], "edges": []}


def test_a_2000_event_run_renders_and_stays_small(tmp_path: Path):
    d = load_diagram(random_run(tmp_path, 2000, clients=5, seed=3))
    assert len(d.events) >= 1800
    svg, page = render_svg(d), render_html(d)
    ET.fromstring(svg.encode())
    assert _network_references(page) == []
    # Budget: a dot is a <g> with a halo, a dot and a <title> tooltip (~330 bytes), an arrow
    # ~230 bytes, plus ~12 bytes of edge data per dot and ~20 KB of page. 1 KB per dot is
    # three times what that needs and still a page a browser opens at once.
    assert len(page.encode()) < 1000 * len(d.events), len(page.encode())
    assert "clock-label" not in svg.split("</defs>", 1)[1].replace('class="clock-label"', "")


# Files


def test_write_diagram_picks_the_format_from_the_suffix(tmp_path: Path):
    run = small_run(tmp_path / "run")
    svg = write_diagram(run, tmp_path / "out" / "run.svg")
    page = write_diagram(run / "B.jsonl", tmp_path / "B.HTML")
    assert svg.read_text().startswith("<?xml") and ET.parse(svg).getroot().tag == f"{SVG}svg"
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert "<h1>B</h1>" in page.read_text()


@pytest.mark.parametrize("name", ["run.png", "run", "run.svg.txt"])
def test_write_diagram_refuses_other_formats(tmp_path: Path, name: str):
    with pytest.raises(ValueError, match=r"must end in \.html or \.svg"):
        write_diagram(small_run(tmp_path / "logs"), tmp_path / name)
    assert not (tmp_path / name).exists()


def test_write_diagram_of_a_missing_run_says_so(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no such log"):
        write_diagram(tmp_path / "nope", tmp_path / "x.svg")


def test_refs_are_the_real_line_numbers_even_with_blank_lines(tmp_path: Path):
    run = small_run(tmp_path)
    text = (run / "B.jsonl").read_text()
    (run / "B.jsonl").write_text("\n" + text.replace("\n", "\n\n", 1))
    d = load_diagram(run)
    assert d.events[d.index("B:1")].ref == "B.jsonl:4"  # join on line 2, blank, local
    # layout() from read_events counts lines per process instead.
    assert layout(read_events(small_run(tmp_path / "again"))).events[3].ref == "B.jsonl:2"


def test_a_broadcast_keeps_the_logs_peer_and_its_tooltip_says_everyone(tmp_path: Path):
    # "*" is the broadcast peer's one id; "everyone" is only how the diagrams show it.
    log = EventLog(tmp_path, "A")
    log.record("send", {"A": 1}, peer=EVERYONE, msg="A#1")
    log.close()
    d = load_diagram(tmp_path)
    assert [e.peer for e in d.events] == [EVERYONE]
    root = ET.fromstring(render_svg(d).encode())
    assert [t.text for t in root.iter(f"{SVG}title") if "A:1" in (t.text or "")][0].startswith(
        "A:1  send → everyone\n"
    )


# The header counts what `vclock check` counts (issue 15, item 5)

_HEADER = re.compile(
    r"(\d+) process(?:es)? · (\d+) events? · (\d+) messages? \((\d+) reports?\) · "
    r"(\d+) receives? · (\d+) syncs?"
)


@pytest.mark.parametrize("clients", [3, 25])
def test_the_header_counts_what_vclock_check_counts(tmp_path: Path, clients: int):
    from vclock.tools.checker import check, format_report

    run = random_run(tmp_path / "run", 300, clients=clients, seed=3)
    page = render_html(load_diagram(run))
    header = re.search(r'<span class="counts" id="counts"[^>]*>([^<]*)</span>', page)
    assert header is not None
    found = _HEADER.search(header[1])
    assert found is not None, header[1]
    processes, events, messages, reports, receives, syncs = map(int, found.groups())
    checked = format_report(check(run))
    for name, value in [
        ("processes", processes),
        ("events", events),
        ("messages", messages),
        ("receives", receives),
        ("syncs", syncs),
    ]:
        assert re.search(rf"^  {name} +{value}$", checked, re.M), (name, value, checked)
    assert 0 < reports < messages
    # the server lane's dots are counted apart, and said to be
    assert re.search(r"server: \d+ reports? received, \d+ syncs? sent", header[1]), header[1]
    svg = render_svg(load_diagram(run))
    assert header[1] in svg  # the SVG's header says the same
