"""Who is signed in to the console, and the RequestContext its pages call services with.

A page gets a ``Console`` (a live session) or the browser is sent to ``/ui/login``. Its
``ctx`` is the one an API request with the same key would get, so a tenant's pages run on
tenant-scoped sessions (RLS) exactly as its API calls do.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from control_plane.api.context import Principal, RequestContext, request_context
from control_plane.audit.service import api_pending
from control_plane.db.base import utcnow
from control_plane.errors import MailFleetError
from control_plane.servers.models import Server
from control_plane.servers.service import get_server
from control_plane.settings import Settings
from control_plane.web import sessions
from control_plane.web.sessions import COOKIE, Signed

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
STATIC_URL = "/ui/static"

_templates = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(at: datetime | None, seconds: bool = False) -> Markup:
    """A moment as the console shows it: UTC, to the minute (or second), machine-readable."""
    if at is None:
        return Markup("—")
    shown = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return Markup('<time datetime="{}">{} UTC</time>').format(at.isoformat(), shown)


_templates.filters["when"] = when


class SignInRequired(Exception):
    """No live session: the browser goes to the sign-in page (see routes.install_console)."""


class PageError(Exception):
    """A refusal shown as a page (not the API's problem JSON): 403, 404, 422."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


@dataclass(frozen=True)
class Console:
    signed: Signed
    csrf: str
    ctx: RequestContext

    @property
    def is_admin(self) -> bool:
        return self.signed.key.tenant_id is None

    @property
    def tenant_id(self) -> uuid.UUID | None:
        """The tenant on show: the key's own, or the one an admin switched to (None: all)."""
        return self.signed.session.tenant_id


def not_found(exc: MailFleetError) -> PageError:
    """A service's refusal (another tenant's server reads as missing) as a page."""
    return PageError(exc.status, "Not found" if exc.status == 404 else "Refused", exc.detail)


async def visible_server(console: Console, server_id: uuid.UUID) -> Server:
    """The server if the signed-in key may see it, else a 404 page (tenancy by RLS)."""
    try:
        async with console.ctx.session() as session:
            return await get_server(session, server_id)
    except MailFleetError as exc:
        raise not_found(exc) from None


def acting_as(
    request: Request, console: Console, method: str, api_route: str, status: int
) -> RequestContext:
    """The console's context audited as the API route that makes the same change (its
    path parameters named as the console route's), so the audit log reads the same
    whether a change came from the browser or the API."""
    audit = api_pending(console.ctx.actor, method, api_route, request.path_params, status)
    request.state.audit = audit  # refused or failed: the middleware records this one
    return dataclasses.replace(console.ctx, audit=audit)


def require_csrf(request: Request, given: str | None, expected: str) -> None:
    """Every form's token must be the session's (the sign-in form's: its cookie's)."""
    if not sessions.same_token(given, expected):
        raise PageError(403, "Refused", "The form's security token is missing or wrong.")


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def use_nav(links: Sequence[Any]) -> None:
    """The top bar's links (the pages package's ``NAV``), set once at start-up."""
    _templates.globals["nav_links"] = tuple(links)


def render(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("static", STATIC_URL)
    html = _templates.get_template(name).render(request=request, **values)
    return HTMLResponse(html, status_code=status_code)


async def signed_in(request: Request) -> Signed:
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInRequired
    async with request.app.state.db.session() as session:
        signed = await sessions.resolve(session, token, settings_of(request), utcnow())
    if signed is None:
        raise SignInRequired
    request.state.console_token = token
    return signed


def console(request: Request, signed: Annotated[Signed, Depends(signed_in)]) -> Console:
    key = signed.key
    principal = Principal(
        key_id=key.id, tenant_id=key.tenant_id, key_name=key.name, key_hint=key.hint
    )
    return Console(
        signed=signed,
        csrf=sessions.csrf_token(request.state.console_token),
        ctx=request_context(request, principal),
    )


SignedIn = Annotated[Console, Depends(console)]
