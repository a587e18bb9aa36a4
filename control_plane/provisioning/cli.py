"""``mailfleet server create|delete|retry``: order through the database, follow with a progress bar.

The CLI writes the order as the API would; the provisioning runner of a running
``mailfleet serve`` (any replica) carries it out. ``--wait`` follows the server's events.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from control_plane.db.engine import Database
from control_plane.errors import InvalidInput, MailFleetError
from control_plane.provisioning import service
from control_plane.provisioning.events import list_events
from control_plane.provisioning.registry import OWNED_BY_CUSTOMER, ProviderRegistry
from control_plane.provisioning.workflow import PROVISION_STEPS
from control_plane.servers.models import Server
from control_plane.servers.schemas import ServerCreate
from control_plane.servers.service import get_server
from control_plane.settings import Settings
from control_plane.vault.connect import running_vault

LOCAL = "local"
POLL_SECONDS = 0.5
NO_RUNNER_HINT_SECONDS = 15.0
console = Console(stderr=True, highlight=False)


async def create_server(
    db: Database, settings: Settings, body: ServerCreate, wait_seconds: float | None
) -> str:
    vault = running_vault(settings)
    providers = ProviderRegistry(settings, vault)
    try:
        if body.provider not in OWNED_BY_CUSTOMER and (body.region is None or body.plan is None):
            body = await _with_defaults(providers, body)
        tenant_id = body.tenant_id
        assert tenant_id is not None
        async with db.session() as session:
            server = await service.order_server(session, providers, settings, tenant_id, body)
            server_id = server.id
    finally:
        await providers.aclose()
        vault.close()
    if wait_seconds is not None:
        await follow(db, server_id, wait_seconds, gone_is_success=False)
    return str(server_id)


async def delete_server(
    db: Database, settings: Settings, server_id: uuid.UUID, wait_seconds: float | None
) -> None:
    async with db.session() as session:
        await service.deprovision(session, await get_server(session, server_id), settings)
    if wait_seconds is not None:
        await follow(db, server_id, wait_seconds, gone_is_success=True)


async def delete_local_servers(
    db: Database, settings: Settings, wait_seconds: float | None
) -> list[uuid.UUID]:
    """Deprovision every server of the local provider (what ``serve`` leaves running)."""
    async with db.session() as session:
        found = (await session.scalars(select(Server).where(Server.provider == LOCAL))).all()
        for server in found:
            await service.deprovision(session, server, settings)
        ids = [server.id for server in found]
    if wait_seconds is not None:
        deadline = time.monotonic() + wait_seconds
        for server_id in ids:
            await follow(db, server_id, max(0.0, deadline - time.monotonic()), gone_is_success=True)
    return ids


async def retry_server(
    db: Database, settings: Settings, server_id: uuid.UUID, wait_seconds: float | None
) -> str:
    """Send a failed server back to its failed step; the step it runs again."""
    async with db.session() as session:
        server = await service.retry(session, await get_server(session, server_id), settings)
        step = server.state
    if wait_seconds is not None:
        await follow(db, server_id, wait_seconds, gone_is_success=False)
    return step


async def _with_defaults(providers: ProviderRegistry, body: ServerCreate) -> ServerCreate:
    catalog = await providers.catalog(body.provider)
    region, plan = body.region, body.plan
    if region is None:
        if len(catalog.regions) != 1:
            offered = ", ".join(r.id for r in catalog.regions)
            raise InvalidInput(
                f"--region is required for {body.provider} (offered: {offered})",
                field="body.region",
            )
        region = catalog.regions[0].id
    if plan is None and catalog.plans:
        plan = catalog.plans[0].id
    return body.model_copy(update={"region": region, "plan": plan})


async def follow(
    db: Database, server_id: uuid.UUID, wait_seconds: float, gone_is_success: bool
) -> None:
    """Show the workflow's progress until it settles; a failure ends with its reason."""
    steps = [*PROVISION_STEPS, "ready"]
    after: uuid.UUID | None = None
    started = time.monotonic()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("requested", total=len(steps) - 1)
        while time.monotonic() - started < wait_seconds:
            async with db.session() as session:
                server = await session.get(Server, server_id)
                page = await list_events(session, server_id, after, 200)
            for event in page.items:
                after = event.id
                progress.console.print(
                    f"[dim]{event.at:%H:%M:%S}[/] {event.state}: {event.message}"
                )
            if server is None:
                if gone_is_success:
                    progress.update(task, description="deleted", completed=len(steps) - 1)
                    return
                raise MailFleetError(f"server {server_id} was deleted")
            done = steps.index(server.state) if server.state in steps else 0
            progress.update(task, description=server.state, completed=done)
            if server.state == "ready" and not gone_is_success:
                return
            if server.state == "failed":
                raise MailFleetError(
                    f"server {server_id} failed in {server.failed_step}: {server.failure_reason}"
                )
            if server.state == "requested" and time.monotonic() - started > NO_RUNNER_HINT_SECONDS:
                progress.update(task, description="requested (is `mailfleet serve` running?)")
            await asyncio.sleep(POLL_SECONDS)
    raise MailFleetError(f"server {server_id} did not settle within {wait_seconds:.0f} s")
