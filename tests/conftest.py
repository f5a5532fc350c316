"""Markers by place and by fixture, so a test is marked by what it uses, not by hand.

- ``integration``: everything in tests/integration and tests/browser (real
  processes, sockets, servers, browsers). ``pytest -m "not integration"`` is the
  fast set (unit and property tests) that ``make check`` runs.
- ``browser``: everything in tests/browser (a real Chromium through playwright).
- ``cluster``: tests that use a real nats-server (the ``nats_url`` or
  ``nats_cluster`` fixture, or a module marked ``needs_nats``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
INTEGRATION_DIRS = {"integration", "browser"}
NATS_FIXTURES = {"nats_url", "nats_cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            top = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:  # not under tests/
            continue
        if top in INTEGRATION_DIRS:
            item.add_marker(pytest.mark.integration)
        if top == "browser":
            item.add_marker(pytest.mark.browser)
        if NATS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)
