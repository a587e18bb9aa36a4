"""``mailfleet server usage SERVER [--from --to --step] [--csv | --json]``: what
``GET …/servers/{id}/usage`` shows (the same service), as a table of summaries, the CSV
export, or the API's JSON. Loaded by ``control_plane.cli``: light at import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from control_plane.db.engine import Database
    from control_plane.usage.service import Usage


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _figure(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def server_usage(
    server_id: Annotated[str, typer.Argument(metavar="SERVER", help="The server's id or name.")],
    start: Annotated[
        str | None, typer.Option("--from", help="Start (ISO time, UTC); default 7 days ago.")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="End (ISO time); default now.")] = None,
    step: Annotated[
        str | None,
        typer.Option("--step", help="raw, 1m, 5m, 15m, 1h or 1d; default: from the range."),
    ] = None,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="The CSV export (time, series, avg, min, max, count).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON (the API's shape) instead of a table.")
    ] = False,
) -> None:
    """A server's usage: per series its unit, points and summary (average, p95, max, peak
    hour and weekday, trend per day)."""
    from control_plane.cli import (
        bad_input,
        parse_when,
        print_table,
        run_async,
        settings,
        with_database,
    )
    from control_plane.cli_common import find_server
    from control_plane.db.base import utcnow
    from control_plane.errors import InvalidInput
    from control_plane.usage import export, service
    from control_plane.usage.series import STEPS, TierReach

    if as_csv and as_json:
        raise bad_input("--csv and --json: choose one")
    if step is not None and step not in STEPS:
        raise bad_input(f"--step: one of {', '.join(STEPS)}")
    start_at = parse_when(start, "--from") if start else None
    end_at = parse_when(end, "--to") if end else None
    reach = TierReach.of(settings())

    async def load(db: Database) -> Usage:
        async with db.session() as session:
            server = await find_server(session, server_id)
            try:
                return await service.server_usage(
                    session,
                    server.id,
                    start_at,
                    end_at,
                    step,
                    reach,
                    utcnow(),
                )
            except InvalidInput as exc:  # query.step → --step
                flag = f"--{(exc.field or '').rpartition('.')[2]}"
                raise bad_input(f"{flag}: {exc.detail}") from None

    usage = run_async(with_database(load))
    if as_csv:
        for chunk in export.chunks(usage, "csv"):
            typer.echo(chunk, nl=False)
        return
    if as_json:
        typer.echo(usage.json(indent=2).decode())
        return
    out = usage.out()
    typer.echo(f"{usage.start:%Y-%m-%d %H:%M} – {usage.end:%Y-%m-%d %H:%M} UTC, step {usage.step}")
    print_table(
        ("series", "unit", "points", "average", "p95", "max", "peak hour", "peak day", "trend/day"),
        [
            (
                s.name,
                s.unit,
                str(len(s.points)),
                _figure(s.summary.average),
                _figure(s.summary.p95),
                _figure(s.summary.max),
                _figure(s.summary.peak_hour),
                WEEKDAYS[s.summary.peak_weekday] if s.summary.peak_weekday is not None else "-",
                _figure(s.summary.trend_per_day),
            )
            for r in out.resources
            for s in r.series
        ],
    )
