"""The layering the event-log vocabulary relies on (issue 13, item 2), pinned.

``vclock.events`` sits at the bottom and imports nothing of vclock; tracing (the
Tracer and the ShiViz format) and the tools (which read event logs) import neither
the hub nor the I/O layers; ``import vclock`` does not load the hub; and the two
special peers of the logs, ``"server"`` and ``"*"``, are spelled once. The import
checks read the source (``ast``), so they see every import, including ones that
would only run later.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "vclock"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The absolute names of the modules ``path`` imports, relative imports resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            found.add(name)
            # ``from . import x`` and ``from .pkg import mod`` may name modules too
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def vclock_imports(paths: list[Path]) -> dict[str, set[str]]:
    return {
        module_name(path): {m for m in imported_modules(path) if m.split(".")[0] == "vclock"}
        for path in paths
    }


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_import_scanner_resolves_relative_imports() -> None:
    # The checks below are only as good as this: a scanner that saw nothing would pass them.
    assert "vclock.hub" in imported_modules(PACKAGE / "asyncio" / "server.py")  # from ..hub
    assert "vclock.events" in imported_modules(PACKAGE / "tools" / "checker" / "graph.py")
    assert "vclock.tracing.shiviz" in imported_modules(PACKAGE / "tracing" / "__init__.py")
    assert "msgspec" in imported_modules(PACKAGE / "events.py")


def test_import_vclock_does_not_load_the_hub_or_the_io_layers() -> None:
    code = "import sys, vclock; print(vclock.__file__); print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    where, *modules = result.stdout.split()
    assert Path(where) == PACKAGE / "__init__.py"  # the check runs against this source tree
    loaded = set(modules)
    heavy = ("vclock.hub", "vclock.asyncio", "vclock.web", "vclock.cluster", "vclock.store")
    assert sorted(m for m in loaded if within(m, heavy)) == []


def test_the_vocabulary_imports_nothing_of_vclock_but_the_clock() -> None:
    assert vclock_imports([PACKAGE / "events.py"])["vclock.events"] <= {"vclock.clock"}


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("tracing", ("vclock.hub", "vclock.tools", "vclock.asyncio", "vclock.web")),
        (
            "tools",
            ("vclock.hub", "vclock.asyncio", "vclock.web", "vclock.cluster", "vclock.client"),
        ),
    ],
)
def test_tracing_and_the_tools_stay_off_the_hub_and_the_io_layers(
    layer: str, forbidden: tuple[str, ...]
) -> None:
    imports = vclock_imports(sorted((PACKAGE / layer).rglob("*.py")))
    assert imports  # the layer exists and was read
    wrong = {mod: [m for m in names if within(m, forbidden)] for mod, names in imports.items()}
    assert {mod: names for mod, names in wrong.items() if names} == {}


# Every string "server", "*" and "everyone" in src, with how often. The server id
# and the broadcast peer are defined in vclock.events; the others mean other things.
SPELLINGS = Counter(
    {
        ("events.py", "server"): 1,  # SERVER_ID
        ("events.py", "*"): 1,  # EVERYONE, the broadcast peer
        ("tools/drawing.py", "everyone"): 1,  # how the diagrams show "*": a word, not an id
        ("auth.py", "*"): 1,  # a token file's shared-secret entry, not a peer
        ("demo.py", "server"): 1,  # the `vclock server` subcommand in an argv
    }
)


def test_the_server_id_and_the_broadcast_peer_are_spelled_once() -> None:
    found: Counter[tuple[str, str]] = Counter()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in ("server", "*", "everyone"):
                found[(path.relative_to(PACKAGE).as_posix(), node.value)] += 1
    assert found == SPELLINGS
