"""The address outbound mail leaves this machine from, now.

When the control plane set an SNAT for outbound SMTP (``network.snat.set``, kept in the
agent's network state), that address; otherwise the one the kernel picks for an outside
destination (the machine's main address, ``agent.network``'s route lookup). A network state
that cannot be read says nothing about which address is in use: ``unknown``, not a guess.

Lines are attributed to the address in use when they are read; ``network.snat.set`` reads
the log first (``command.counted_before``), so mail sent before an IP switch stays with the
old address (only lines Postfix writes during the switch itself may land on the new one).
"""

from __future__ import annotations

from pathlib import Path

from agent.errors import CommandError
from agent.network import state as network_state
from agent.network.commands import default_source

UNKNOWN_SOURCE = "unknown"


def outbound_source(state_dir: Path) -> str:
    try:
        desired = network_state.load(state_dir / network_state.FILE_NAME)
    except CommandError:
        return UNKNOWN_SOURCE
    if desired is not None and desired.snat.to_ip:
        return desired.snat.to_ip
    return default_source() or UNKNOWN_SOURCE
