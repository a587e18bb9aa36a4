"""Mailu's REST API (``/api/v1``), called by the agent on the VPS itself.

The API is published on the VPS's loopback by the compose project (``admin`` service), and
its token is the ``API_TOKEN`` in ``mailu.env``; both are read from the files the install
wrote, so nothing else has to carry them. Create calls are made idempotent here: Mailu
answers 409 for a domain or user that exists, which becomes "already there" (domains) or
an update (users). One loopback call at a time needs no HTTP library: ``http.client`` in a
thread keeps httpx (and what its extras load) out of the agent.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from agent.errors import CommandError

_yaml: Any = importlib.import_module("yaml")  # untyped library, imported by name


class MailuApi:
    def __init__(self, base_url: str, token: str, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._url = urlsplit(self.base_url)
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    @classmethod
    def for_install(cls, directory: Path) -> MailuApi:
        """The API of the MailU installed in ``directory`` (its compose file and env file)."""
        try:
            compose = _yaml.safe_load((directory / "docker-compose.yml").read_text())
            env = (directory / "mailu.env").read_text()
        except FileNotFoundError:
            raise CommandError("MailU is not installed on this server") from None
        published = str(compose["services"]["admin"]["ports"][0])  # 127.0.0.1:PORT:8080
        host, port, _ = published.rsplit(":", 2)
        tokens = [
            line.split("=", 1)[1] for line in env.splitlines() if line.startswith("API_TOKEN=")
        ]
        if not tokens:
            raise CommandError("mailu.env has no API_TOKEN")
        return cls(f"http://{host}:{port}/api/v1", tokens[0])

    async def aclose(self) -> None:
        """Nothing is kept open between calls (each is one loopback connection)."""

    async def ensure_domain(self, name: str) -> bool:
        """Create the domain; False when it already existed."""
        status, _ = await self._call("POST", "/domain", {"name": name}, ok=(200, 409))
        return status == 200

    async def delete_domain(self, name: str) -> bool:
        status, _ = await self._call("DELETE", f"/domain/{name}", ok=(200, 404))
        return status == 200

    async def ensure_user(self, email: str, fields: dict[str, Any]) -> str:
        """Create the user, or bring an existing one to ``fields``: "created" or "updated"."""
        status, _ = await self._call("POST", "/user", {"email": email, **fields}, ok=(200, 409))
        if status == 200:
            return "created"
        await self._call("PATCH", f"/user/{email}", fields, ok=(200,))
        return "updated"

    async def get_user(self, email: str) -> dict[str, Any] | None:
        status, body = await self._call("GET", f"/user/{email}", ok=(200, 404))
        return body if status == 200 and isinstance(body, dict) else None

    async def delete_user(self, email: str) -> bool:
        status, _ = await self._call("DELETE", f"/user/{email}", ok=(200, 404))
        return status == 200

    async def ensure_alias(self, email: str, destination: list[str], comment: str) -> str:
        """Create the alias, or bring an existing one to these destinations."""
        fields = {"destination": destination, "comment": comment}
        status, _ = await self._call("POST", "/alias", {"email": email, **fields}, ok=(200, 409))
        if status == 200:
            return "created"
        await self._call("PATCH", f"/alias/{email}", fields, ok=(200,))
        return "updated"

    async def delete_alias(self, email: str) -> bool:
        status, _ = await self._call("DELETE", f"/alias/{email}", ok=(200, 404))
        return status == 200

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, ok: tuple[int, ...]
    ) -> tuple[int, Any]:
        try:
            status, raw = await asyncio.to_thread(self._request, method, path, body)
        except (OSError, http.client.HTTPException) as exc:
            raise CommandError(
                f"Mailu API unreachable ({method} {path}): {type(exc).__name__}"
            ) from None
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if status not in ok:
            text = raw[:200].decode(errors="replace")
            message = payload.get("message") if isinstance(payload, dict) else text
            errors = payload.get("errors") if isinstance(payload, dict) else None
            detail = f"{message} {errors}" if errors else message
            raise CommandError(f"Mailu API {method} {path}: {status} {detail}")
        return status, payload

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        """One request on its own connection (no proxy: the API is on this machine)."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(
            self._url.hostname or "127.0.0.1", self._url.port, timeout=self._timeout
        )
        try:
            target = quote(self._url.path + path, safe="/@:+")
            connection.request(method, target, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()
