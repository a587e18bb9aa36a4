"""``mailfleet server health SERVER [--run] [--json]``: what ``GET …/health`` shows, and
``--run`` does what ``POST …/health/run`` does (the same service functions and Checker).

Loaded by ``control_plane.cli``, whose helpers it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from control_plane.cli import (
    JsonOption,
    print_json,
    print_table,
    run_async,
    settings,
    with_database,
)
from control_plane.cli_common import find_server, moment

if TYPE_CHECKING:  # the services come with the command (this module loads for every run)
    from control_plane.db.engine import Database
    from control_plane.health.schemas import CheckOut, HealthOut


def server_health(
    server_id: Annotated[str, typer.Argument(metavar="SERVER", help="The server's id or name.")],
    run: Annotated[
        bool, typer.Option("--run", help="Run the checks now (as POST …/health/run) first.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """A server's health: the overall state and every check (state, severity, detail,
    observed value, threshold, last run)."""
    from control_plane.audit.capture import name_cli_object
    from control_plane.health import service  # the checks' imports: only when asked for
    from control_plane.health.sweep import Checker

    loaded = settings()

    async def load(db: Database) -> HealthOut:
        async with db.session() as session:
            server = await find_server(session, server_id)
            if not run:
                return await service.health_out(session, server)
            name_cli_object("server", server.id)  # the audit record of the run names it
            ident = server.id
        results = await Checker(db, loaded).run_now(ident)
        async with db.session() as session:
            server = await service.require_server(session, ident)
            return service.run_out(await service.health_out(session, server), results)

    health = run_async(with_database(load))
    if as_json:
        return print_json(health)
    when = f"last run {moment(health.last_run_at)}, next {moment(health.next_run_at)}"
    typer.echo(f"overall: {health.overall} ({when})")
    print_table(
        ("check", "state", "severity", "detail", "observed", "threshold", "last run"),
        [_row(check) for check in health.checks],
    )


def _row(check: CheckOut) -> tuple[str, ...]:
    state: str = check.state
    if check.pending is not None:
        state += f" ({check.pending.state} pending re-check)"
    return (
        check.check,
        state,
        check.severity,
        check.detail,
        check.observed or "-",
        check.threshold or "-",
        moment(check.last_run_at),
    )
