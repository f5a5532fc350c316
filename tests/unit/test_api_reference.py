"""The API reference (issue 15, item 8): ``make docs`` renders it from the
docstrings with pdoc (docs/make_api_reference.py), and every public name of
``vclock``, ``vclock.asyncio`` and ``vclock.tracing`` has a docstring.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import typing
from pathlib import Path
from types import ModuleType

import pytest

import vclock
from vclock.client import ClientEvent

GENERATOR = Path(__file__).resolve().parents[2] / "docs" / "make_api_reference.py"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_api_reference", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = load_generator()

PUBLIC = [
    (module, name)
    for module in ("vclock.asyncio", "vclock.tracing", "vclock")
    for name in importlib.import_module(module).__all__
]


def test_the_reference_covers_the_front_doors() -> None:
    assert GEN.MODULES == ["vclock", "vclock.asyncio", "vclock.tracing"]


@pytest.mark.parametrize(("module", "name"), PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_every_public_name_has_a_docstring(module: str, name: str) -> None:
    member = GEN.load()[module].members.get(name)
    assert member is not None, f"pdoc does not see {module}.{name}"
    assert member.docstring.strip(), f"{module}.{name} has no docstring"


def test_every_public_method_and_property_has_a_docstring() -> None:
    assert GEN.undocumented() == []


def test_a_reexported_constant_has_the_docstring_written_where_it_is_assigned() -> None:
    shiviz = GEN.load()["vclock.tracing"].members["SHIVIZ_REGEX"].docstring
    assert "Log parser RegExp" in shiviz
    assert GEN.load()["vclock"].members["SHIVIZ_REGEX"].docstring == shiviz


def test_every_event_a_client_yields_is_public() -> None:
    events = {cls.__name__ for cls in typing.get_args(ClientEvent)}
    assert events <= set(vclock.__all__)


def test_the_check_finds_what_lacks_a_docstring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "undocumented_sample.py").write_text(
        '__all__ = ["f", "C", "X", "Y"]\n'
        "def f(): pass\n"
        "class C:\n"
        '    """Documented."""\n'
        "    field: int = 0\n"
        "    def m(self): pass\n"
        "    def _private(self): pass\n"
        "    @property\n"
        "    def p(self): return 1\n"
        "X = 1\n"
        "Y = 2\n"
        '"""Documented."""\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(GEN, "MODULES", ["undocumented_sample"])
    try:
        assert GEN.undocumented() == [
            "undocumented_sample.f",
            "undocumented_sample.C.m",
            "undocumented_sample.C.p",
            "undocumented_sample.X",
        ]
        assert GEN.main([str(tmp_path / "out")]) == 1
        assert not (tmp_path / "out").exists()
    finally:
        sys.modules.pop("undocumented_sample", None)


def test_the_reference_is_rendered(tmp_path: Path) -> None:
    assert GEN.main([str(tmp_path)]) == 0
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    assert pages == {"index.html", "vclock.html", "vclock/asyncio.html", "vclock/tracing.html"}
    client = (tmp_path / "vclock" / "asyncio.html").read_text(encoding="utf-8")
    for name in ("connect", "Client", "Client.fetch_peers", "serve", "ServerConfig"):
        assert f'id="{name}"' in client, name
    tracing = (tmp_path / "vclock" / "tracing.html").read_text(encoding="utf-8")
    assert 'id="Tracer.prepare_send"' in tracing
    assert f"vclock {vclock.__version__}" in tracing  # the footer
