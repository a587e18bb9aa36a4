"""A double of Mailu 2024.06's REST API (``/api/v1``), the part MailFleet's agent uses.

Taken from Mailu's ``core/admin/mailu/api/v1/`` (domain, user, alias) and ``common.py``:

- auth: ``Authorization: Bearer <API_TOKEN>`` (a raw token works too); none → 401
  ``{"message": "A valid Authorization header is mandatory"}``; wrong → 403
  ``{"message": "Invalid API token"}``;
- bodies are validated before auth: a missing required field → 400
  ``{"errors": {"<field>": "'<field>' is a required property"},
  "message": "Input payload validation failed"}``;
- results are ``{"code": N, "message": "..."}`` with the same HTTP status;
- domains: create (409 on a duplicate), get (404), delete, ``POST …/dkim``; users: create
  (404 when the domain does not exist, 409 when the user exists; quota defaults to 10**9),
  get, patch, delete; aliases: create (404 for a destination that is not a user).

Runs on a loopback port in a thread (``serve``), or as a process
(``python -m tests.fakes.mailu_api PORT TOKEN|@ENV_FILE STATE_FILE [HOST]``) in a VPS's
namespace, where the stand-in admin container forwards MailU's API port to it
(tests/support/mailu_images.py).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

USER_DEFAULTS: dict[str, Any] = {
    "comment": "", "quota_bytes": 10**9, "global_admin": False, "enabled": True,
    "change_pw_next_login": False, "enable_imap": True, "enable_pop": True,
    "allow_spoofing": False, "forward_enabled": False, "forward_destination": [],
    "forward_keep": True, "reply_enabled": False, "displayed_name": "",
    "spam_enabled": True, "spam_mark_as_read": True, "spam_threshold": 80,
}  # fmt: skip


def result(code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=code)


class MailuApi:
    def __init__(
        self, token: str, state_file: Path | None = None, env_file: Path | None = None
    ) -> None:
        self._token = token
        self.env_file = env_file
        self.state_file = state_file
        self.domains: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, dict[str, Any]] = {}
        self.dkim_generated: list[str] = []
        self.lock = threading.Lock()
        self.url = ""
        if state_file is not None and state_file.exists():
            saved = json.loads(state_file.read_text())
            self.domains, self.users, self.aliases = (
                saved["domains"],
                saved["users"],
                saved["aliases"],
            )
        prefix = "/api/v1"
        self.app = Starlette(
            routes=[
                Route(f"{prefix}/domain", self.domain_collection, methods=["GET", "POST"]),
                Route(f"{prefix}/domain/{{name}}", self.domain_item, methods=["GET", "DELETE"]),
                Route(f"{prefix}/domain/{{name}}/dkim", self.domain_dkim, methods=["POST"]),
                Route(f"{prefix}/user", self.user_collection, methods=["GET", "POST"]),
                Route(
                    f"{prefix}/user/{{email}}", self.user_item, methods=["GET", "PATCH", "DELETE"]
                ),
                Route(f"{prefix}/alias", self.alias_collection, methods=["GET", "POST"]),
                Route(
                    f"{prefix}/alias/{{alias}}",
                    self.alias_item,
                    methods=["GET", "PATCH", "DELETE"],
                ),
            ]
        )

    def save(self) -> None:
        if self.state_file is not None:
            state = {"domains": self.domains, "users": self.users, "aliases": self.aliases}
            self.state_file.write_text(json.dumps(state))

    @property
    def token(self) -> str:
        """The token given, or MailU's ``API_TOKEN`` from ``mailu.env`` as first found there
        (the double may start before the agent writes it; MailU reads it once, at start)."""
        if self.env_file is not None and not self._token:
            try:
                lines = self.env_file.read_text().splitlines()
            except FileNotFoundError:
                return ""
            self._token = next((ln[10:] for ln in lines if ln.startswith("API_TOKEN=")), "")
        return self._token

    # -- the contract ----------------------------------------------------------------------

    def denied(self, request: Request) -> JSONResponse | None:
        header = request.headers.get("authorization")
        if not header:
            return JSONResponse({"message": "A valid Authorization header is mandatory"}, 401)
        token = header.removeprefix("Bearer ")
        if len(token) < 4 or token != self.token:
            return JSONResponse({"message": "Invalid API token"}, 403)
        return None

    async def admit(
        self, request: Request, required: tuple[str, ...] = (), *, body_on: str = "POST"
    ) -> dict[str, Any] | JSONResponse:
        """The request's body (or {}), or the refusal: validation first, as flask_restx
        validates before the handler's auth decorator runs, then the token."""
        data: dict[str, Any] | JSONResponse = {}
        if request.method == body_on:
            data = await self.body(request, required)
        if isinstance(data, JSONResponse):
            return data
        return self.denied(request) or data

    @staticmethod
    async def body(request: Request, required: tuple[str, ...]) -> dict[str, Any] | JSONResponse:
        try:
            data = await request.json()
        except ValueError:
            return JSONResponse(
                {"message": "The browser (or proxy) sent a request this server cannot read."},
                400,
            )
        missing = [f for f in required if f not in data]
        if missing:
            return JSONResponse(
                {"errors": {f: f"'{f}' is a required property" for f in missing},
                 "message": "Input payload validation failed"}, 400,
            )  # fmt: skip
        return dict(data)

    async def domain_collection(self, request: Request) -> JSONResponse:
        data = await self.admit(request, ("name",))
        if isinstance(data, JSONResponse):
            return data
        with self.lock:
            if request.method == "GET":
                return JSONResponse(list(self.domains.values()))
            name = str(data["name"]).lower()
            if "." not in name or " " in name:
                return result(400, f"Domain {name} is not a valid domain")
            if name in self.domains:
                return result(409, f"Duplicate domain name {name}")
            self.domains[name] = {
                "name": name, "comment": data.get("comment", ""), "managers": [],
                "max_users": data.get("max_users", -1), "max_aliases": data.get("max_aliases", -1),
                "max_quota_bytes": data.get("max_quota_bytes", 0),
                "signup_enabled": data.get("signup_enabled", False), "alternatives": [],
            }  # fmt: skip
            self.save()
        return result(200, f"Domain {name} has been created")

    async def domain_item(self, request: Request) -> JSONResponse:
        if (denied := self.denied(request)) is not None:
            return denied
        name = request.path_params["name"].lower()
        with self.lock:
            if name not in self.domains:
                return result(404, f"Domain {name} does not exist")
            if request.method == "GET":
                return JSONResponse(self.domains[name])
            del self.domains[name]
            for email in [e for e in self.users if e.endswith("@" + name)]:
                del self.users[email]
            self.save()
        return result(200, f"Domain {name} has been deleted")

    async def domain_dkim(self, request: Request) -> JSONResponse:
        if (denied := self.denied(request)) is not None:
            return denied
        name = request.path_params["name"].lower()
        if name not in self.domains:
            return result(404, f"Domain {name} does not exist")
        self.dkim_generated.append(name)
        return result(200, f"DKIM/DMARC keys have been generated for domain {name}")

    async def user_collection(self, request: Request) -> JSONResponse:
        data = await self.admit(request, ("email", "raw_password"))
        if isinstance(data, JSONResponse):
            return data
        with self.lock:
            if request.method == "GET":
                return JSONResponse([self.public(u) for u in self.users.values()])
            email = str(data["email"]).lower()
            local, _, domain = email.partition("@")
            if not local or "." not in domain:
                return result(400, f"Provided email address {email} is not a valid email address")
            if domain not in self.domains:
                return result(404, f"Domain {domain} does not exist")
            if email in self.users:
                return result(409, f"User {email} already exists")
            unknown = set(data) - set(USER_DEFAULTS) - {"email", "raw_password"}
            if unknown:
                return result(400, f"unknown fields {sorted(unknown)}")
            self.users[email] = {**USER_DEFAULTS, **data, "email": email, "quota_bytes_used": 0}
            self.save()
        return result(200, f"User {email} has been created")

    async def user_item(self, request: Request) -> JSONResponse:
        data = await self.admit(request, body_on="PATCH")
        if isinstance(data, JSONResponse):
            return data
        email = request.path_params["email"].lower()
        with self.lock:
            if email not in self.users:
                return result(404, f"User {email} cannot be found")
            if request.method == "GET":
                return JSONResponse(self.public(self.users[email]))
            if request.method == "DELETE":
                del self.users[email]
                self.save()
                return result(200, f"User {email} has been deleted")
            data.pop("email", None)
            self.users[email].update(data)
            self.save()
        return result(200, f"User {email} has been updated")

    async def alias_collection(self, request: Request) -> JSONResponse:
        data = await self.admit(request, ("email",))
        if isinstance(data, JSONResponse):
            return data
        with self.lock:
            if request.method == "GET":
                return JSONResponse(list(self.aliases.values()))
            email = str(data["email"]).lower()
            domain = email.partition("@")[2]
            if domain not in self.domains:
                return result(404, f"Domain {domain} does not exist ({email})")
            for destination in data.get("destination", []):
                if destination not in self.users:
                    return result(
                        404, f"Provided destination email address {destination} does not exist"
                    )
            if email in self.aliases:
                return result(409, f"Duplicate alias {email}")
            self.aliases[email] = {
                "email": email,
                "destination": data.get("destination", []),
                "wildcard": data.get("wildcard", False),
                "comment": data.get("comment", ""),
            }
            self.save()
        return result(
            200, f"Alias {email} to destination(s) {data.get('destination', [])} has been created"
        )

    async def alias_item(self, request: Request) -> JSONResponse:
        data = await self.admit(request, body_on="PATCH")
        if isinstance(data, JSONResponse):
            return data
        email = request.path_params["alias"].lower()
        with self.lock:
            if email not in self.aliases:
                return result(404, f"Alias {email} cannot be found")
            if request.method == "GET":
                return JSONResponse(self.aliases[email])
            if request.method == "DELETE":
                del self.aliases[email]
                self.save()
                return result(200, f"Alias {email} has been deleted")
            for destination in data.get("destination", []):
                if destination not in self.users:
                    return result(
                        404, f"Provided destination email address {destination} does not exist"
                    )
            for field in ("comment", "destination", "wildcard"):
                if field in data:
                    self.aliases[email][field] = data[field]
            self.save()
        return result(200, f"Alias {email} has been updated")

    @staticmethod
    def public(user: dict[str, Any]) -> dict[str, Any]:
        """UserGet: the stored fields, the password as a hash, never the raw one."""
        shown = {k: v for k, v in user.items() if k != "raw_password"}
        shown["password"] = "{BLF-CRYPT}$2b$12$" + str(abs(hash(user["raw_password"])))
        return shown


@contextmanager
def serve(token: str, host: str = "127.0.0.1", port: int = 0) -> Iterator[MailuApi]:
    """Run on a loopback port in a thread; stopped and joined on exit."""
    import socket

    api = MailuApi(token)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(api.app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the Mailu API double did not start")
            threading.Event().wait(0.01)
        api.url = f"http://{host}:{sock.getsockname()[1]}/api/v1"
        yield api
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main() -> None:
    """``PORT TOKEN|@ENV_FILE STATE_FILE [HOST]``: ``@mailu.env`` takes the token from there."""
    port, token, state = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    host = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    env_file = Path(token[1:]) if token.startswith("@") else None
    api = MailuApi("" if env_file else token, state, env_file)
    uvicorn.run(api.app, host=host, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
