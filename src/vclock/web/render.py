"""From the model to what the page receives: JSON views and the live diagram's SVG.

The live diagram is drawn with the pieces of :mod:`vclock.tools.drawing` (lanes,
dots, arrows, ticks, geometry, the page's frame), as the offline diagram is, so it
follows the same rules. Each dot is drawn once, when it arrives, and sent to the
page as an SVG fragment; the page appends it. The whole window is drawn afresh (a
*reset*) only when the picture's frame changes: a new lane, the switch from
labelled to unlabelled dots, or a rebase of the x axis; resets come at most once
per ``min_reset_interval`` seconds.

Every dot and tick carries the serial the model gave it, and every message says up
to which serial it goes, so a page that got a reset never applies an item twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..clock import VectorClock
from ..tools.drawing import (
    LABEL_LIMIT,
    LEFT,
    LIVE_LEGEND_DOTS,
    MARGIN,
    Geometry,
    arrow_svg,
    clock_label,
    diagram_svg,
    event_svg,
    labels_below,
    lane_labels_svg,
    lane_svg,
    legend_html,
    place,
    tick_svg,
)
from ..tools.spacetime import DiagramEvent, Marker, clock_order, lane_order
from .clients_table import ClientView
from .live_diagram import DiagramChanges, Entry
from .model import LiveModel

__all__ = ["LiveDrawing", "client_json", "legend", "state_json"]

#: Past this many ranks from the base, x is rebased (SVG coordinates are single floats).
REBASE_RANKS = 100_000


def legend() -> str:
    """The dashboard's legend: the live diagram's dots (:data:`LIVE_LEGEND_DOTS`)."""
    return legend_html(LIVE_LEGEND_DOTS)


class LiveDrawing:
    """The live diagram of a :class:`LiveModel`, as messages for the page.

    Call :meth:`step` with each :meth:`LiveDiagram.take_changes`; it returns an
    ``append`` or ``reset`` message, or None when there is nothing to send. Call
    :meth:`snapshot` for a page that just connected.
    """

    def __init__(self, model: LiveModel, *, min_reset_interval: float = 1.0) -> None:
        self.model = model
        self.diagram = model.diagram
        self.min_reset_interval = min_reset_interval
        self.resets = 0
        self._geometry: Geometry | None = None
        self._lanes: tuple[str, ...] = ()
        self._clock_ids: tuple[str, ...] = ()
        self._base = 0  # rank drawn at x = LEFT
        self._pending = False  # a reset is due but was held back
        self._last_reset = float("-inf")

    def snapshot(self, now: float) -> dict[str, Any]:
        """The whole window, for a page that just connected."""
        if self._geometry is None or self._pending or self._frame_changed():
            return self._reset(now)
        return self._draw_all()

    def step(self, changes: DiagramChanges, now: float) -> dict[str, Any] | None:
        """The message for the pages after ``changes``; None when there is nothing new."""
        if self._geometry is None:
            return None  # nobody has been sent a frame yet: the first snapshot draws one
        if changes.overflow or self._frame_changed():
            self._pending = True
        if self._pending:
            if now - self._last_reset < self.min_reset_interval:
                return None
            return self._reset(now)
        if not (changes.added or changes.removed or changes.markers or changes.markers_removed):
            return None
        return self._append(changes)

    # Frames

    def _frame_changed(self) -> bool:
        g = self._geometry
        if g is None:
            return True
        window = self.diagram.window
        if not set(self._needed_lanes()) <= set(self._lanes):
            return True
        if g.labels != (len(window) <= LABEL_LIMIT):
            return True
        if g.labels and self._spacing_for(window) != g.spacing:
            return True
        if g.labels and not set(self._ids_in_clocks(window)) <= set(self._clock_ids):
            return True
        return bool(window) and window[-1].event.rank - self._base > REBASE_RANKS

    def _needed_lanes(self) -> list[str]:
        diagram = self.diagram
        pids = {e.event.pid for e in diagram.window}
        pids |= {m.pid for _, m in diagram.markers}
        pids |= {row.id for row in self.model.table.clients.values() if row.connected}
        # The server is always there: its lane is drawn from the start, at the bottom.
        return lane_order(pids, server=True)

    def _ids_in_clocks(self, window: Iterable[Entry]) -> list[str]:
        return clock_order(self._lanes, (k for e in window for k in e.event.clock))

    def _spacing_for(self, window: Sequence[Entry]) -> float:
        events = [e.event for e in window]
        return place((), events, self._ids_in_clocks(window)).spacing

    def _reset(self, now: float) -> dict[str, Any]:
        window = self.diagram.window
        self._lanes = tuple(self._needed_lanes())
        self._clock_ids = tuple(self._ids_in_clocks(window))
        self._base = (window[0].event.rank - 1) if window else 0
        events = [self._relative(e.event) for e in window]
        self._geometry = place(self._lanes, events, self._clock_ids)
        self._pending = False
        self._last_reset = now
        self.resets += 1
        return self._draw_all()

    def _draw_all(self) -> dict[str, Any]:
        g = self._geometry
        assert g is not None
        diagram = self.diagram
        window = list(diagram.window)
        height = g.height
        width = self._width()
        label_svg = lane_labels_svg(self._lanes, g.lane_y, height)
        main_svg = diagram_svg(
            width,
            height,
            (lane_svg(pid, g.lane_y[pid], 0, width - MARGIN) for pid in self._lanes),
            (self._tick(serial, m) for serial, m in diagram.markers),
            self._arrows(window),
            self._dots(window, window),
            live=True,
            shift=self._shift(),
        )
        return {
            "kind": "reset",
            "labels": label_svg,
            "diagram": main_svg,
            "edges": _edges(window),
            "upto": self._upto(),
            "width": width,
            "height": height,
            "shift": self._shift(),
            "lanes": list(self._lanes),
            "labelled": g.labels,
            "clock_ids": list(self._clock_ids),
        }

    def _append(self, changes: DiagramChanges) -> dict[str, Any]:
        gone = set(changes.removed)
        added = [e for e in changes.added if e.event.id not in gone]
        removed_markers = changes.markers_removed
        markers = [(s, m) for s, m in changes.markers if s > removed_markers]
        return {
            "kind": "append",
            "events": [
                [e.serial, dot]
                for e, dot in zip(added, self._dots(added, self.diagram.window), strict=True)
            ],
            "arrows": [[e.serial, "".join(self._arrows([e]))] for e in added],
            "markers": [[serial, self._tick(serial, m)] for serial, m in markers],
            "edges": _edges(added),
            "removed": changes.removed,
            "markers_removed": removed_markers,
            "upto": self._upto(),
            "width": self._width(),
            "shift": self._shift(),
        }

    # Pieces, with the shared drawing functions

    def _relative(self, e: DiagramEvent) -> DiagramEvent:
        return dataclasses.replace(e, rank=e.rank - self._base)

    def _at(self, dot_id: str) -> tuple[float, float] | None:
        g = self._geometry
        assert g is not None
        rank = self.diagram.rank_of(dot_id)
        if rank is None:
            return None
        return g.x(rank - self._base), g.lane_y[dot_id.rpartition(":")[0]]

    def _dots(self, entries: Sequence[Entry], window: Iterable[Entry]) -> list[str]:
        g = self._geometry
        assert g is not None
        below: set[str] = set()
        if g.labels:
            lane_of = {e.event.id: g.lane_y[e.event.pid] for e in window}
            arrows = [a for e in window for a in e.arrows if a.source in lane_of]
            below = labels_below(lane_of, arrows)
        out = []
        for entry in entries:
            e = self._relative(entry.event)
            label = clock_label(e.clock, self._clock_ids) if g.labels else None
            out.append(event_svg(e, g.x(e.rank), g.lane_y[e.pid], label, e.id in below))
        return out

    def _arrows(self, entries: Iterable[Entry]) -> list[str]:
        g = self._geometry
        assert g is not None
        out = []
        for entry in entries:
            for a in entry.arrows:
                start, end = self._at(a.source), self._at(a.target)
                if start is not None and end is not None:
                    out.append(arrow_svg(a, start, end, g))
        return out

    def _tick(self, serial: int, m: Marker) -> str:
        g = self._geometry
        assert g is not None
        y = g.lane_y.get(m.pid)
        if y is None:
            return ""
        x = g.x(m.position - self._base)
        return f'<g class="tick" data-serial="{serial}">{tick_svg(m, x, y)}</g>'

    def _shift(self) -> float:
        g = self._geometry
        assert g is not None
        window = self.diagram.window
        first = window[0].event.rank if window else self._base + 1
        return (first - 1 - self._base) * g.spacing

    def _width(self) -> float:
        g = self._geometry
        assert g is not None
        window = self.diagram.window
        if not window:
            return LEFT + g.spacing + MARGIN
        span = window[-1].event.rank - window[0].event.rank + 1
        return LEFT + (span + 1) * g.spacing + MARGIN

    def _upto(self) -> int:
        diagram = self.diagram
        last = [diagram.window[-1].serial] if diagram.window else []
        last += [diagram.markers[-1][0]] if diagram.markers else []
        return max(last, default=0)


def _edges(entries: Iterable[Entry]) -> list[str]:
    """Happened-before edges into these dots, flat: a0, b0, a1, b1 ..."""
    return [v for e in entries for p in e.preds for v in (p, e.event.id)]


# The other panels


def clock_json(clock: VectorClock | Mapping[str, int]) -> dict[str, int]:
    return dict(clock.items())


def client_json(row: ClientView) -> dict[str, Any]:
    return {
        "id": row.id,
        "address": row.address,
        "connected": row.connected,
        "clock": clock_json(row.clock),
        "sent": clock_json(row.sent),
        "sends": row.sends,
        "reports": row.reports,
        "delivered": row.delivered,
        "syncs": row.syncs,
        "refused": row.refused,
        "since": row.since,
        "heard": row.heard,
    }


def state_json(model: LiveModel, now: float, *, since: int = -1) -> dict[str, Any]:
    """Clients (only those changed after version ``since``), sync, rates and counts."""
    table, diagram = model.table, model.diagram
    s = table.sync
    return {
        "now": now,
        "version": table.version,
        "clients": [client_json(row) for row in table.rows(since)],
        "client_count": len(table.clients),
        "connected": sum(row.connected for row in table.clients.values()),
        "sync": {
            "cycle": s.cycle,
            "at": s.at,
            "clients": s.clients,
            "frontier": clock_json(s.frontier),
            "synced": list(s.synced),
            "cycles": s.cycles,
            "sent": s.sent,
            "last_sent_cycle": s.last_sent_cycle,
        },
        "recent": [
            {"cycle": c.cycle, "at": at, "clients": c.clients, "synced": list(c.synced)}
            for c, at in zip(table.recent_cycles, table.cycle_times, strict=True)
        ],
        "rates": table.rates.rates(now),
        "history": table.rates.series("messages", now),
        "refusals": [
            {"at": r.at, "who": r.who, "code": r.code, "message": r.message} for r in table.refusals
        ],
        "events_seen": diagram.events_seen,
        "window": len(diagram.window),
        "max_events": diagram.max_events,
        "log": {
            "events": model.log.events,
            "unseen": model.log.unseen,
            "dropped": model.log.dropped,
            "bytes": model.log.size,
            "max_bytes": model.log.max_bytes,
            "gaps": model.log.gaps,
            "unnamed": model.log.unnamed,
        },
    }
