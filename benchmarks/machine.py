"""Facts about the machine and the software versions, for the report."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from . import procs

PACKAGES = ("vclock", "msgspec", "nats-py", "uvloop", "vectorclock", "rich")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def nats_server_version() -> str:
    try:
        out = subprocess.run(
            [procs.nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip().removeprefix("nats-server: ") or out.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({exc})"


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=procs.REPO_ROOT,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
            text=True, timeout=10, cwd=procs.REPO_ROOT,
        ).stdout.strip()  # fmt: skip
        return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def facts() -> dict[str, Any]:
    ram = ram_bytes()
    soft, hard = procs.raise_nofile_limit()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "open_files_limit": f"{soft} (hard {hard})",
        "git": git_revision(),
        "versions": {
            **{name: version(name) for name in PACKAGES},
            "nats-server": nats_server_version(),
        },
    }
