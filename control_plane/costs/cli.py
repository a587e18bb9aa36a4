"""``mailfleet costs [--tenant T] [--workspace W] [--month 2026-11] [--group-by …]
[--format table|csv|json]``: what ``GET /api/v1/costs`` shows (the same report), read
from the database. Loaded by ``control_plane.cli``: light at import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import uuid

    from sqlalchemy.ext.asyncio import AsyncSession

    from control_plane.costs.report import CostReport
    from control_plane.db.engine import Database

FORMATS = ("table", "csv", "json")


async def _workspace(session: AsyncSession, ref: str, tenant_id: uuid.UUID | None) -> uuid.UUID:
    """The workspace with this id, or the one with this name (in the tenant if given)."""
    from sqlalchemy import select

    from control_plane.cli_common import as_uuid
    from control_plane.errors import InvalidInput, NotFound
    from control_plane.workspaces.models import Workspace

    stmt = select(Workspace.id).limit(2)
    ident = as_uuid(ref)
    stmt = stmt.where(Workspace.id == ident) if ident else stmt.where(Workspace.name == ref)
    if tenant_id is not None:
        stmt = stmt.where(Workspace.tenant_id == tenant_id)
    found = (await session.scalars(stmt)).all()
    if not found:
        raise NotFound("workspace", repr(ref), field="workspace")
    if len(found) > 1:
        raise InvalidInput(f"more than one workspace is named {ref!r}; give its id or --tenant")
    return found[0]


def costs(
    workspace: Annotated[
        str | None, typer.Option("--workspace", help="A workspace's id or name.")
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="A tenant's id or name.")] = None,
    month: Annotated[
        str | None, typer.Option("--month", help="YYYY-MM; default: this month to now.")
    ] = None,
    group_by: Annotated[
        str, typer.Option("--group-by", help="workspace, server, resource or day.")
    ] = "workspace",
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """What servers, addresses, backups and bandwidth cost in a month, grouped, with what
    each workspace is billed, the idle part, and the month's projection."""
    from dataclasses import asdict

    from control_plane.cli import bad_input, print_table, run_async, with_database
    from control_plane.cli_common import find_tenant
    from control_plane.costs import export
    from control_plane.costs.engine import day_start, month_of, next_month
    from control_plane.costs.report import GROUP_BY, cost_report
    from control_plane.costs.schemas import CostReportOut
    from control_plane.db.base import utcnow

    if fmt not in FORMATS:
        raise bad_input(f"--format: one of {', '.join(FORMATS)}")
    if group_by not in GROUP_BY:
        raise bad_input(f"--group-by: one of {', '.join(GROUP_BY)}")
    now = utcnow()
    try:
        first = month_of(month, now.date())
    except ValueError:
        raise bad_input("--month: a month like 2026-11") from None

    async def load(db: Database) -> CostReport:
        async with db.session() as session:
            tenant_id = (await find_tenant(session, tenant, field="tenant")).id if tenant else None
            workspace_id = await _workspace(session, workspace, tenant_id) if workspace else None
            return await cost_report(
                session, day_start(first), day_start(next_month(first)), now,
                tenant_id, workspace_id, group_by,
            )  # fmt: skip

    report = run_async(with_database(load))
    if fmt == "csv":
        for chunk in export.chunks(report):
            typer.echo(chunk, nl=False)
        return
    if fmt == "json":
        typer.echo(CostReportOut.model_validate(asdict(report)).model_dump_json(indent=2))
        return
    typer.echo(f"{report.start:%Y-%m-%d} – {report.end:%Y-%m-%d %H:%M} UTC, by {group_by}")
    print_table(
        (group_by, "currency", "cost", "billed", "note"),
        [
            (g.name, g.currency, str(g.cost), str(g.billed), "unpriced" if g.unpriced else "")
            for g in report.groups
        ]
        + [
            ("total", t.currency, str(t.cost), str(t.billed), "unpriced" if t.unpriced else "")
            for t in report.totals
        ],
    )
    for figures in report.month_to_date:
        typer.echo(
            f"{figures.month:%Y-%m}: {figures.actual} {figures.currency} so far, "
            f"{figures.projected} {figures.currency} projected to month end"
        )
