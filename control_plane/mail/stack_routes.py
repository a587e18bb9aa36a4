"""A server's mail stack: its status, its DKIM rotation and its secrets (tenant-scoped)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, status

from control_plane.api.context import Ctx
from control_plane.commands import handlers
from control_plane.commands.schemas import CommandOut
from control_plane.db.lookup import get_by_id
from control_plane.mail import dkim, stack
from control_plane.mail.schemas import (
    DkimRotate,
    DkimStateOut,
    MailSecretsRotate,
    MailStackOut,
)
from control_plane.servers.models import Server

router = APIRouter(prefix="/api/v1/servers/{server_id}/mail", tags=["mail"])


def dkim_state(server: Server) -> DkimStateOut:
    return DkimStateOut(
        signing=server.dkim_selector,
        next=server.dkim_next_selector,
        switch_at=server.dkim_switch_at,
        retiring=server.dkim_retiring_selector,
        retire_at=server.dkim_retire_at,
    )


@router.get("")
async def get_mail_stack(server_id: uuid.UUID, ctx: Ctx) -> MailStackOut:
    """The server's mail stack with the status MailU last reported."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        report = await stack.last_status(session, server)
    return MailStackOut(
        server_id=server.id,
        mail_stack=server.mail_stack,
        mail_hostname=server.mail_hostname,
        dkim=dkim_state(server),
        status=report[0] if report else None,
        status_at=report[1] if report else None,
    )


@router.post("/status", status_code=status.HTTP_202_ACCEPTED)
async def refresh_status(server_id: uuid.UUID, ctx: Ctx) -> CommandOut:
    """Ask the agent for MailU's status now; follow the command, then read ``GET …/mail``."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        command = await stack.request_status(session, server)
        out = CommandOut.of(command)
    handlers.wake(server_id)
    return out


@router.post("/secrets/rotate", status_code=status.HTTP_202_ACCEPTED)
async def rotate_secrets(server_id: uuid.UUID, body: MailSecretsRotate, ctx: Ctx) -> CommandOut:
    """New MailU secrets in Vault, re-rendered into mailu.env by a ``mailu.install``."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        command = await stack.rotate_secrets(session, ctx.vault, server, body.secrets)
        out = CommandOut.of(command)
    handlers.wake(server_id)
    return out


@router.post("/dkim/rotate", status_code=status.HTTP_202_ACCEPTED)
async def rotate_dkim(server_id: uuid.UUID, body: DkimRotate, ctx: Ctx) -> DkimStateOut:
    """Start a DKIM rotation: new keys now, the switch after the lead, the old selector
    retired after the overlap (see ``GET /api/v1/domains/{id}`` for the records to publish)."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        await dkim.start_rotation(
            session,
            ctx.vault,
            server,
            body.selector,
            timedelta(seconds=body.publish_lead_seconds),
            timedelta(seconds=body.overlap_seconds),
        )
        out = dkim_state(server)
    handlers.wake(server_id)
    return out
