"""The HTML diagram in a real headless Chromium: it draws, highlights, zooms, fetches nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.unit.test_diagram import Run, random_run, small_run
from vclock.tools.diagram import load_diagram, write_diagram


def open_diagram(page: Any, run: Path, out: Path) -> Any:
    write_diagram(run, out)
    page.goto(out.as_uri())
    page.wait_for_selector("body[data-ready=true]")
    return load_diagram(run)


def ids(page: Any, selector: str) -> set[str]:
    return set(page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.id)"))


def assert_fetched_nothing(page: Any) -> None:
    assert page.requested, "the page itself should have been requested"
    assert [url for url in page.requested if not url.startswith(("file:", "data:"))] == []


def team_run(directory: Path) -> Path:
    """Four clients talking, two reports, two sync cycles: the picture in the README."""
    run = Run(directory, ["A", "B", "C", "D"])
    for c in "ABCD":
        run.join(c)
    run.local("A", desc="start")
    ab = run.send("A", "B")
    run.local("C")
    da = run.send("D", "A")
    run.deliver(ab)
    bc = run.send("B", "C")
    run.deliver(da)
    run.deliver(bc)
    run.send("C", "server")
    run.sync()
    run.local("B")
    ad = run.send("A", "D")
    run.send("B", "server")
    cb = run.send("C", "B")
    run.deliver(ad)
    run.deliver(cb)
    run.local("D", desc="save")
    run.sync()
    run.leave("A")
    return run.close()


def test_the_small_run_draws_its_lanes_dots_and_arrows(page: Any, tmp_path: Path):
    open_diagram(page, small_run(tmp_path / "small"), tmp_path / "small.html")
    assert page.locator(".process-line").count() == 4
    assert page.locator("g.event").count() == 12
    assert page.locator(".message").count() == 5
    assert page.locator(".message.sync").count() == 2
    assert page.locator(".lane-labels .lane-label").all_text_contents() == ["A", "B", "C", "server"]
    assert page.locator("#counts").inner_text() == (
        "3 processes · 10 events · 3 messages (1 report) · 2 receives · 2 syncs"
        " · server: 1 report received, 1 sync sent"
    )
    assert page.locator(".clock-label").count() == 12
    assert_fetched_nothing(page)


def test_hover_shows_the_clock_and_click_lights_up_past_and_future(page: Any, tmp_path: Path):
    diagram = open_diagram(page, small_run(tmp_path / "small"), tmp_path / "small.html")
    dot = page.locator('g.event[data-id="B:2"]')

    dot.hover()
    tooltip = page.locator("#tooltip")
    assert tooltip.is_visible()
    assert "B:2  receive ← A" in tooltip.inner_text()
    assert "clock {A: 2, B: 2}" in tooltip.inner_text()
    assert "hover" in (dot.get_attribute("class") or "")
    assert page.locator(".message.hover").count() == 1  # A#2, the one arrow B:2 touches

    dot.click()
    assert "selected" in (dot.get_attribute("class") or "")
    assert ids(page, "g.event.past") == diagram.causal_past("B:2") == {"A:1", "A:2", "B:1"}
    assert ids(page, "g.event.future") == diagram.causal_future("B:2")
    assert ids(page, "g.event.dimmed") == {"C:1"}  # concurrent with B:2
    assert page.locator(".message.past").count() == 1  # A#2
    assert page.locator(".message.future").count() == 4
    assert page.locator("#selection").get_attribute("data-past") == "3"
    assert "concurrent with 1" in page.locator("#selection").inner_text()

    page.locator("svg.diagram").click(position={"x": 3, "y": 3})  # the background
    assert page.locator("svg.diagram").locator(".dimmed, .past, .future, .selected").count() == 0
    page.keyboard.press("Escape")
    assert_fetched_nothing(page)


def test_screenshot_of_a_team_run(page: Any, tmp_path: Path, artifacts: Path):
    diagram = open_diagram(page, team_run(tmp_path / "team"), tmp_path / "team.html")
    assert page.locator(".process-line").count() == len(diagram.processes) == 5
    assert page.locator("g.event").count() == len(diagram.events)
    assert page.locator(".message").count() == len(diagram.arrows)
    assert page.locator(".message.sync").count() == sum(a.kind == "sync" for a in diagram.arrows)
    page.locator('g.event[data-id="C:3"]').click()
    page.locator('g.event[data-id="B:4"]').hover()
    assert "clock {" in page.locator("#tooltip").inner_text()
    page.screenshot(path=str(artifacts / "diagram.png"))
    assert_fetched_nothing(page)


def test_a_long_run_scrolls_sideways_and_zooms(page: Any, tmp_path: Path, artifacts: Path):
    diagram = open_diagram(
        page, random_run(tmp_path / "long", 2000, clients=5), tmp_path / "l.html"
    )
    assert page.locator("g.event").count() == len(diagram.events)
    assert page.locator(".clock-label").count() == 0
    scroller = page.locator("#scroller")
    width = scroller.evaluate("s => [s.scrollWidth, s.clientWidth]")
    assert width[0] > 10 * width[1]  # fixed spacing per rank: it scrolls, it is not squeezed

    svg = page.locator("svg.diagram")
    before = float(svg.get_attribute("width") or 0)
    page.locator("#zoom-out").click()
    assert float(svg.get_attribute("width") or 0) < before
    page.locator("#zoom-reset").click()
    assert float(svg.get_attribute("width") or 0) == before

    box = scroller.bounding_box()
    page.mouse.move(box["x"] + 400, box["y"] + 100)
    page.keyboard.down("Control")
    page.mouse.wheel(0, 400)  # ctrl+wheel down: zoom out
    page.keyboard.up("Control")
    page.wait_for_function(
        f"document.querySelector('svg.diagram').getAttribute('width') < {before}"
    )

    # Scrolled far to the right, the lane names stay in view.
    page.locator("#zoom-reset").click()
    scroller.evaluate("s => { s.scrollLeft = s.scrollWidth / 2; }")
    label = page.locator(".lane-labels .lane-label").first.bounding_box()
    assert label and 0 <= label["x"] < 120
    page.locator("g.event").nth(len(diagram.events) // 2).click()
    assert page.locator("g.event.dimmed").count() > 0
    page.screenshot(path=str(artifacts / "diagram-long.png"))
    assert_fetched_nothing(page)


#: After "fit": the scroller's visible box, the drawing's box (both SVGs), the smallest
#: text as drawn (font size times the SVG's scale), whether the scroller scrolls.
FIT_GEOMETRY = """() => {
  const s = document.getElementById('scroller'), box = s.getBoundingClientRect();
  const view = {left: box.left, top: box.top,
                right: box.left + s.clientWidth, bottom: box.top + s.clientHeight};
  const parts = [...s.querySelectorAll('svg.diagram, svg.lane-labels')]
    .map(e => e.getBoundingClientRect());
  const drawing = {left: Math.min(...parts.map(r => r.left)),
                   top: Math.min(...parts.map(r => r.top)),
                   right: Math.max(...parts.map(r => r.right)),
                   bottom: Math.max(...parts.map(r => r.bottom))};
  const sizes = [...s.querySelectorAll('svg text')]
    .map(t => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a);
  return {view, drawing, smallest: Math.min(...sizes), texts: sizes.length,
          scrolls: s.scrollWidth > s.clientWidth + 1 || s.scrollHeight > s.clientHeight + 1};
}"""

#: "fit" never draws text smaller than this many px (diagram.js MIN_TEXT).
MIN_TEXT = 8.0


def fitted(page: Any) -> dict[str, Any]:
    page.locator("#zoom-fit").click()
    return page.evaluate(FIT_GEOMETRY)


def inside(drawing: dict[str, float], view: dict[str, float]) -> bool:
    return (
        drawing["left"] >= view["left"] - 1
        and drawing["top"] >= view["top"] - 1
        and drawing["right"] <= view["right"] + 1
        and drawing["bottom"] <= view["bottom"] + 1
    )


def test_fit_with_25_lanes_fits_width_and_height(browser: Any, tmp_path: Path, artifacts: Path):
    """A tall window: the whole drawing of 25 clients and the server fits, text readable."""
    context = browser.new_context(viewport={"width": 1280, "height": 1300})
    page = context.new_page()
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    try:
        run = random_run(tmp_path / "wide", 120, clients=25)
        diagram = open_diagram(page, run, tmp_path / "wide.html")
        assert len(diagram.processes) == 26
        before = page.evaluate(FIT_GEOMETRY)
        assert not inside(before["drawing"], before["view"])  # at 1:1 it does not fit
        after = fitted(page)
        assert inside(after["drawing"], after["view"]), after
        assert after["smallest"] >= MIN_TEXT - 0.01, after
        assert not after["scrolls"]
        page.screenshot(path=str(artifacts / "diagram-25-fit.png"))
        assert_fetched_nothing(page)
    finally:
        context.close()


def test_fit_with_25_lanes_stops_at_readable_text_and_scrolls(
    page: Any, tmp_path: Path, artifacts: Path
):
    """1280x800: 26 labelled lanes cannot fit with readable labels; fit goes as far as
    the smallest text allows (8 px) and the drawing scrolls."""
    run = random_run(tmp_path / "tall", 24, clients=25)
    diagram = open_diagram(page, run, tmp_path / "tall.html")
    assert len(diagram.processes) == 26
    assert page.locator(".clock-label").count() == len(diagram.events)  # labelled
    after = fitted(page)
    assert after["smallest"] >= MIN_TEXT - 0.01, after
    assert after["smallest"] <= MIN_TEXT + 0.01, after  # as small as allowed, no smaller
    assert after["scrolls"] and not inside(after["drawing"], after["view"])
    page.screenshot(path=str(artifacts / "diagram-25-min.png"))
    page.locator("#zoom-reset").click()  # 1:1 is still there
    assert page.locator("#zoom-level").inner_text() == "100%"
    assert_fetched_nothing(page)
