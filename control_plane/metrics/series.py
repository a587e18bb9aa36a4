"""The series MailFleet keeps per server, and how one stored sample becomes their values.

A series is a gauge over time. Machine-wide ones are named after the sample field they come
from (``cpu_percent``, ``net_rx_bytes_per_second``…); each filesystem has five, named
``<gauge>:<mountpoint>`` (``fs_used_bytes:/``, ``fs_inodes_used:/var``). Rollup rows (1-minute
and hourly) hold count/sum/min/max of one series per bucket. Cumulative byte counters are
not series: the agent sends their rates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Machine-wide gauges, as named in a stored sample (MetricSample's columns).
GAUGES = (
    "cpu_percent",
    "load1",
    "load5",
    "load15",
    "memory_total_bytes",
    "memory_used_bytes",
    "memory_available_bytes",
    "swap_total_bytes",
    "swap_used_bytes",
    "process_count",
    "net_rx_bytes_per_second",
    "net_tx_bytes_per_second",
    "disk_read_bytes_per_second",
    "disk_write_bytes_per_second",
    "mail_queue_messages",
)
# Per filesystem: the gauge and the FilesystemUsage field it is read from.
FILESYSTEM_GAUGES = {
    "fs_used_bytes": "used_bytes",
    "fs_total_bytes": "total_bytes",
    "fs_free_bytes": "free_bytes",  # available to users: what df's Use% counts with used
    "fs_inodes_used": "inodes_used",
    "fs_inodes_total": "inodes_total",
}
SEPARATOR = ":"


def filesystem_series(gauge: str, mountpoint: str) -> str:
    """``fs_used_bytes:/var``: one filesystem gauge's series name."""
    return f"{gauge}{SEPARATOR}{mountpoint}"


def filesystem_capacity(used: float, free: float | None, total: float) -> float:
    """What a filesystem's used space is a share of, as df's Use% (and so health, usage
    and capacity) count it: used + available to users, since root's reserve is not space
    users can fill; the total when no free figure was sent."""
    return used + free if free is not None and used + free > 0 else total


def split_series(name: str) -> tuple[str, str | None]:
    """(gauge, mountpoint or None): ``fs_used_bytes:/var`` → (``fs_used_bytes``, ``/var``)."""
    gauge, separator, mountpoint = name.partition(SEPARATOR)
    return (gauge, mountpoint) if separator else (gauge, None)


def sample_series(sample: Mapping[str, Any]) -> dict[str, float]:
    """Every series' value in one stored sample row (a dict of MetricSample's columns).

    Gauges the sample does not carry (None: the agent's first sample has no rates, a VPS
    without MailU has no queue) are left out rather than recorded as zero.
    """
    values = {name: float(sample[name]) for name in GAUGES if sample.get(name) is not None}
    filesystems = sample.get("filesystems") or "[]"
    for fs in json.loads(filesystems) if isinstance(filesystems, str) else filesystems:
        mountpoint = fs.get("mountpoint")
        if not mountpoint:
            continue
        for gauge, field in FILESYSTEM_GAUGES.items():
            if fs.get(field) is not None:
                values[filesystem_series(gauge, mountpoint)] = float(fs[field])
    return values
