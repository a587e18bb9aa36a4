"""Free loopback ports for servers the tests start."""

from __future__ import annotations

import socket

# Ports this process has handed out: the kernel may offer a just-closed port again, and two
# settings of one server (API and gateway) must never get the same one.
_issued: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(pairs: bool = False) -> int:
    """A free TCP port on 127.0.0.1, never one handed out before in this process; with
    ``pairs`` the next port is free too (OpenBao's cluster port)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port in _issued or (pairs and (port + 1 in _issued or port >= 65535)):
            continue
        if pairs and not _bindable(port + 1):
            continue
        _issued.update({port, port + 1} if pairs else {port})
        return port
    raise RuntimeError("no free port found")
