"""Charts for the console's pages as uPlot draws them (static/console.js ``draw``): series
on shared times (epoch seconds), each a line, a dashed forecast or marks alone (anomalies),
a forecast or its marks in the colour of the series they belong to."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Style = Literal["line", "forecast", "marks"]


@dataclass(frozen=True)
class Line:
    label: str
    values: Mapping[float, float | None]  # epoch seconds → value
    style: Style = "line"
    color: int | None = None  # the drawer's palette index (None: the series' own position)


def lines_of(chart: Mapping[str, Any]) -> list[Line]:
    """A chart's columns (``pages.fleet.chart_data``) back as lines, to add others to."""
    times = chart["data"][0]
    return [
        Line(label, {t: v for t, v in zip(times, column, strict=True) if v is not None})
        for label, column in zip(chart["labels"], chart["data"][1:], strict=True)
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
