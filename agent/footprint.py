"""What the daemon's process keeps out: Python's bindings to OpenSSL (issue 19, ≤ 40 MB RSS).

The daemon's TLS is gRPC's own (BoringSSL, inside grpcio); certificates and keys are made
by the ``agent.pki`` helper process. Yet ``asyncio`` imports ``ssl`` and ``hashlib`` imports
``_hashlib`` at start, which maps libssl and libcrypto and initialises OpenSSL: measured
4.5 MiB of RSS (1.2 MiB of it the process's own) for nothing the daemon does. Hidden while
the daemon's modules load, ``asyncio`` runs without TLS streams (``loop.create_connection
(ssl=...)`` raises ``RuntimeError: stdlib ssl module not available`` in the daemon) and
``hashlib`` uses Python's built-in SHA-2, SHA-3 and BLAKE2 (its OpenSSL-only
``pbkdf2_hmac`` and ``scrypt`` are absent). Modules imported later (a command's,
on first use) import the real ``ssl`` and ``_hashlib`` as usual.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

HIDDEN = ("ssl", "_hashlib")


@contextmanager
def without_openssl() -> Iterator[None]:
    """Imports inside see ``ssl`` and ``_hashlib`` as missing (unless already loaded)."""
    hidden = [name for name in HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
