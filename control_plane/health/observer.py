"""The SMTP observer: where agents connect out on port 25 to show their port is open.

``mailfleet serve`` runs it when ``MAILFLEET_SMTP_OBSERVER_ADDR`` is set. It greets with
220, answers EHLO with the address it sees the client at (``250-mailfleet-observer sees
198.18.3.7``, the format in ``mailfleet.smtp_observer``), and says goodbye to QUIT. It never
accepts mail: MAIL, RCPT and DATA are refused. Connections are bounded in number, in
commands and in idle time, so the open port costs little if strangers find it.

The address it reports is the one the connection came from, so the same observer later
shows which address an IP switch makes a server's mail leave from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from control_plane.listeners import bind
from control_plane.settings import Settings
from mailfleet.smtp_observer import OBSERVER_NAME, canonical_address, sees_line

log = logging.getLogger(__name__)
MAX_LINE = 1000
MAX_COMMANDS = 20
SETTING = "MAILFLEET_SMTP_OBSERVER_ADDR"
NO_MAIL = {"MAIL", "RCPT", "DATA", "BDAT", "VRFY", "EXPN"}


class SmtpObserver:
    """An asyncio SMTP responder that only says whom it sees."""

    def __init__(self, addr: str, *, timeout: float, max_connections: int) -> None:
        self.addr = addr
        self.timeout = timeout
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpObserver | None:
        if settings.smtp_observer_addr is None:
            return None
        return cls(
            settings.smtp_observer_addr,
            timeout=settings.smtp_observer_timeout_seconds,
            max_connections=settings.smtp_observer_max_connections,
        )

    @property
    def port(self) -> int:
        """The port it listens on (useful when ``addr`` asked for port 0)."""
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._tasks)

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on ``addr`` (a taken one ends with one line naming the setting:
        AddressInUse), or on ``sock``, a socket the caller bound."""
        sock = sock or bind(self.addr, SETTING)
        try:
            self._server = await asyncio.start_server(self._accept, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            raise
        log.info("SMTP observer listening on %s", self.addr)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # no new connections
        for task in list(self._tasks):  # (wait_closed waits for these on Python 3.12+)
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> SmtpObserver:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= self.max_connections:
            with contextlib.suppress(OSError, TimeoutError):
                await self._say(writer, "421 4.3.2 too many connections, try again later")
            await self._close(writer)
            return
        self._tasks.add(task)
        try:
            await self._converse(reader, writer)
        except (OSError, TimeoutError):
            pass  # the client went away or stayed silent: nothing to answer
        finally:
            self._tasks.discard(task)
            await self._close(writer)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = canonical_address(str(peername[0])) if peername else None
        seen = peer or "an unknown address"
        await self._say(writer, f"220 {OBSERVER_NAME} ESMTP observer; no mail accepted")
        for _ in range(MAX_COMMANDS):
            try:
                raw = await asyncio.wait_for(reader.readline(), self.timeout)
            except TimeoutError:
                await self._say(writer, "421 4.4.2 idle too long, closing")
                return
            except (ValueError, asyncio.LimitOverrunError):
                await self._say(writer, "500 5.5.2 line too long")
                return
            if not raw:
                return
            words = raw.decode("ascii", "replace").split(maxsplit=1)
            verb = words[0].upper() if words else ""
            if verb == "EHLO":
                log.debug("SMTP observer: EHLO from %s", seen)
                await self._say(writer, f"250-{sees_line(seen)}\r\n250 HELP")
            elif verb == "HELO":
                await self._say(writer, f"250 {sees_line(seen)}")
            elif verb in ("NOOP", "RSET"):
                await self._say(writer, "250 2.0.0 OK")
            elif verb == "QUIT":
                await self._say(writer, "221 2.0.0 bye")
                return
            elif verb in NO_MAIL:
                await self._say(writer, "550 5.7.1 this observer accepts no mail")
            else:
                await self._say(writer, "502 5.5.1 command not implemented")
        await self._say(writer, "421 4.7.0 too many commands, closing")

    async def _say(self, writer: asyncio.StreamWriter, reply: str) -> None:
        writer.write(f"{reply}\r\n".encode())
        await asyncio.wait_for(writer.drain(), self.timeout)

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
