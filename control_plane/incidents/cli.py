"""``mailfleet incident list|show|ack|resolve|comment`` and ``mailfleet silence
create|list|expire``: the API's incident and silence service functions, on the database.

The actor the timeline and silences show is the OS user at this CLI (``cli_actor``); the
audit log records each change as the CLI's (see ``audit.capture``). Loaded by
``control_plane.cli``, whose helpers it uses.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, get_args

import typer
from pydantic import ValidationError

from control_plane.cli import (
    JsonOption,
    bad_input,
    cell_text,
    invalid,
    parse_uuid,
    parse_when,
    print_json,
    print_table,
    run_async,
    with_database,
)
from control_plane.cli_common import cli_actor, every_page, find_server, find_tenant, moment

if TYPE_CHECKING:  # the services come with the commands (this module loads for every run)
    from sqlalchemy.ext.asyncio import AsyncSession

    from control_plane.db.engine import Database
    from control_plane.incidents.schemas import (
        IncidentDetailOut,
        IncidentOut,
        SilenceOut,
        TimelineEntryOut,
    )

incident_app = typer.Typer(help="Incidents and their timelines.", no_args_is_help=True)
silence_app = typer.Typer(
    help="Silences: matching incidents are recorded, not notified.", no_args_is_help=True
)
PAGE = 500
DURATION = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
IncidentId = Annotated[str, typer.Argument(metavar="ID", help="The incident's id.")]


@incident_app.command("list")
def incident_list(
    state: Annotated[
        str | None, typer.Option("--state", help="open, acknowledged or resolved.")
    ] = None,
    server: Annotated[str | None, typer.Option("--server", help="A server's id or name.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Incidents, oldest first: state, severity, check, subject and summary."""
    from control_plane.incidents import service
    from control_plane.incidents.schemas import IncidentState

    states = get_args(IncidentState)
    if state is not None and state not in states:
        raise bad_input(f"--state: one of {', '.join(states)}, not {state!r}")

    async def load(db: Database) -> tuple[list[IncidentOut], dict[uuid.UUID, str]]:
        async with db.session() as session:
            server_id = None
            if server is not None:
                server_id = (await find_server(session, server, field="server_id")).id
            incidents = await every_page(
                lambda after: service.list_incidents(
                    session, state=state, server_id=server_id, after=after, limit=PAGE
                )
            )
            found = [service.incident_out(i) for i in incidents]
            return found, await _server_names(session, found)

    found, names = run_async(with_database(load))
    if as_json:
        return print_json(found)
    rows = [
        (str(i.id), i.state, i.severity, i.check, _subject(i, names), moment(i.opened_at),
         i.summary)
        for i in found
    ]  # fmt: skip
    print_table(("id", "state", "severity", "check", "subject", "opened", "summary"), rows)


@incident_app.command("show")
def incident_show(incident_id: IncidentId, as_json: JsonOption = False) -> None:
    """One incident with its timeline: triggered, notified (each channel's delivery
    result), escalated, acknowledged, commented, resolved."""
    from control_plane.incidents import service

    ident = parse_uuid(incident_id, "ID")

    async def load(db: Database) -> IncidentDetailOut:
        async with db.session() as session:
            return await service.detail_out(session, await service.get_incident(session, ident))

    found = run_async(with_database(load))
    if as_json:
        return print_json(found)
    fields = found.model_dump(mode="json", exclude={"timeline", "escalation"})
    fields.update({f"escalation.{k}": v for k, v in found.escalation.model_dump().items()})
    print_table(("field", "value"), [(k, cell_text(v)) for k, v in fields.items()])
    print_table(("at", "kind", "actor", "detail"), [_entry(e) for e in found.timeline])


@incident_app.command("ack")
def incident_ack(incident_id: IncidentId) -> None:
    """Acknowledge: stop escalating; the channels told so far hear who took it."""
    from control_plane.db.base import utcnow
    from control_plane.incidents import service

    ident, actor = parse_uuid(incident_id, "ID"), cli_actor()

    async def ack(db: Database) -> None:
        async with db.session() as session:
            incident = await service.lock_incident(session, ident)
            await service.acknowledge(session, incident, utcnow(), actor)

    run_async(with_database(ack))
    typer.echo(f"{ident}: acknowledged by {actor}")


@incident_app.command("resolve")
def incident_resolve(incident_id: IncidentId) -> None:
    """Resolve by hand; if its check still fails, its next failing result opens a new one."""
    from control_plane.db.base import utcnow
    from control_plane.incidents import service

    ident, actor = parse_uuid(incident_id, "ID"), cli_actor()

    async def resolve(db: Database) -> None:
        async with db.session() as session:
            incident = await service.lock_incident(session, ident)
            await service.resolve_by(session, incident, utcnow(), actor)

    run_async(with_database(resolve))
    typer.echo(f"{ident}: resolved by {actor}")


@incident_app.command("comment")
def incident_comment(
    incident_id: IncidentId,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The comment.")],
) -> None:
    """Add a comment to the incident's timeline."""
    from control_plane.db.base import utcnow
    from control_plane.incidents import service
    from control_plane.incidents.schemas import CommentIn

    ident, actor = parse_uuid(incident_id, "ID"), cli_actor()
    try:
        body = CommentIn(body=text)
    except ValidationError as exc:
        raise bad_input(f"TEXT: {exc.errors()[0]['msg']}") from None

    async def comment(db: Database) -> None:
        async with db.session() as session:
            incident = await service.get_incident(session, ident)
            await service.comment(session, incident, utcnow(), actor, body.body)

    run_async(with_database(comment))
    typer.echo(f"{ident}: comment added by {actor}")


@silence_app.command("create")
def silence_create(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's id or name.")],
    comment: Annotated[str, typer.Option("--comment", help="Why.")],
    server: Annotated[str | None, typer.Option("--server", help="A server's id or name.")] = None,
    check: Annotated[
        str | None, typer.Option("--check", help="A check id (smtp.25) or a prefix (disk.*).")
    ] = None,
    severity: Annotated[
        str | None, typer.Option("--severity", help="critical, warning or info.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Until this time, e.g. 2026-12-01T06:00Z.")
    ] = None,
    duration: Annotated[
        str | None, typer.Option("--for", help="Or for this long from --from, e.g. 2h, 1d12h.")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="From this time (default: now).")
    ] = None,
) -> None:
    """Hold back notifications of the tenant's matching incidents (at least one of
    --server, --check, --severity); prints the silence's id."""
    from control_plane.db.base import utcnow
    from control_plane.incidents import silences
    from control_plane.incidents.schemas import SilenceIn

    if (until is None) == (duration is None):
        raise bad_input("give exactly one of --until TIME or --for DURATION")
    now = utcnow()
    starts_at = parse_when(start, "--from") if start is not None else None
    if until is not None:
        ends_at = parse_when(until, "--until")
    else:
        ends_at = (starts_at or now) + _duration(duration or "")

    async def create(db: Database) -> uuid.UUID:
        async with db.session() as session:
            owner = await find_tenant(session, tenant, field="tenant_id")
            server_id = None
            if server is not None:
                found = await find_server(session, server, tenant_id=owner.id, field="server_id")
                server_id = found.id
            try:
                body = SilenceIn(
                    server_id=server_id,
                    check=check,
                    severity=severity,
                    starts_at=starts_at,
                    ends_at=ends_at,
                    comment=comment,
                )
            except ValidationError as exc:
                raise invalid(exc) from None
            made = await silences.create_silence(session, owner.id, body, cli_actor(), now)
            return made.id

    typer.echo(str(run_async(with_database(create))))


@silence_app.command("list")
def silence_list(
    active: Annotated[bool, typer.Option("--active", help="Only those holding now.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Silences: matchers, when they hold, who made them and why."""
    from control_plane.db.base import utcnow
    from control_plane.incidents import silences

    async def load(db: Database) -> list[SilenceOut]:
        async with db.session() as session:
            active_at = utcnow() if active else None
            found = await every_page(
                lambda after: silences.list_silences(
                    session, active_at=active_at, after=after, limit=PAGE
                )
            )
            return [silences.silence_out(s) for s in found]

    found = run_async(with_database(load))
    if as_json:
        return print_json(found)
    rows = [
        (str(s.id), str(s.tenant_id), cell_text(s.server_id), s.check or "-", s.severity or "-",
         moment(s.starts_at), moment(s.ends_at), "yes" if s.active else "no", s.created_by,
         s.comment)
        for s in found
    ]  # fmt: skip
    columns = ("id", "tenant", "server", "check", "severity", "starts", "ends", "active", "by")
    print_table((*columns, "comment"), rows)


@silence_app.command("expire")
def silence_expire(
    silence_id: Annotated[str, typer.Argument(metavar="ID", help="The silence's id.")],
) -> None:
    """End a silence now; the incidents it held are notified at the engine's next round."""
    from control_plane.db.base import utcnow
    from control_plane.incidents import silences

    ident = parse_uuid(silence_id, "ID")

    async def expire(db: Database) -> datetime:
        async with db.session() as session:
            silence = await silences.get_silence(session, ident)
            return (await silences.expire_silence(session, silence, utcnow())).ends_at

    ended = run_async(with_database(expire))
    typer.echo(f"{ident}: ends {moment(ended)}")


def _duration(text: str) -> timedelta:
    """``2h``, ``90m``, ``1d12h``, ``30s``, ``1w``."""
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise bad_input(f"--for: not a duration like 2h, 90m or 1d12h: {text!r}")
    seconds = sum(float(n) * UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise bad_input("--for: must be longer than zero")
    return timedelta(seconds=seconds)


async def _server_names(
    session: AsyncSession, found: Sequence[IncidentOut]
) -> dict[uuid.UUID, str]:
    from sqlalchemy import select

    from control_plane.servers.models import Server

    ids = {i.server_id for i in found if i.server_id is not None}
    if not ids:
        return {}
    rows = await session.execute(select(Server.id, Server.name).where(Server.id.in_(ids)))
    return {ident: name for ident, name in rows.all()}


def _subject(incident: IncidentOut, names: dict[uuid.UUID, str]) -> str:
    if incident.subject_kind == "server" and incident.server_id in names:
        return f"server {names[incident.server_id]}"
    return f"{incident.subject_kind} {incident.subject_id}"


def _entry(entry: TimelineEntryOut) -> tuple[str, ...]:
    detail = entry.detail
    if entry.last_error:
        detail += f" ({entry.last_error})"
    return (moment(entry.at), entry.kind, entry.actor or "-", detail)
