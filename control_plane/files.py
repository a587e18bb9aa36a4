"""Files only their owner may read, from the first byte (never created wide, then narrowed)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW


def create_private(path: Path) -> None:
    """Make ``path`` an empty 0600 file unless it exists (what is there is left alone)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, _CREATE | os.O_EXCL, 0o600))


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``, mode 0600 whatever the umask: a temporary file
    beside it, fsynced, renamed over it. Another ``mode`` (a script's 0700) is given only
    once the data is all there."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, _CREATE | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # a leftover temporary file keeps its mode
            handle.write(data)
            handle.flush()
            if mode != 0o600:
                os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
