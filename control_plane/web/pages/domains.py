"""Mail domains, their mailboxes and aliases: pages over the same services as
``/api/v1/domains`` (mail.service, mail.aliases), each change audited as the API route that
makes it, and MailU changed by the same agent commands.

A mailbox's password is taken from Vault (``take_credentials``, as ``POST …/credentials``
does) in the transaction that creates or rotates it and is shown in that one answer; the
page then replaces the POST in the browser's history, so a reload shows the domain without
it, and the API refuses to hand it out again until it is rotated.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.status import HTTP_303_SEE_OTHER

from control_plane.api.context import RequestContext
from control_plane.commands import handlers
from control_plane.dns.models import DomainDns
from control_plane.errors import InvalidInput, MailFleetError
from control_plane.mail import aliases, service
from control_plane.mail.models import MailDomain
from control_plane.mail.routes import alias_out, domain_out, mailbox_out
from control_plane.mail.schemas import (
    GIB,
    AliasCreate,
    CredentialsOut,
    DomainCreate,
    DomainUpdate,
    MailboxCreate,
)
from control_plane.servers.service import list_servers, server_names
from control_plane.tenants.service import get_tenant, tenant_names
from control_plane.web.console import Console, SignedIn, acting_as, not_found, render, require_csrf
from control_plane.web.pages import NavLink
from control_plane.workspaces.models import Workspace
from control_plane.workspaces.service import list_workspaces

router = APIRouter(include_in_schema=False)
NAV = (NavLink("Domains", "/ui/domains", 20),)
PAGE_SIZE = 50
CHOICES = 500  # servers or workspaces offered in a form's list
API = "/api/v1/domains"
LABELS = {
    "name": "Domain name",
    "server_id": "Server",
    "workspace_id": "Workspace",
    "local_part": "Local part",
    "quota_bytes": "Quota",
    "displayed_name": "Display name",
    "destinations": "Destinations",
    "comment": "Comment",
}

Csrf = Annotated[str | None, Form()]
Text = Annotated[str, Form()]
Change = Callable[[AsyncSession, RequestContext, MailDomain], Awaitable[CredentialsOut | None]]


@dataclass(frozen=True)
class Refusal:
    """Bad input on one of a page's forms: shown beside it, with what was typed, and the
    field it is about (``local_part``) marked invalid."""

    form: str
    message: str
    status: int
    values: dict[str, str] = field(default_factory=dict)
    about: str = ""  # the field


def refusal(form: str, exc: MailFleetError | ValidationError, values: dict[str, str]) -> Refusal:
    """``body.destinations[1]``, or pydantic's ``("destinations", 1)``, names the field
    "Destinations" in the message."""
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        name, detail, status = ".".join(map(str, error["loc"])), error["msg"], 422
    else:
        name, detail, status = exc.field or "", exc.detail, exc.status
    key = re.split(r"[.\[]", name.removeprefix("body."))[0]
    label = LABELS.get(key, key.replace("_", " ").capitalize())
    return Refusal(form, f"{label}: {detail}" if label else detail, status, values, key)


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=HTTP_303_SEE_OTHER)


async def _workspace_names(
    session: AsyncSession, ids: Collection[uuid.UUID | None]
) -> dict[uuid.UUID, str]:
    wanted = [i for i in ids if i is not None]
    rows = await session.execute(
        select(Workspace.id, Workspace.name).where(Workspace.id.in_(wanted))
    )
    return {workspace_id: name for workspace_id, name in rows}


async def _dns_zones(session: AsyncSession, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Each domain's DNS state in words: its zone and whether records went out yet."""
    rows = await session.execute(
        select(DomainDns.domain_id, DomainDns.zone, DomainDns.published).where(
            DomainDns.domain_id.in_(ids)
        )
    )
    return {
        domain_id: f"{zone}: {'published' if published not in ('', '[]') else 'not published yet'}"
        for domain_id, zone, published in rows
    }


# The domain list and a new domain


async def _domains_page(
    request: Request, console: Console, after: uuid.UUID | None, refused: Refusal | None = None
) -> HTMLResponse:
    tenant_id = console.tenant_id
    async with console.ctx.session() as session:
        tenant = await get_tenant(session, tenant_id) if tenant_id is not None else None
        page = await service.list_domains(session, None, after, PAGE_SIZE, tenant_id)
        rows = [await domain_out(session, d) for d in page.items]
        names = await server_names(session, {d.server_id for d in rows})
        workspaces = await _workspace_names(session, {d.workspace_id for d in rows})
        zones = await _dns_zones(session, [d.id for d in rows])
        owners = await tenant_names(session, {d.tenant_id for d in rows})
        choices = []
        if tenant_id is not None:
            found = await list_servers(session, tenant_id, None, None, CHOICES)
            choices = [s for s in found.items if s.mail_stack == "mailu"]
    return render(
        request, "domains.html", refused.status if refused else 200, console=console,
        tenant=tenant, rows=rows, server_names=names, workspaces=workspaces, zones=zones,
        owners=owners, servers=choices, next_after=page.next_after, refused=refused,
        after=after,
    )  # fmt: skip


@router.get("/ui/domains")
async def domains(
    request: Request, console: SignedIn, after: uuid.UUID | None = None
) -> HTMLResponse:
    """The tenant's domains (every tenant's for an admin showing all) and a form for more."""
    return await _domains_page(request, console, after)


@router.post("/ui/domains")
async def create_domain(
    request: Request,
    console: SignedIn,
    name: Text = "",
    server_id: Text = "",
    csrf_token: Csrf = None,
) -> Response:
    """``POST /api/v1/domains``: the domain, its DKIM key and the command adding it to MailU."""
    values = {"name": name, "server_id": server_id}
    ctx = acting_as(request, console, "POST", API, 201)
    require_csrf(request, csrf_token, console.csrf)  # refused: audited as the API's route
    try:
        if console.tenant_id is None:
            raise InvalidInput("Choose a tenant first: a domain belongs to its server's tenant.")
        data = DomainCreate.model_validate({"name": name, "server_id": server_id or None})
        async with ctx.session() as session:
            domain = await service.create_domain(session, ctx.vault, data)
    except (MailFleetError, ValidationError) as exc:
        return await _domains_page(request, console, None, refusal("domain", exc, values))
    handlers.wake(data.server_id)
    return _see(f"/ui/domains/{domain.id}")


# One domain: mailboxes, aliases, workspace


async def _domain_page(
    request: Request,
    console: Console,
    domain_id: uuid.UUID,
    *,
    after: uuid.UUID | None = None,
    aliases_after: uuid.UUID | None = None,
    refused: Refusal | None = None,
    credentials: CredentialsOut | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        async with console.ctx.session() as session:
            domain = await service.get_domain(session, domain_id)
            out = await domain_out(session, domain)
            server = await service.server_of(session, domain)
            boxes = await service.list_mailboxes(session, domain, after, PAGE_SIZE)
            mailboxes = [await mailbox_out(session, m) for m in boxes.items]
            found = await aliases.list_aliases(session, domain, aliases_after, PAGE_SIZE)
            alias_rows = [await alias_out(session, a) for a in found.items]
            workspaces = (await list_workspaces(session, domain.tenant_id, None, CHOICES)).items
            zone = (await _dns_zones(session, [domain.id])).get(domain.id)
    except MailFleetError as exc:
        raise not_found(exc) from None
    response = render(
        request, "domains_detail.html", refused.status if refused else status_code,
        console=console, domain=out, server=server, mailboxes=mailboxes,
        next_after=boxes.next_after, aliases=alias_rows, aliases_next=found.next_after,
        workspaces=workspaces, zone=zone, refused=refused, credentials=credentials,
        after=after,
    )  # fmt: skip
    if credentials is not None:
        response.headers["Cache-Control"] = "no-store"  # the password is not kept anywhere
    return response


@router.get("/ui/domains/{domain_id}")
async def domain_page(
    request: Request,
    console: SignedIn,
    domain_id: uuid.UUID,
    after: uuid.UUID | None = None,
    aliases_after: uuid.UUID | None = None,
) -> HTMLResponse:
    """A domain's DKIM records, mailboxes and aliases, with forms to change them."""
    return await _domain_page(request, console, domain_id, after=after, aliases_after=aliases_after)


async def _change(
    request: Request,
    console: Console,
    domain_id: uuid.UUID,
    csrf_token: str | None,
    audit: tuple[str, str, int],
    form: str,
    values: dict[str, str],
    change: Change,
) -> Response:
    """Run ``change`` on the domain in one transaction audited as the API route ``audit``
    (method, route, status): another tenant's domain is a 404 page; bad input re-shows
    the page with the form's message and nothing written; a password taken is shown once."""
    ctx = acting_as(request, console, *audit)
    require_csrf(request, csrf_token, console.csrf)
    try:
        async with ctx.session() as session:
            domain = await service.get_domain(session, domain_id)
            shown = await change(session, ctx, domain)
    except (MailFleetError, ValidationError) as exc:
        if isinstance(exc, MailFleetError) and exc.status == 404 and exc.field is None:
            raise not_found(exc) from None
        refused = refusal(form, exc, values)
        return await _domain_page(request, console, domain_id, refused=refused)
    handlers.wake(domain.server_id)
    if shown is None:
        return _see(f"/ui/domains/{domain_id}")
    return await _domain_page(request, console, domain_id, credentials=shown, status_code=audit[2])


def _quota(gib: str) -> int:
    try:
        return round(float(gib or "1") * GIB)
    except ValueError:
        raise InvalidInput(f"{gib!r} is not a number of GiB", field="body.quota_bytes") from None


@router.post("/ui/domains/{domain_id}/mailboxes")
async def create_mailbox(
    request: Request,
    console: SignedIn,
    domain_id: uuid.UUID,
    local_part: Text = "",
    displayed_name: Text = "",
    quota_gib: Text = "1",
    csrf_token: Csrf = None,
) -> Response:
    """``POST …/mailboxes`` then ``POST …/credentials``: the new login, shown this once."""
    values = {"local_part": local_part, "displayed_name": displayed_name, "quota_gib": quota_gib}

    async def create(
        session: AsyncSession, ctx: RequestContext, domain: MailDomain
    ) -> CredentialsOut:
        data = MailboxCreate.model_validate(
            {
                "local_part": local_part.strip(),
                "displayed_name": displayed_name.strip(),
                "quota_bytes": _quota(quota_gib.strip()),
            }
        )
        mailbox = await service.create_mailbox(session, ctx.vault, domain, data)
        return await service.take_credentials(session, ctx.vault, domain, mailbox)

    audit = ("POST", f"{API}/{{domain_id}}/mailboxes", 201)
    return await _change(request, console, domain_id, csrf_token, audit, "mailbox", values, create)


@router.post("/ui/domains/{domain_id}/mailboxes/{mailbox_id}/rotate")
async def rotate_credentials(
    request: Request,
    console: SignedIn,
    domain_id: uuid.UUID,
    mailbox_id: uuid.UUID,
    csrf_token: Csrf = None,
) -> Response:
    """``POST …/credentials/rotate`` then ``POST …/credentials``: a new password, once."""

    async def rotate(
        session: AsyncSession, ctx: RequestContext, domain: MailDomain
    ) -> CredentialsOut:
        mailbox = await service.get_mailbox(session, domain, mailbox_id)
        await service.rotate_credentials(session, ctx.vault, domain, mailbox)
        return await service.take_credentials(session, ctx.vault, domain, mailbox)

    audit = ("POST", f"{API}/{{domain_id}}/mailboxes/{{mailbox_id}}/credentials/rotate", 200)
    return await _change(request, console, domain_id, csrf_token, audit, "mailboxes", {}, rotate)


@router.post("/ui/domains/{domain_id}/mailboxes/{mailbox_id}/delete")
async def delete_mailbox(
    request: Request,
    console: SignedIn,
    domain_id: uuid.UUID,
    mailbox_id: uuid.UUID,
    csrf_token: Csrf = None,
) -> Response:
    """``DELETE …/mailboxes/{id}``: refused while an alias delivers to it."""

    async def delete(session: AsyncSession, ctx: RequestContext, domain: MailDomain) -> None:
        mailbox = await service.get_mailbox(session, domain, mailbox_id)
        await service.delete_mailbox(session, ctx.vault, domain, mailbox)

    audit = ("DELETE", f"{API}/{{domain_id}}/mailboxes/{{mailbox_id}}", 204)
    return await _change(request, console, domain_id, csrf_token, audit, "mailboxes", {}, delete)


def _addresses(text: str) -> list[str]:
    """Destinations as typed: one a line, or separated by commas or spaces."""
    return [a for a in re.split(r"[\s,;]+", text) if a]


@router.post("/ui/domains/{domain_id}/aliases")
async def create_alias(
    request: Request,
    console: SignedIn,
    domain_id: uuid.UUID,
    local_part: Text = "",
    destinations: Text = "",
    comment: Text = "",
    csrf_token: Csrf = None,
) -> Response:
    """``POST …/aliases``: delivering only to mailboxes on the same server (checked first)."""
    values = {"local_part": local_part, "destinations": destinations, "comment": comment}

    async def create(session: AsyncSession, ctx: RequestContext, domain: MailDomain) -> None:
        data = AliasCreate.model_validate(
            {
                "local_part": local_part.strip(),
                "destinations": _addresses(destinations),
                "comment": comment.strip(),
            }
        )
        await aliases.create_alias(session, domain, data)

    audit = ("POST", f"{API}/{{domain_id}}/aliases", 201)
    return await _change(request, console, domain_id, csrf_token, audit, "alias", values, create)


@router.post("/ui/domains/{domain_id}/aliases/{alias_id}/delete")
async def delete_alias(
    request: Request,
    console: SignedIn,
    domain_id: uuid.UUID,
    alias_id: uuid.UUID,
    csrf_token: Csrf = None,
) -> Response:
    """``DELETE …/aliases/{id}``."""

    async def delete(session: AsyncSession, ctx: RequestContext, domain: MailDomain) -> None:
        await aliases.delete_alias(
            session, domain, await aliases.get_alias(session, domain, alias_id)
        )

    audit = ("DELETE", f"{API}/{{domain_id}}/aliases/{{alias_id}}", 204)
    return await _change(request, console, domain_id, csrf_token, audit, "aliases", {}, delete)


@router.post("/ui/domains/{domain_id}/workspace")
async def move_domain(
    request: Request,
    console: SignedIn,
    domain_id: uuid.UUID,
    workspace_id: Text = "",
    csrf_token: Csrf = None,
) -> Response:
    """``PATCH /api/v1/domains/{id}``: the domain (and its share of the server's cost) to
    another workspace of its tenant, or to none."""

    async def move(session: AsyncSession, ctx: RequestContext, domain: MailDomain) -> None:
        data = DomainUpdate.model_validate({"workspace_id": workspace_id or None})
        await service.set_domain_workspace(session, domain, data.workspace_id)

    audit = ("PATCH", f"{API}/{{domain_id}}", 200)
    values = {"workspace_id": workspace_id}
    return await _change(request, console, domain_id, csrf_token, audit, "workspace", values, move)
