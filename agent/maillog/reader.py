"""Reading what a log file gained since the last read, across rotations and truncations.

The position is (inode, offset) and moves only past whole lines, so a line the writer has
half written is read whole next time. When the path names a new file (logrotate moved the
old one to ``mail.log.1``, or Docker to ``…-json.log.1``), the rest of the old file is read
first if it is still beside it (found by inode), then the new one from its start. A file
shorter than the offset was truncated in place (``copytruncate``): read from its start.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024
LONGEST_LINE = 64 * 1024  # a "line" longer than this without a newline is skipped


@dataclass
class Position:
    inode: int | None = None
    offset: int = 0


def _rotated(path: Path, inode: int) -> Path | None:
    """The file beside ``path`` that was ``path`` before rotation (same inode), if any."""
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return None
    for candidate in sorted(siblings):
        if candidate.name.startswith(path.name) and candidate != path:
            try:
                if candidate.stat().st_ino == inode and candidate.is_file():
                    return candidate
            except OSError:
                continue
    return None


def _lines(path: Path, position: Position, whole_file: bool) -> Iterator[str]:
    """Lines from ``position.offset`` on, advancing it past each one yielded; with
    ``whole_file`` the last line counts even without its newline (the file is finished)."""
    with path.open("rb") as handle:
        handle.seek(position.offset)
        pending = b""
        while chunk := handle.read(CHUNK):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                position.offset += len(raw) + 1
                yield raw.decode("utf-8", "replace")
            if len(pending) > LONGEST_LINE:
                position.offset += len(pending)
                pending = b""
        if whole_file and pending:
            position.offset += len(pending)
            yield pending.decode("utf-8", "replace")


def new_lines(path: Path, position: Position) -> Iterator[str]:
    """Every line written to ``path`` since ``position`` (updated as lines are yielded)."""
    try:
        current = path.stat()
    except FileNotFoundError:
        current = None
    if position.inode is not None and (current is None or current.st_ino != position.inode):
        old = _rotated(path, position.inode)
        if old is not None:
            yield from _lines(old, position, whole_file=True)
        if current is None:
            return
        position.inode, position.offset = current.st_ino, 0
    if current is None:
        return
    if position.inode is None:
        position.inode = current.st_ino
    if current.st_size < position.offset:
        position.offset = 0
    yield from _lines(path, position, whole_file=False)
