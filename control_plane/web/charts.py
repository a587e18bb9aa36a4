"""Charts for the console's pages as uPlot draws them (static/console.js ``draw``): series
on shared times (epoch seconds), each a line, a dashed forecast or marks alone (anomalies),
a forecast or its marks in the colour of the series they belong to."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from control_plane.metrics.series import split_series
from control_plane.usage.series import Point

Style = Literal["line", "forecast", "marks"]


@dataclass(frozen=True)
class Line:
    label: str
    values: Mapping[float, float | None]  # epoch seconds → value
    style: Style = "line"
    color: int | None = None  # the drawer's palette index (None: the series' own position)


# The resource series a server's chart draws, first and in this order; then each
# filesystem's used per cent.
RESOURCE_SERIES = {"cpu_percent": "CPU %", "memory_percent": "Memory %"}


def series_label(name: str) -> str | None:
    """The label a resource chart gives series ``name`` (None: it is not charted)."""
    if name in RESOURCE_SERIES:
        return RESOURCE_SERIES[name]
    gauge, mountpoint = split_series(name)
    return f"Disk {mountpoint} %" if gauge == "fs_used_percent" else None


def resource_lines(series: Mapping[str, Iterable[Point]]) -> list[Line]:
    """CPU, memory, then each filesystem's used per cent (by name): a line each."""
    first = [name for name in RESOURCE_SERIES if name in series]
    disks = sorted(n for n in series if n not in RESOURCE_SERIES and series_label(n))
    return [
        Line(label, {p.t.timestamp(): round(p.avg, 2) for p in series[name]})
        for name in (*first, *disks)
        if (label := series_label(name)) is not None
    ]


def columns(lines: Sequence[Line]) -> dict[str, Any]:
    """uPlot's data: the union of the lines' times, then one column per line (None where a
    line has no value then), with each line's label, style and colour."""
    times = sorted({t for line in lines for t in line.values})
    return {
        "labels": [line.label for line in lines],
        "styles": [line.style for line in lines],
        "colors": [i if line.color is None else line.color for i, line in enumerate(lines)],
        "data": [times, *([line.values.get(t) for t in times] for line in lines)],
    }


def script_json(chart: Mapping[str, Any]) -> str:
    """JSON to put inside ``<script>``: "<" escaped, so no agent-sent name (a mountpoint, a
    server's) can close the tag."""
    return json.dumps(chart).replace("<", "\\u003c")
