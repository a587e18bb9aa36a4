"""A server's mail-host certificate: issue or renew now, and when it expires."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import Field

from control_plane.api.context import Ctx
from control_plane.commands import handlers
from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.schemas import Finding, ResponseModel
from control_plane.servers.models import Server
from control_plane.tls import service
from control_plane.tls.models import Certificate
from control_plane.vault.client import Vault

router = APIRouter(prefix="/api/v1/servers/{server_id}/tls", tags=["tls"])


class CertificateOut(ResponseModel):
    server_id: uuid.UUID
    names: list[str]
    issuer: str | None = Field(
        description="The issuing CA's name, from the certificate; null while there is none "
        "or it cannot be read."
    )
    serial: str | None
    issued_at: datetime | None
    not_after: datetime | None
    days_left: float | None = Field(description="For health checks: renewal starts at 30.")
    renewing: bool
    last_error: str | None
    failures: int = Field(description="Failed attempts in a row (each waits twice as long).")
    next_attempt_at: datetime | None = Field(description="No automatic attempt before this.")
    findings: list[Finding] = Field(description="tls.renewal_failed while attempts fail.")
    delivery_command_id: uuid.UUID | None


async def certificate_out(cert: Certificate, vault: Vault) -> CertificateOut:
    """What the API and the console show of a certificate (its issuer read from Vault)."""
    now = utcnow()
    return CertificateOut(
        server_id=cert.server_id,
        names=cert.names.splitlines(),
        issuer=await service.issuer(vault, cert),
        serial=cert.serial,
        issued_at=cert.issued_at,
        not_after=cert.not_after,
        days_left=(cert.not_after - now).total_seconds() / 86400 if cert.not_after else None,
        renewing=cert.renewing_until is not None and cert.renewing_until > now,
        last_error=cert.last_error,
        failures=cert.failures,
        next_attempt_at=cert.next_attempt_at,
        findings=service.certificate_findings(cert, now),
        delivery_command_id=cert.command_id,
    )


@router.get("")
async def get_certificate(server_id: uuid.UUID, ctx: Ctx) -> CertificateOut:
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        cert = await service.get_certificate(session, server)
    return await certificate_out(cert, ctx.vault)


@router.post("")
async def issue_certificate(server_id: uuid.UUID, ctx: Ctx) -> CertificateOut:
    """Issue (or renew) the mail host's certificate by ACME DNS-01 now, then deliver it to
    MailU. Takes as long as the CA needs (typically seconds)."""
    async with ctx.session() as session:
        await get_by_id(session, Server, server_id, "server")  # the caller may see it
    cert = await service.issue_for_server(ctx.db, ctx.vault, ctx.settings, server_id)
    handlers.wake(server_id)
    return await certificate_out(cert, ctx.vault)
