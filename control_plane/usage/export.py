"""A usage export, streamed: CSV or JSON records (time, series, avg, min, max, count)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Literal

from control_plane.usage.service import Usage

ExportFormat = Literal["csv", "json"]
COLUMNS = ("time", "series", "avg", "min", "max", "count")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
CHUNK_ROWS = 2_000


def filename(usage: Usage, fmt: ExportFormat) -> str:
    """``usage-<server>-<from>-<to>-<step>.csv`` (UTC, to the minute)."""
    span = f"{usage.start:%Y%m%dT%H%MZ}-{usage.end:%Y%m%dT%H%MZ}"
    return f"usage-{usage.server_id}-{span}-{usage.step}.{fmt}"


def chunks(usage: Usage, fmt: ExportFormat) -> Iterator[str]:
    """The export in pieces of CHUNK_ROWS rows (a 90-day export is ~1 MB per series at 1h)."""
    return _csv(usage) if fmt == "csv" else _json(usage)


def _csv(usage: Usage) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for n, (name, p) in enumerate(usage.rows(), 1):
        writer.writerow((p.t.isoformat(), name, repr(p.avg), repr(p.min), repr(p.max), p.count))
        if n % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(usage: Usage) -> Iterator[str]:
    """A JSON array of records, so ``json.load`` reads the whole export back."""
    separator = "["
    batch: list[str] = []
    for name, p in usage.rows():
        record = dict(
            zip(COLUMNS, (p.t.isoformat(), name, p.avg, p.min, p.max, p.count), strict=True)
        )
        batch.append(separator + json.dumps(record))
        separator = ",\n"
        if len(batch) == CHUNK_ROWS:
            yield "".join(batch)
            batch = []
    yield "".join(batch) + ("]" if separator != "[" else "[]") + "\n"
