"""Ready to publish (issue 15, item 7): the license, one version, the metadata a
package index shows, and a library that pulls in no terminal UI.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import vclock

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def test_the_license_file_is_mit_and_named_by_the_metadata() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the vclock authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    # An SPDX expression and a license classifier together are refused by PEP 639.
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]


def test_the_version_is_written_once_in_the_package() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "vclock.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+", vclock.__version__)


def test_the_installed_metadata_has_the_packages_version() -> None:
    # Fails after a version bump until the package is installed again; the
    # Makefile reinstalls when src/vclock/__init__.py changes.
    assert importlib.metadata.version("vclock") == vclock.__version__


def python_versions_tested() -> set[str]:
    """The versions `make test` runs on: requires-python's least, and SECOND_PYTHON."""
    least = re.fullmatch(r">=(\d+\.\d+)", PROJECT["requires-python"])
    second = re.search(r"^SECOND_PYTHON \?= (\d+\.\d+)$", MAKEFILE, re.M)
    assert least and second
    return {least[1], second[1]}


def test_the_classifiers_name_the_python_versions_the_tests_run_on() -> None:
    prefix = "Programming Language :: Python :: "
    named = {c.removeprefix(prefix) for c in PROJECT["classifiers"] if c.startswith(prefix)}
    assert {v for v in named if re.fullmatch(r"\d+\.\d+", v)} == python_versions_tested()
    assert "Typing :: Typed" in PROJECT["classifiers"]
    assert (ROOT / "src" / "vclock" / "py.typed").exists()


def test_the_project_urls_are_there() -> None:
    assert set(PROJECT["urls"]) == {"Homepage", "Documentation", "Issues"}


def test_the_readme_documents_the_extras_it_names() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.partition("\n## Install\n")[2].partition("\n## ")[0]
    commands = [line.split("#")[0].split() for line in install.splitlines()]
    assert ["pip", "install", "vclock"] in commands
    for extra in ("web", "cluster", "fast"):
        assert extra in PROJECT["optional-dependencies"]
        assert ["pip", "install", f"'vclock[{extra}]'"] in commands, extra


# rich draws `vclock demo`; the library never imports it.

LIBRARY = ["vclock", "vclock.clock", "vclock.tracing", "vclock.asyncio"]


def loaded_packages(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return {name.split(".")[0] for name in result.stdout.split()}


@pytest.mark.parametrize("module", LIBRARY)
def test_the_library_loads_no_terminal_ui(module: str) -> None:
    assert {"rich", "click"} & loaded_packages(module) == set()


def test_the_command_does_load_rich() -> None:
    # The check above would pass for a subprocess that saw nothing.
    assert "rich" in loaded_packages("vclock.cli")


def test_only_the_demo_imports_rich() -> None:
    importers = set()
    for path in sorted((ROOT / "src" / "vclock").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            if any(name.split(".")[0] == "rich" for name in names):
                importers.add(path.relative_to(ROOT / "src" / "vclock").as_posix())
    assert importers == {"demo.py"}
