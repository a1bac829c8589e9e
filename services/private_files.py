"""Directories and files that only their owner (root) may read.

Everything cnm knows (every network, address and sandbox, and the Redis
append-only file holding all of it) lives in its run dir, data dir, logs and
the driver's state dir: directories are 0700, files 0600. The sandboxes'
hosts and resolv.conf files are the exception the runtime needs (0644, bind
mounted into containers whose users are not root), reachable only through
their 0700 parent on the host.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

# For a process whose every new file is private (cnmd, and through it Redis).
PRIVATE_UMASK = 0o077


def private_dir(path: Path, *, marks: Iterable[str] | None = None) -> Path:
    """Creates `path` (and missing parents) mode 0700, or tightens it to 0700.

    `marks` None: the directory is cnm's own (a state or log dir), always
    tightened. Otherwise a directory that already existed (one a user named,
    perhaps shared) is tightened only when it holds one of `marks`, files cnm
    made there before (an older version left it 0755); else it is left as is.
    """
    existed = path.is_dir()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not existed or marks is None or any((path / m).exists() for m in marks):
        os.chmod(path, 0o700)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """An fd of `path`, created or made mode 0600 (an older file may be 0644)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def open_log(path: Path) -> BinaryIO:
    """A log file (0600, in a 0700 directory) opened for appending."""
    private_dir(path.parent)
    return os.fdopen(open_private(path), "ab")
