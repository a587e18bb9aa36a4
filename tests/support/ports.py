"""Free loopback ports for servers the tests start."""

from __future__ import annotations

import socket


def free_port(pairs: bool = False) -> int:
    """A free TCP port on 127.0.0.1; with ``pairs`` the next port is free too (OpenBao cluster)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not pairs or port >= 65535:
            return port
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair found")
