"""``mailfleet server resize|recommendations``: the resize routes' service functions on the
database (admin: every tenant's servers). ``serve``'s runner carries a resize out; ``--wait``
follows its steps with a progress bar. Loaded by ``control_plane.cli``; the services are
imported inside the commands, so ``mailfleet --help`` stays light."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from control_plane.cli import (
    JsonOption,
    bad_input,
    cell_text,
    fail,
    print_json,
    print_table,
    run_async,
    settings,
    with_database,
)

if TYPE_CHECKING:
    from control_plane.db.engine import Database
    from control_plane.resize.schemas import RecommendationOut, ResizeAccepted, ResizeOut

Server = Annotated[str, typer.Argument(metavar="SERVER", help="The server's id or name.")]
POLL_SECONDS = 0.5


def server_resize(
    server: Server,
    plan: Annotated[str, typer.Argument(metavar="PLAN", help="The plan id to move to.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the preview (price, downtime); change nothing.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the steps until it ends.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 1800,
    as_json: JsonOption = False,
) -> None:
    """Resize a server to another plan of its provider (`serve` carries it out)."""
    from pydantic import ValidationError

    from control_plane.audit.capture import name_cli_object
    from control_plane.cli_common import cli_actor, find_server
    from control_plane.provisioning.registry import ProviderRegistry
    from control_plane.resize import service
    from control_plane.resize.schemas import ResizeAccepted, ResizeIn
    from control_plane.vault.connect import running_vault

    loaded = settings()
    try:
        data = ResizeIn(plan=plan, dry_run=dry_run)
    except ValidationError:
        raise bad_input("PLAN: give a plan id (1-64 characters)") from None

    async def start(db: Database) -> ResizeAccepted:
        vault = running_vault(loaded)
        providers = ProviderRegistry(loaded, vault)
        try:
            async with db.session() as session:
                found = await find_server(session, server)
                name_cli_object("server", found.id)  # the audit record of the run names it
                preview, resize = await service.request_resize(
                    session, loaded, providers, found, data, cli_actor()
                )
                out = await service.resize_out(session, resize) if resize else None
                return ResizeAccepted(preview=preview, resize=out)
        finally:
            await providers.aclose()
            vault.close()

    accepted = run_async(with_database(start))
    if accepted.resize is not None and wait:
        ident = accepted.resize.id
        accepted.resize = run_async(with_database(lambda db: follow(db, ident, timeout)))
    if as_json:
        return print_json(accepted)
    _show_preview(accepted)
    if accepted.resize is not None:
        _show_resize(accepted.resize)
        if accepted.resize.state == "failed":
            raise fail(f"resize failed: {accepted.resize.error}")


def _show_preview(accepted: ResizeAccepted) -> None:
    p = accepted.preview
    sign = "+" if p.monthly_price_difference >= 0 else ""
    print_table(
        ("field", "value"),
        [
            ("provider", p.provider),
            ("from", f"{p.current_plan.id} ({_plan(p.current_plan)})"),
            ("to", f"{p.new_plan.id} ({_plan(p.new_plan)})"),
            ("monthly price", f"{p.monthly_price} {p.currency}"),
            (
                "difference",
                f"{sign}{p.monthly_price_difference} {p.currency}/month ({p.direction})",
            ),
            ("downtime", p.expected_downtime),
        ],
    )
    if accepted.resize is None:
        print_table(("step", "does"), [(s.name, s.does) for s in p.steps])


def _plan(plan: object) -> str:
    vcpus, memory, disk = (getattr(plan, k) for k in ("vcpus", "memory_mb", "disk_gb"))
    return f"{vcpus} vCPU, {memory} MB, {disk} GB"


def _show_resize(found: ResizeOut) -> None:
    from control_plane.cli_common import moment

    print_table(
        ("field", "value"),
        [(k, cell_text(v)) for k, v in found.model_dump(mode="json", exclude={"steps"}).items()],
    )
    print_table(
        ("step", "state", "started", "finished", "detail"),
        [(s.name, s.state, moment(s.started_at), moment(s.finished_at), s.detail or "-")
         for s in found.steps],
    )  # fmt: skip


async def follow(db: Database, resize_id: uuid.UUID, seconds: float) -> ResizeOut:
    """Follow the resize's steps with a progress bar until it ends (or ``seconds`` pass)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from control_plane.resize import service
    from control_plane.resize.models import ServerResize

    deadline = time.monotonic() + seconds
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("resize", total=1.0)
        while True:
            async with db.session() as session:
                row = await session.get(ServerResize, resize_id)
                assert row is not None
                found = await service.resize_out(session, row)
            at = next((s for s in found.steps if s.state == "running"), None)
            label = f"{at.name}: {at.detail or '…'}" if at else found.state
            bar.update(task, completed=found.progress, description=label[:70])
            if found.finished_at is not None:
                return found
            if time.monotonic() > deadline:
                raise fail(f"resize {resize_id} still {found.state} after {seconds:g} s")
            await asyncio.sleep(POLL_SECONDS)


def server_recommendations(server: Server, as_json: JsonOption = False) -> None:
    """The plan the server's usage fits, with the price difference and the evidence."""
    from control_plane.cli_common import find_server
    from control_plane.provisioning.registry import ProviderRegistry
    from control_plane.resize import service
    from control_plane.vault.connect import running_vault

    loaded = settings()

    async def load(db: Database) -> RecommendationOut:
        vault = running_vault(loaded)
        providers = ProviderRegistry(loaded, vault)
        try:
            async with db.session() as session:
                found = await find_server(session, server)
                return await service.recommendation(session, loaded, providers, found)
        finally:
            await providers.aclose()
            vault.close()

    found = run_async(with_database(load))
    if as_json:
        return print_json(found)
    difference = found.monthly_price_difference
    print_table(
        ("field", "value"),
        [
            ("state", found.state),
            ("reason", found.reason),
            ("current", found.current_plan.id if found.current_plan else "-"),
            ("recommended", found.recommended_plan.id if found.recommended_plan else "-"),
            ("difference", f"{difference} {found.currency}/month" if difference is not None
             else "-"),
        ],
    )  # fmt: skip
    print_table(
        ("resource", "series", "hours", f"p{found.percentile:g}", "target", "current", "new"),
        [(e.resource, e.series, str(e.hours), _value(e.percentile, e.unit),
          _value(e.target, e.unit), _value(e.current, e.unit), _value(e.recommended, e.unit))
         for e in found.evidence],
    )  # fmt: skip


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if unit == "cores" else f"{value / 1024**3:.2f} GiB"
