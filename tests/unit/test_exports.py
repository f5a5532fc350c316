"""The public front doors: every name in __all__ exists, and star-imports work."""

from __future__ import annotations

import importlib

import pytest

import vclock

MODULES = [
    "vclock",
    "vclock.clock",
    "vclock.protocol",
    "vclock.hub",
    "vclock.tracing",
    "vclock.asyncio",
    "vclock.web",
]


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name):
    module = importlib.import_module(name)
    missing = [attr for attr in module.__all__ if not hasattr(module, attr)]
    assert missing == []


@pytest.mark.parametrize("name", MODULES)
def test_all_has_no_duplicates(name):
    names = importlib.import_module(name).__all__
    assert len(names) == len(set(names))


def test_star_import_brings_in_exactly_the_public_names():
    namespace: dict[str, object] = {}
    exec("from vclock import *", namespace)
    imported = {k for k in namespace if k != "__builtins__"}
    assert imported == set(vclock.__all__)
    assert namespace["VectorClock"] is vclock.VectorClock


def test_the_core_names_are_public():
    for name in [
        "VectorClock",
        "Ordering",
        "ClockLimits",
        "InvalidClock",
        "FrameError",
        "ErrorCode",
    ]:
        assert name in vclock.__all__


def test_version_is_a_string():
    assert isinstance(vclock.__version__, str) and vclock.__version__
