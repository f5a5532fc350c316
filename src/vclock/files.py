"""Files that hold message bodies and clocks: readable by their owner only.

The server's database (``--data``), event logs (``--log``) and a client's state
file (``--state``) hold what clients sent each other. They are created with mode
0600 and the folders made for them with 0700, explicitly, whatever the process's
umask (a library must not change the umask of the program that uses it). Files
that already exist keep the mode their owner gave them.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dirs(path: Path) -> None:
    """Create folder ``path`` and any missing parents, each with mode 0700."""
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():  # a file in the way: say so, not "File exists"
                raise NotADirectoryError(
                    errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder)
                ) from None


def open_private(path: Path, flags: int) -> int:
    """``os.open(path, flags | O_CREAT)`` creating the file with mode 0600; a descriptor."""
    return os.open(path, flags | os.O_CREAT, FILE_MODE)


__all__ = ["DIR_MODE", "FILE_MODE", "make_private_dirs", "open_private"]
