"""A server's DNS section: each of its mail domains' records, desired beside published
(``GET /api/v1/domains/{id}/dns``), and "Test DNS" (``POST …/dns/check``) streaming each
server's answer as it comes (server-sent events, htmx's sse extension)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.dns import checks
from control_plane.dns import service as dns
from control_plane.dns.checker import ServerResult
from control_plane.dns.models import DnsCheck
from control_plane.dns.record import Record
from control_plane.errors import MailFleetError, NotFound
from control_plane.mail.models import MailDomain
from control_plane.mail.service import get_domain, list_domains
from control_plane.provisioning.stream import sse
from control_plane.vault.client import Vault
from control_plane.web.console import (
    Console,
    PageError,
    SignedIn,
    acting_as,
    not_found,
    render,
    require_csrf,
    visible_server,
)
from control_plane.web.pages import ServerSection

router = APIRouter(include_in_schema=False)
SERVER_SECTIONS = (ServerSection("dns", "DNS", 20),)
PAGE_SIZE = 50
TICKET_SECONDS = 60
CHECK_API = "/api/v1/domains/{domain_id}/dns/check"
# A server's answer as the page words it: one that could not be asked is "unknown".
STATUS_WORDS = {"error": "unknown"}


@dataclass(frozen=True)
class RecordRow:
    record: Record
    state: str  # published, missing, different; unknown: the provider could not be read
    published: tuple[str, ...] | None


@dataclass(frozen=True)
class DomainView:
    domain: MailDomain
    zone: str | None  # None: no DNS settings yet
    records: list[RecordRow]
    problem: str | None  # why published values are unknown

    @property
    def mismatches(self) -> int:
        return sum(1 for row in self.records if row.state != "published")


async def domain_view(session: AsyncSession, vault: Vault, domain: MailDomain) -> DomainView:
    """The domain's records as ``GET …/dns`` compares them; the provider's failure leaves
    every published value unknown (never assumed published)."""
    try:
        row = await dns.settings_of(session, domain)
    except NotFound:
        return DomainView(domain, None, [], None)
    try:
        _, compared = await dns.compare(session, vault, domain)
    except MailFleetError as exc:
        try:
            records = await dns.desired_records(session, domain, row)
        except MailFleetError:
            records = []
        rows = [RecordRow(record, "unknown", None) for record in records]
        return DomainView(domain, row.zone, rows, exc.detail)
    return DomainView(domain, row.zone, [RecordRow(*item) for item in compared], None)


@router.get("/ui/servers/{server_id}/dns")
async def dns_section(
    request: Request, console: SignedIn, server_id: uuid.UUID, after: uuid.UUID | None = None
) -> HTMLResponse:
    """Each of the server's domains with its records, mismatches marked."""
    server = await visible_server(console, server_id)
    async with console.ctx.session() as session:
        page = await list_domains(session, server_id, after, PAGE_SIZE)
        views = [await domain_view(session, console.ctx.vault, d) for d in page.items]
    return render(
        request, "dns_section.html", console=console, server=server, domains=views,
        next_after=page.next_after,
    )  # fmt: skip


async def _server_domain(
    console: Console, server_id: uuid.UUID, domain_id: uuid.UUID
) -> MailDomain:
    """The domain if the key may see it and it is on that server, else a 404 page."""
    await visible_server(console, server_id)
    try:
        async with console.ctx.session() as session:
            domain = await get_domain(session, domain_id)
    except MailFleetError as exc:
        raise not_found(exc) from None
    if domain.server_id != server_id:
        raise not_found(NotFound("domain", domain_id))
    return domain


def _ticket(console: Console, domain_id: uuid.UUID, expires: int) -> str:
    message = f"dns-check:{domain_id}:{expires}".encode()
    return f"{expires}.{hmac.new(console.csrf.encode(), message, hashlib.sha256).hexdigest()}"


def ticket_valid(console: Console, domain_id: uuid.UUID, given: str) -> bool:
    """The stream's ticket: issued by the CSRF-checked POST to this session for this
    domain, good for TICKET_SECONDS (an EventSource can only GET, and sends no form)."""
    expires = given.partition(".")[0]
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(given, _ticket(console, domain_id, int(expires)))


@router.post("/ui/servers/{server_id}/dns/{domain_id}/check")
async def dns_check(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    domain_id: uuid.UUID,
    csrf_token: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    """Start "Test DNS": the answer connects the page to the check's stream."""
    require_csrf(request, csrf_token, console.csrf)
    domain = await _server_domain(console, server_id, domain_id)
    ticket = _ticket(console, domain_id, int(time.time()) + TICKET_SECONDS)
    return render(request, "dns_check.html", server_id=server_id, domain=domain, ticket=ticket)


def verdict(counts: Mapping[str, int], propagated: bool) -> str:
    """ok only when every server served every record; something wrong is "not propagated";
    only servers that could not be asked leave it unknown."""
    if propagated:
        return "ok"
    if counts.get("missing") or counts.get("different") or counts.get("stale"):
        return "not propagated"
    return "unknown"


@router.get("/ui/servers/{server_id}/dns/{domain_id}/check")
async def dns_check_stream(
    request: Request, console: SignedIn, server_id: uuid.UUID, domain_id: uuid.UUID, ticket: str
) -> StreamingResponse:
    """The check itself (``checks.check``, kept as the API keeps it): a ``result`` event per
    server answer (a table row), then the ``verdict`` and ``done``."""
    domain = await _server_domain(console, server_id, domain_id)
    if not ticket_valid(console, domain_id, ticket):
        raise PageError(403, "Refused", "This DNS test has expired: press Test DNS again.")
    ctx = acting_as(request, console, "POST", CHECK_API, 200)

    async def run(on_progress: Callable[[ServerResult], None]) -> DnsCheck:
        async with ctx.session() as session:
            found = await get_domain(session, domain.id)
            return await checks.check(session, ctx.vault, ctx.settings, found, on_progress)

    def html(name: str, **values: Any) -> str:
        return bytes(render(request, name, **values).body).decode()

    async def stream() -> AsyncIterator[str]:
        state, detail, counts = "unknown", "The check stopped before it finished.", {}
        try:
            async for item in checks.streamed(run):
                if isinstance(item, ServerResult):
                    word = STATUS_WORDS.get(item.status.value, item.status.value)
                    yield sse("result", html("dns_result.html", r=item, word=word))
                else:
                    report = json.loads(item.report)
                    counts = report["counts"]
                    state, detail = verdict(counts, item.propagated), ""
        except MailFleetError as exc:
            detail = f"The check could not run: {exc.detail}"
        except Exception as exc:
            detail = f"The check could not run: {exc}"
        yield sse("verdict", html("dns_verdict.html", state=state, detail=detail, counts=counts))
        yield sse("done", "")

    return StreamingResponse(stream(), media_type="text/event-stream")
