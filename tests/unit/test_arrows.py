"""No arrow passes through an event dot that is not one of its ends (issue 15, item 5).

With many lanes, a straight line from a send to its receive crosses the lanes between
them, where other events sit. The offline diagram and the live dashboard draw arrows
with the same rule (:func:`vclock.tools.drawing.arrow_route`); these tests measure,
in the SVG each one produces, the distance from every dot to every arrow segment that
does not end at it, over seeded random runs with 25 processes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_diagram import random_run
from tests.unit.test_web import _simulate
from vclock.tools.diagram import load_diagram, render_html, render_svg
from vclock.web import LiveModel
from vclock.web.render import LiveDrawing

#: A dot's radius (drawing._DOT_R) plus half its rim and half an arrow's width: an arrow
#: nearer than this to a dot's centre touches it.
CLEAR = 5.0 + 0.75 + 0.7

Point = tuple[float, float]

_DOT = re.compile(
    r'<g class="event[^"]*" data-id="([^"]*)"[^>]*>.*?'
    r'<circle class="halo" cx="([-\d.]+)" cy="([-\d.]+)"',
    re.S,
)
_ARROW = re.compile(r'<(?:line|polyline) class="message[^"]*" ([^>]*)>')
_ATTR = re.compile(r'([\w-]+)="([^"]*)"')


def dots_of(svg: str) -> dict[str, Point]:
    return {m[1]: (float(m[2]), float(m[3])) for m in _DOT.finditer(svg)}


def arrows_of(svg: str) -> list[tuple[str, str, list[Point]]]:
    """(from, to, the points of its path) of every arrow, straight or routed."""
    out = []
    for m in _ARROW.finditer(svg):
        attrs = dict(_ATTR.findall(m[1]))
        if "points" in attrs:
            points = [
                (float(x), float(y)) for x, y in (p.split(",") for p in attrs["points"].split())
            ]
        else:
            points = [
                (float(attrs["x1"]), float(attrs["y1"])),
                (float(attrs["x2"]), float(attrs["y2"])),
            ]
        out.append((attrs["data-from"], attrs["data-to"], points))
    return out


def distance(p: Point, a: Point, b: Point) -> float:
    """From ``p`` to the segment ``a``-``b``."""
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def collisions(svg: str) -> list[str]:
    """Every (arrow, dot) pair where the arrow passes within :data:`CLEAR` of the dot."""
    dots = dots_of(svg)
    arrows = arrows_of(svg)
    assert dots and arrows, "nothing to measure: did the markup change?"
    found = []
    for source, target, points in arrows:
        xs, ys = [x for x, _ in points], [y for _, y in points]
        for dot_id, at in dots.items():
            if dot_id in (source, target):
                continue
            if not (min(xs) - CLEAR <= at[0] <= max(xs) + CLEAR) or not (
                min(ys) - CLEAR <= at[1] <= max(ys) + CLEAR
            ):
                continue  # outside the arrow's box: far from it
            near = min(distance(at, a, b) for a, b in zip(points, points[1:], strict=False))
            if near <= CLEAR:
                found.append(f"{source}->{target} passes {near:.1f} px from {dot_id}")
    return found


CLIENTS = 25


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("events", [40, 400], ids=["labelled", "unlabelled"])
def test_no_arrow_of_the_offline_diagram_crosses_a_dot(tmp_path: Path, seed: int, events: int):
    d = load_diagram(random_run(tmp_path / "run", events, clients=CLIENTS, seed=seed))
    assert len(d.processes) == CLIENTS + 1 and len(d.arrows) > 10
    for drawn in (render_html(d), render_svg(d)):
        found = collisions(drawn)
        assert found == [], f"{len(found)} of them, e.g. {found[:5]}"


@pytest.mark.parametrize("seed", range(3))
def test_no_arrow_of_the_live_diagram_crosses_a_dot_even_one_drawn_later(seed: int):
    """Live, a dot is drawn once, when it arrives, with the arrows into it; a dot that
    arrives later may land anywhere left of the newest. So every arrow of the last
    reset and of the appends after it is measured against every dot."""
    ids = [f"P{n:02d}" for n in range(1, CLIENTS + 1)]
    drawn: dict[str, Any] = {"drawing": None, "pieces": []}

    def each(model: LiveModel, now: float) -> None:
        drawing = drawn["drawing"]
        if drawing is None:
            drawing = drawn["drawing"] = LiveDrawing(model, min_reset_interval=0)
            model.diagram.take_changes()
            drawn["pieces"] = [drawing.snapshot(now)["diagram"]]
            return
        message = drawing.step(model.diagram.take_changes(), now)
        if message is None:
            return
        if message["kind"] == "reset":
            drawn["pieces"] = [message["diagram"]]
        else:
            drawn["pieces"] += [dot for _, dot in message["events"]]
            drawn["pieces"] += [arrow for _, arrow in message["arrows"]]

    _simulate(seed, steps=600, ids=ids, each=each)
    svg = "".join(drawn["pieces"])
    assert len(dots_of(svg)) > 200
    found = collisions(svg)
    assert found == [], f"{len(found)} of them, e.g. {found[:5]}"
