"""Real receivers on loopback for alert deliveries: an HTTP server (Slack, webhook,
PagerDuty stand-ins) and an aiosmtpd SMTP sink (the relay)."""

from __future__ import annotations

import asyncio
import contextlib
import email
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.ports import free_port

REPLAY_WINDOW_SECONDS = 300


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Answers each POST with the next scripted status (then ``default``) and keeps it."""

    host: str = "127.0.0.1"
    port: int = 0
    default: int = 200
    script: list[int] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    tls: ssl.SSLContext | None = None
    server_names: list[str | None] = field(default_factory=list)  # SNI seen, with TLS

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(method, path, headers, body))
            self.arrived.set()
            status = self.script.pop(0) if self.script else self.default
            answer = b'{"status":"ok"}'
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HttpReceiver]:
        if self.tls is not None:
            self.tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
        server = await asyncio.start_server(self._handle, self.host, self.port, ssl=self.tls)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()


def verify_signature(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """The recipe README.md documents for webhook receivers."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    if abs((now or time.time()) - timestamp) > REPLAY_WINDOW_SECONDS:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


class _Collect:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.sink.messages.append(
            (envelope.mail_from or "", list(envelope.rcpt_tos), email.message_from_bytes(content))
        )
        return "250 OK"


@dataclass
class SmtpSink:
    """An aiosmtpd server on loopback standing in for the relay; with ``logins`` it asks
    for AUTH (over plain text: loopback only) and accepts exactly those."""

    port: int = 0
    messages: list[tuple[str, list[str], Message]] = field(default_factory=list)
    logins: dict[str, str] | None = None
    authenticated: list[str] = field(default_factory=list)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and self.logins is not None:
            user, password = data.login.decode(), data.password.decode()
            if self.logins.get(user) == password:
                self.authenticated.append(user)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    @contextlib.contextmanager
    def running(self) -> Iterator[SmtpSink]:
        self.port = free_port()
        auth: dict[str, object] = {}
        if self.logins is not None:
            auth = {
                "authenticator": self._authenticate,
                "auth_require_tls": False,
                "auth_required": True,
            }
        controller = Controller(
            _Collect(self),
            hostname="127.0.0.1",
            port=self.port,
            **auth,  # type: ignore[arg-type]
        )
        controller.start()
        try:
            yield self
        finally:
            controller.stop()
