"""A cost report as CSV: one row per group (key, name, currency, cost, billed, unpriced)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from control_plane.costs.report import CostReport

COLUMNS = ("group_by", "key", "name", "currency", "cost", "billed", "unpriced")
MEDIA_TYPE = "text/csv; charset=utf-8"
CHUNK_ROWS = 2_000


def filename(report: CostReport) -> str:
    return f"costs-{report.start:%Y%m%d}-{report.end:%Y%m%d}-{report.group_by}.csv"


def chunks(report: CostReport) -> Iterator[str]:
    """The groups, then a ``total`` row per currency, in pieces of CHUNK_ROWS rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    rows = [
        (report.group_by, g.key, g.name, g.currency, g.cost, g.billed, g.unpriced)
        for g in report.groups
    ]
    rows += [("total", "", "", t.currency, t.cost, t.billed, t.unpriced) for t in report.totals]
    for n, row in enumerate(rows, 1):
        writer.writerow((*row[:4], str(row[4]), str(row[5]), "yes" if row[6] else "no"))
        if n % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
