"""Bounded on-disk buffer where numbered metric batches wait while the agent is offline.

Layout: one file per batch, ``<sequence, 20 digits>.batch``, plus ``sequence`` holding the
next unused number. Every file is written to a ``.tmp`` name, fsynced, renamed and the
directory fsynced, so a crash leaves either the whole file or none of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

from agent.files import TEMP_SUFFIX, fsync_directory, write_atomically

BATCH_SUFFIX = ".batch"
COUNTER_NAME = "sequence"
_BATCH_NAME = re.compile(r"^(\d{20})\.batch$")


class Spool:
    """Numbered batches on disk, oldest dropped first once ``max_bytes`` of payload is held.

    Sequence numbers start at 1 and never repeat for a directory, even after every batch was
    acknowledged, so the control plane can deduplicate by sequence. Thread-safe: the
    sampler appends on a worker thread while the link reads and acknowledges, each call
    whole, so neither waits for the other's fsync on the event loop.
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.dropped_batches = 0
        """Batches discarded unsent to stay within ``max_bytes`` since this spool was opened."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._sizes: dict[int, int] = {}  # sequence -> payload size, oldest first
        self._size = 0
        self._next = 1
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        """Forget torn writes, index complete batches and recover the counter."""
        found: dict[int, int] = {}
        for entry in os.scandir(self.directory):
            if entry.name.endswith(TEMP_SUFFIX):
                os.unlink(entry.path)  # a write a crash interrupted: never acknowledged
            elif match := _BATCH_NAME.match(entry.name):
                found[int(match.group(1))] = entry.stat().st_size
        fsync_directory(self.directory)
        for sequence in sorted(found):
            self._sizes[sequence] = found[sequence]
            self._size += found[sequence]
        self._next = max(self._read_counter(), max(found, default=0) + 1)
        self._drop_oldest()  # max_bytes may have shrunk since the last run

    def _read_counter(self) -> int:
        path = self.directory / COUNTER_NAME
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return 1
        # Written atomically, so anything unreadable is damage: guessing could reuse numbers.
        if not text.strip().isdigit():
            raise ValueError(f"{path} is corrupt: {text[:40]!r}")
        return int(text)

    def next_sequence(self) -> int:
        """The sequence the next ``append`` will use (callers may embed it in the payload)."""
        with self._lock:
            return self._next

    def append(self, payload: bytes) -> int:
        """Store ``payload`` durably under the next sequence and return that sequence."""
        if len(payload) > self.max_bytes:
            raise ValueError(
                f"batch of {len(payload)} bytes cannot fit a spool of {self.max_bytes} bytes"
            )
        with self._lock:
            sequence = self._next
            # Written before anything is dropped: a full disk loses the new batch, not old ones.
            write_atomically(self._path(sequence), payload)
            self._next = sequence + 1
            self._sizes[sequence] = len(payload)
            self._size += len(payload)
            self._drop_oldest()  # never the new batch: it fits on its own
            return sequence

    def pending(self, limit: int | None = None) -> list[tuple[int, bytes]]:
        """Up to ``limit`` batches, oldest first."""
        batches: list[tuple[int, bytes]] = []
        with self._lock:
            for sequence in list(self._sizes):
                if limit is not None and len(batches) >= limit:
                    break
                try:
                    batches.append((sequence, self._path(sequence).read_bytes()))
                except FileNotFoundError:  # removed behind our back: nothing left to send
                    self._size -= self._sizes.pop(sequence)
        return batches

    def acknowledge(self, up_to: int) -> None:
        """Delete every batch with sequence <= ``up_to``; repeating it is harmless."""
        with self._lock:
            self._delete([s for s in self._sizes if s <= up_to])

    def __len__(self) -> int:
        with self._lock:
            return len(self._sizes)

    @property
    def size_bytes(self) -> int:
        """Payload bytes held (what ``max_bytes`` bounds)."""
        with self._lock:
            return self._size

    def _drop_oldest(self) -> None:
        """Drop oldest batches until the payload fits ``max_bytes`` (newest data matters most)."""
        victims: list[int] = []
        size = self._size
        for sequence, batch_size in self._sizes.items():
            if size <= self.max_bytes:
                break
            victims.append(sequence)
            size -= batch_size
        self.dropped_batches += len(victims)
        self._delete(victims)

    def _delete(self, sequences: list[int]) -> None:
        if not sequences:
            return
        if self._next - 1 in sequences:
            # The newest file is what recovers the counter on open; persist it first.
            write_atomically(self.directory / COUNTER_NAME, f"{self._next}\n".encode("ascii"))
        for sequence in sequences:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(sequence))
            self._size -= self._sizes.pop(sequence)
        fsync_directory(self.directory)

    def _path(self, sequence: int) -> Path:
        return self.directory / f"{sequence:020d}{BATCH_SUFFIX}"
