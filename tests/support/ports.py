"""Free loopback ports for servers the tests start.

They are drawn below the kernel's ephemeral range (``ip_local_port_range``): a port from
``bind(("", 0))`` lies inside it, where any outgoing connection of a parallel test may take
it (or the port after it, OpenBao's cluster port) as its source port before the server we
start binds it. Below the range only a listener binds, so a port found free stays free —
unless another pytest-xdist worker picks the same one before either binds it, so each worker
draws only ports whose block of four belongs to it.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

# Ports this process has handed out: two settings of one server (API and gateway) must never
# get the same one.
_issued: set[int] = set()
_LOWEST = 10_000


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _worker_stripe() -> tuple[int, int]:
    """(this worker's index, number of workers) under pytest-xdist; (0, 1) otherwise."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return (int(worker) if worker.isdigit() else 0) % max(count, 1), max(count, 1)


def free_port(pairs: bool = False) -> int:
    """A free TCP port on 127.0.0.1, never one handed out before in this process nor one
    another worker may draw; with ``pairs`` the next port is free too (OpenBao's cluster
    port)."""
    ceiling = max(_ephemeral_floor() - 2, _LOWEST + 1000)
    index, count = _worker_stripe()
    for _ in range(500):
        # Ports come in blocks of four, dealt to the workers in turn; a pair starts at most
        # at the block's third port, so both of its ports are this worker's.
        block = random.randrange(_LOWEST // 4, ceiling // 4 - count)
        block += (index - block) % count
        port = block * 4 + random.randrange(3)
        wanted = {port, port + 1} if pairs else {port}
        if wanted & _issued or not all(_bindable(p) for p in wanted):
            continue
        _issued.update(wanted)
        return port
    raise RuntimeError("no free port found")
