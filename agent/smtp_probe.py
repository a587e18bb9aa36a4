"""``smtp.probe_out``: can this VPS open an SMTP session out on port 25, and from where?

Many providers block outbound port 25; a mail server behind such a block queues mail
forever. The probe connects to the observer the control plane names, reads its 220 banner,
says EHLO, reads which address the observer saw it at, and QUITs — every step within one
deadline. It never sends mail.

The result says what happened, not what it means (the control plane judges):
``error_kind`` is ``refused`` (something answered no: a reset to the SYN), ``timeout`` (no
answer in time — often a silent drop), ``unreachable`` (no route, no name) or ``protocol``
(something answered, but not as an SMTP server should).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from agent.errors import CommandError
from mailfleet.smtp_observer import canonical_address, seen_address

ErrorKind = Literal["refused", "timeout", "unreachable", "protocol"]
MAX_LINE = 1000  # RFC 5321 allows 512 per reply line; a longer one is not SMTP
MAX_LINES = 100  # lines of one reply
UNREACHABLE = {
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
    errno.EADDRNOTAVAIL,
}
_REPLY = re.compile(r"^(\d{3})([ -])(.*)$")
_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_HELO = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f.:]{2,45}\])$")


class ProbeError(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    timeout: float
    helo: str

    @classmethod
    def of(cls, payload: dict[str, Any]) -> Target:
        """The payload checked: bad input fails the command with a reason, sends nothing."""
        host = payload.get("host")
        if not isinstance(host, str) or not (
            canonical_address(host) is not None or _NAME.match(host)
        ):
            raise CommandError("payload.host must be a host name or an IP address")
        port = payload.get("port", 25)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise CommandError("payload.port must be a port number (1-65535)")
        timeout = payload.get("timeout_seconds", 10)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool):
            raise CommandError("payload.timeout_seconds must be a number")
        if not 0 < timeout <= 300:
            raise CommandError("payload.timeout_seconds must be more than 0 and at most 300")
        helo = payload.get("helo") or socket.gethostname()
        if not isinstance(helo, str) or not _HELO.match(helo):
            raise CommandError("payload.helo must be a host name or an address literal")
        return cls(host.strip("[]"), port, float(timeout), helo)


class _Session:
    """One SMTP conversation with a deadline shared by every step."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.deadline = time.monotonic() + target.timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.step = "connecting"

    def left(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    async def connect(self) -> str | None:
        self.reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.target.host, self.target.port, limit=MAX_LINE),
            self.left(),
        )
        self.writer = writer
        local = writer.get_extra_info("sockname")
        return canonical_address(local[0]) if local else None

    async def reply(self, expected: str) -> list[str]:
        """One (multi-line) reply's texts; its code must be ``expected``."""
        assert self.reader is not None
        texts: list[str] = []
        for _ in range(MAX_LINES):
            try:
                raw = await asyncio.wait_for(self.reader.readline(), self.left())
            except (ValueError, asyncio.LimitOverrunError):
                raise ProbeError("protocol", f"{self.step}: a reply line too long") from None
            if not raw.endswith(b"\n"):
                raise ProbeError("protocol", f"{self.step}: the connection was closed")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            match = _REPLY.match(line)
            if match is None:
                raise ProbeError("protocol", f"{self.step}: not an SMTP reply: {line[:200]!r}")
            code, more, text = match.groups()
            if code != expected:
                raise ProbeError("protocol", f"{self.step}: {line[:300]}")
            texts.append(text)
            if more == " ":
                return texts
        raise ProbeError("protocol", f"{self.step}: a reply of more than {MAX_LINES} lines")

    async def send(self, line: str) -> None:
        assert self.writer is not None
        self.writer.write(f"{line}\r\n".encode())
        await asyncio.wait_for(self.writer.drain(), self.left())

    async def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """What a failed step means, as an ``error_kind`` and a one-line reason."""
    if isinstance(exc, ProbeError):
        return exc.kind, str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unreachable", f"cannot resolve the host: {exc.strerror or exc}"
    if isinstance(exc, ConnectionError):  # reset or aborted once connected
        return "protocol", f"the connection was dropped: {exc.strerror or exc}"
    if isinstance(exc, OSError) and exc.errno in UNREACHABLE:
        return "unreachable", exc.strerror or str(exc)
    if isinstance(exc, OSError):
        return "unreachable", exc.strerror or str(exc)
    return "protocol", f"{type(exc).__name__}: {exc}"


async def probe_out(
    payload: dict[str, Any], progress: Callable[[int, str], None]
) -> dict[str, Any]:
    """Connect, banner, EHLO, QUIT; the result tells how far it got and what it saw."""
    target = Target.of(payload)
    started = time.monotonic()
    result: dict[str, Any] = {
        "connected": False,
        "banner": None,
        "ehlo": [],
        "error_kind": None,
        "error": None,
        "observed_source": None,
        "local_address": None,
        "elapsed_ms": 0,
    }
    session = _Session(target)
    try:
        progress(0, f"connecting to {target.host} port {target.port}")
        result["local_address"] = await session.connect()
        result["connected"] = True
        session.step = "banner"
        result["banner"] = "\n".join(await session.reply("220"))
        session.step = "EHLO"
        await session.send(f"EHLO {target.helo}")
        result["ehlo"] = await session.reply("250")
        result["observed_source"] = seen_address(result["ehlo"])
        session.step = "QUIT"
        await session.send("QUIT")
        await session.reply("221")
    except Exception as exc:
        if session.step != "QUIT":  # all was seen; a peer slow to say goodbye changes nothing
            kind, reason = classify(exc)
            if not isinstance(exc, ProbeError) and session.step != "connecting":
                reason = f"{session.step}: {reason}"
            result["error_kind"], result["error"] = kind, reason
    finally:
        await session.close()
        result["elapsed_ms"] = round((time.monotonic() - started) * 1000)
    return result
