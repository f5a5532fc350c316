"""Generate the API reference from the docstrings, with pdoc: ``make docs``.

    python docs/make_api_reference.py [OUT]    # default build/docs; open OUT/index.html

It documents the public front doors, each by its ``__all__``: ``vclock`` (the
clock, the events a client yields, the errors), ``vclock.asyncio`` (``connect``,
``Client``, the server) and ``vclock.tracing`` (the ``Tracer``, ShiViz logs). It
fails, writing nothing, when a public name there, or a public method or property
of a public class, has no docstring; tests/unit/test_api_reference.py checks the
same. Google-style docstrings; reST roles such as :class:`Client` become links.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import pdoc
import pdoc.doc
import pdoc.doc_ast
import pdoc.render

#: The documented modules: these, not their submodules.
MODULES = ["vclock", "vclock.asyncio", "vclock.tracing"]
OUT = Path("build/docs")


def specs() -> list[str]:
    """pdoc's module list: each module, then a pattern that drops its submodules."""
    return [spec for name in MODULES for spec in (name, f"!{name.replace('.', '[.]')}[.]")]


def _variable_docstring(module_name: str, name: str) -> str:
    """The docstring of the constant ``name`` of a module: the string after its
    assignment, in the module that assigns it. pdoc looks in the module that
    documents it only, not in the one that ``from .x import name`` took it from."""
    module = importlib.import_module(module_name)
    own = pdoc.doc_ast.walk_tree(module).var_docstrings.get(name)
    if own:
        return own
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    package = module_name if hasattr(module, "__path__") else module.__package__
                    origin = importlib.util.resolve_name(
                        "." * node.level + (node.module or ""), package
                    )
                    return _variable_docstring(origin, alias.name)
    return ""


def load() -> dict[str, pdoc.doc.Module]:
    """The documented modules, as pdoc sees them (and renders them: pdoc caches
    them), with the docstrings of re-exported constants filled in."""
    modules = {name: pdoc.doc.Module.from_name(name) for name in MODULES}
    for name, module in modules.items():
        for member in module.members.values():
            if isinstance(member, pdoc.doc.Variable) and not member.docstring:
                member.docstring = _variable_docstring(name, member.name)
    return modules


def _needs_docstring(cls: pdoc.doc.Class, member: pdoc.doc.Doc[object]) -> bool:
    """Public methods and properties; data fields need none (the class says what they are)."""
    if member.name.startswith("_"):
        return False
    static = inspect.getattr_static(cls.obj, member.name, None)
    return isinstance(member, pdoc.doc.Function) or isinstance(static, property)


def undocumented() -> list[str]:
    """Every public name of MODULES, and public method or property of a public
    class there, that has no docstring, as ``module.name`` or ``module.Class.name``."""
    missing: list[str] = []
    for name, module in load().items():
        public = getattr(module.obj, "__all__", None)
        assert public is not None, f"{name} has no __all__"
        absent = sorted(set(public) - set(module.members))
        missing += [f"{name}.{attr} (not seen by pdoc)" for attr in absent]
        for member in module.members.values():
            if not member.docstring.strip():
                missing.append(f"{name}.{member.name}")
            if isinstance(member, pdoc.doc.Class):
                missing += [
                    f"{name}.{member.name}.{sub.name}"
                    for sub in member.own_members
                    if _needs_docstring(member, sub) and not sub.docstring.strip()
                ]
    return missing


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else OUT
    missing = undocumented()
    if missing:
        print("these public names have no docstring:", *missing, sep="\n  ", file=sys.stderr)
        return 1
    import vclock

    pdoc.render.configure(docformat="google", footer_text=f"vclock {vclock.__version__}")
    pdoc.pdoc(*specs(), output_directory=out)
    print(f"API reference in {out}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
