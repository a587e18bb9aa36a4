"""The SMTP observer's one promise: its EHLO reply's first line names the address it sees
the client at (``250-mailfleet-observer sees 198.18.3.7``).

Shared by the agent's outbound probe (which reads it) and the control plane's observer
(which writes it), so neither imports the other. The observer verifies a server's outbound
port 25 and, later, which address an IP switch makes its mail leave from.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

OBSERVER_NAME = "mailfleet-observer"
_SEES = re.compile(rf"^{re.escape(OBSERVER_NAME)} sees (\S+)$")


def canonical_address(text: str) -> str | None:
    """An IP address in one spelling (IPv4-mapped IPv6 as IPv4); None if not an address."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def sees_line(address: str) -> str:
    """The EHLO greeting text (after ``250-``) for a client seen at ``address``."""
    return f"{OBSERVER_NAME} sees {canonical_address(address) or address}"


def seen_address(lines: Iterable[str]) -> str | None:
    """The address an observer's EHLO reply (texts after the code) says it saw, if any."""
    for line in lines:
        match = _SEES.match(line.strip())
        if match:
            return canonical_address(match.group(1))
    return None
