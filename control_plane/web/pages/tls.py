"""A server's TLS certificate on its page: names, issuer, expiry, days left and how its
renewal goes, from the TLS API's own reads (``GET /api/v1/servers/{id}/tls``)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from control_plane.errors import MailFleetError, NotFound
from control_plane.servers.service import get_server
from control_plane.tls import service
from control_plane.tls.models import Certificate
from control_plane.tls.routes import certificate_out
from control_plane.web.console import SignedIn, not_found, render
from control_plane.web.pages import ServerSection

router = APIRouter(include_in_schema=False)
SERVER_SECTIONS = (ServerSection("tls", "TLS", 40),)


@router.get("/ui/servers/{server_id}/tls")
async def tls_section(request: Request, console: SignedIn, server_id: uuid.UUID) -> HTMLResponse:
    """The mail host's certificate, or what to do while it has none."""
    try:
        async with console.ctx.session() as session:
            server = await get_server(session, server_id)
            try:
                found: Certificate | None = await service.get_certificate(session, server)
            except NotFound:
                found = None
    except MailFleetError as exc:
        raise not_found(exc) from None
    cert = await certificate_out(found, console.ctx.vault) if found is not None else None
    return render(
        request, "tls.html", console=console, server_id=server_id, cert=cert,
        mail_hostname=server.mail_hostname, renew_days=console.ctx.settings.tls_renew_days,
    )  # fmt: skip
