"""A server's backups on its page: the policy, the snapshots (paged), "Back up now" and a
restore to a chosen snapshot or point in time, each followed live to its end.

Every read and write is the backup API's own (``backups.routes.backups_out``,
``backups.service.run_now``, ``restore``, ``finish_restore``), so the page shows and does
exactly what ``GET/POST /api/v1/servers/{id}/backups`` and ``…/restore`` do. A job's
progress is its command's, as the agent reports it; the job's fragment asks again every
second until the command settles.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.status import HTTP_303_SEE_OTHER

from control_plane.backups import service
from control_plane.backups.routes import backups_out
from control_plane.backups.schemas import RestoreFinish, RestoreIn
from control_plane.commands import handlers
from control_plane.commands.models import FINAL_STATES
from control_plane.commands.schemas import CommandOut
from control_plane.errors import InvalidInput, MailFleetError
from control_plane.servers.models import Server
from control_plane.servers.service import get_server
from control_plane.web.console import Console, PageError, SignedIn, not_found, render
from control_plane.web.forms import blank_to_none, changing, parse
from control_plane.web.pages import ServerSection

router = APIRouter(include_in_schema=False)
SERVER_SECTIONS = (ServerSection("backups", "Backups", 10),)
PAGE_SIZE = 50
API = "/api/v1/servers/{server_id}"  # the API routes whose changes the forms make
JOB_TITLES = {
    "backup.run": "Backup",
    "backup.restore": "Restore",
    "backup.restore.finish": "Finishing the restore",
    "backup.snapshots": "Listing snapshots",
    "backup.check": "Repository check",
    "backup.drill": "Restore drill",
    "backup.forget": "Forgetting old snapshots",
}
CsrfField = Annotated[str | None, Form()]
Work = Callable[[AsyncSession, Server], Awaitable[object]]


def _job_values(server_id: uuid.UUID, command: CommandOut | None) -> dict[str, Any]:
    return {
        "server_id": server_id,
        "job": command,
        "job_title": JOB_TITLES.get(command.kind, command.kind) if command else "",
        "live": command is not None and command.state not in FINAL_STATES,
    }


def _utc(value: str) -> datetime | None:
    """A ``datetime-local`` field's value, read as UTC (the page says so); None if empty."""
    if not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        message = f"at: {value.strip()} is not a date and time (YYYY-MM-DDTHH:MM, UTC)."
        raise PageError(422, "Invalid time", message) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _restore_in(at: str, snapshot: str, mailbox: str) -> RestoreIn:
    """The API's restore body from the form; a refusal names the field, as the API's does."""
    return parse(
        RestoreIn, at=_utc(at), snapshot=blank_to_none(snapshot), mailbox=blank_to_none(mailbox)
    )


@router.get("/ui/servers/{server_id}/backups")
async def backups_section(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    before: Annotated[datetime | None, Query()] = None,
) -> HTMLResponse:
    """The section: policy and findings, the newest job, one page of snapshots."""
    try:
        async with console.ctx.session() as session:
            server = await get_server(session, server_id)
            shown = await backups_out(session, server, before, PAGE_SIZE + 1)
            latest = await service.latest_job(session, server)
    except MailFleetError as exc:
        raise not_found(exc) from None
    snapshots = shown.snapshots[:PAGE_SIZE]
    more = len(shown.snapshots) > PAGE_SIZE
    return render(
        request, "backups.html", console=console, backups=shown, snapshots=snapshots,
        next_before=snapshots[-1].taken_at if more else None, before=before,
        **_job_values(server_id, CommandOut.of(latest) if latest else None),
    )  # fmt: skip


@router.get("/ui/servers/{server_id}/backups/jobs/{command_id}")
async def backup_job(
    request: Request, console: SignedIn, server_id: uuid.UUID, command_id: uuid.UUID
) -> HTMLResponse:
    """One job's state and progress (polled every second while it runs). When it has just
    settled, the section's snapshot list is told to refresh (``backups-changed``)."""
    try:
        async with console.ctx.session() as session:
            server = await get_server(session, server_id)
            command = CommandOut.of(await service.job(session, server, command_id))
    except MailFleetError as exc:
        raise not_found(exc) from None
    response = render(
        request, "backups_job.html", console=console, **_job_values(server_id, command)
    )
    if command.state in FINAL_STATES:
        response.headers["HX-Trigger"] = "backups-changed"
    return response


async def _queue(
    request: Request, console: Console, csrf_token: str | None, api_route: str, work: Work
) -> RedirectResponse:
    """Queue a job through the backup service, audited as the API route that does the same
    (refusals too), wake delivery, and go back to the server's page, whose Backups section
    follows the job."""
    server_id = uuid.UUID(str(request.path_params["server_id"]))
    async with changing(request, console, csrf_token, "POST", api_route, 202) as (_, session):
        await work(session, await get_server(session, server_id))
    handlers.wake(server_id)
    return RedirectResponse(f"/ui/servers/{server_id}#backups-title", HTTP_303_SEE_OTHER)


@router.post("/ui/servers/{server_id}/backups")
async def back_up_now(
    request: Request, console: SignedIn, server_id: uuid.UUID, csrf_token: CsrfField = None
) -> Response:
    """Back up now: ``POST /api/v1/servers/{id}/backups``'s service (409 while a job runs)."""
    return await _queue(request, console, csrf_token, f"{API}/backups", service.run_now)


@router.get("/ui/servers/{server_id}/restore")
async def confirm_restore(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    at: Annotated[str, Query(max_length=40)] = "",
    snapshot: Annotated[str, Query(max_length=64)] = "",
    mailbox: Annotated[str, Query(max_length=320)] = "",
) -> HTMLResponse:
    """Which snapshot a restore would use (the chosen one, or the newest at or before the
    time), to confirm before anything changes."""
    body = _restore_in(at, snapshot, mailbox)
    try:
        async with console.ctx.session() as session:
            server = await get_server(session, server_id)
            await service.require_policy(session, server)
            chosen = await service.snapshot_for(session, server, body)
            server_name = server.name
    except InvalidInput as exc:  # the form's field, named as the form names it
        field = (exc.field or "form").removeprefix("body.")
        raise PageError(422, "Invalid restore", f"{field}: {exc.detail}") from None
    except MailFleetError as exc:
        raise not_found(exc) from None
    return render(
        request, "backups_restore.html", console=console, server_id=server_id,
        server_name=server_name, snapshot=chosen, at=body.at, mailbox=body.mailbox or "",
    )  # fmt: skip


@router.post("/ui/servers/{server_id}/restore")
async def restore(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    snapshot: Annotated[str, Form(max_length=64)] = "",
    mailbox: Annotated[str, Form(max_length=320)] = "",
    csrf_token: CsrfField = None,
) -> Response:
    """Restore in place: ``POST /api/v1/servers/{id}/restore``'s service; the previous
    state is kept aside until the restore is finished (kept or rolled back)."""

    async def restore(session: AsyncSession, server: Server) -> object:
        if not snapshot.strip():
            raise PageError(422, "Invalid restore", "snapshot: choose the snapshot to restore.")
        return await service.restore(session, server, _restore_in("", snapshot, mailbox))

    return await _queue(request, console, csrf_token, f"{API}/restore", restore)


@router.post("/ui/servers/{server_id}/restore/finish")
async def finish_restore(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    restore_id: Annotated[str, Form(max_length=64)] = "",
    keep: Annotated[str, Form(max_length=16)] = "",
    csrf_token: CsrfField = None,
) -> Response:
    """Keep the restored state or roll back: ``POST …/restore/finish``'s service."""

    async def finish(session: AsyncSession, server: Server) -> object:
        body = parse(RestoreFinish, restore_id=restore_id, keep=keep)
        return await service.finish_restore(session, server, body.restore_id, body.keep)

    return await _queue(request, console, csrf_token, f"{API}/restore/finish", finish)
