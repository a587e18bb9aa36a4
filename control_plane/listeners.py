"""Listen addresses: checked before anything starts, so a port another program holds ends
``serve`` with one line naming the address and the setting to change, never a traceback."""

from __future__ import annotations

import errno
import socket

from control_plane.settings import SettingsError, parse_host_port


class AddressInUse(SettingsError):
    """A listen address is taken, or cannot be had on this machine."""

    def __init__(self, addr: str, setting: str, reason: str = "is in use by another program"):
        super().__init__(f"{addr} {reason}; set {setting} to a free address")


def bind(addr: str, setting: str) -> socket.socket:
    """A TCP socket bound to ``addr`` (not yet listening), as servers bind (SO_REUSEADDR:
    a port in TIME_WAIT is free, one with a listener is not)."""
    host, port = parse_host_port(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # proto says TCP, and without it every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(addr, setting) from None
        if exc.errno == errno.EACCES:
            raise AddressInUse(addr, setting, "cannot be listened on without privileges") from None
        raise AddressInUse(addr, setting, f"cannot be listened on ({exc.strerror})") from None
    return sock


def ensure_free(addr: str, setting: str) -> None:
    """Refuse an address something else listens on (the caller binds it soon after)."""
    bind(addr, setting).close()
