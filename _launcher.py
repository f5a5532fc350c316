"""Runs `vclock` from a checkout, for the seed's `python server.py` / `python client.py`.

Uses the checkout's .venv (made by `make demo` or `make test`) when the current
Python lacks vclock's dependencies, so plain `python client.py` works.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def run(args: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    try:
        from vclock.cli import main
    except ImportError as exc:
        venv_python = ROOT / ".venv" / "bin" / "python"
        if venv_python.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
            os.execv(venv_python, [str(venv_python), sys.argv[0], *sys.argv[1:]])
        sys.exit(f"vclock's dependencies are missing ({exc}); run `make demo` once to set up .venv")
    main(args + sys.argv[1:])
