"""``mailfleet ip list|show|add|remove|warmup|pause|resume|allowance``: the IP routes'
service functions, on the database (admin: every tenant's addresses).

The actor events show is the OS user at this CLI (``cli_actor``). Loaded by
``control_plane.cli``, whose helpers it uses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import ValidationError

from control_plane.cli import (
    JsonOption,
    bad_input,
    cell_text,
    invalid,
    print_json,
    print_table,
    run_async,
    settings,
    with_database,
)
from control_plane.cli_common import cli_actor, every_page, find_server, moment
from control_plane.errors import NotFound

if TYPE_CHECKING:  # the services come with the commands (this module loads for every run)
    from sqlalchemy.ext.asyncio import AsyncSession

    from control_plane.db.engine import Database
    from control_plane.ips import provider_ips
    from control_plane.ips.models import IpAddress
    from control_plane.ips.schemas import AllowanceOut, IpDetailOut, IpOut
    from control_plane.provisioning.registry import ProviderRegistry

ip_app = typer.Typer(help="IP addresses: inventory, warmup, pause.", no_args_is_help=True)
Address = Annotated[str, typer.Argument(metavar="IP", help="The address.")]
Server = Annotated[str, typer.Argument(metavar="SERVER", help="The server's id or name.")]
T = TypeVar("T")
PAGE = 500


def _show(found: IpDetailOut, as_json: bool) -> None:
    if as_json:
        return print_json(found)
    fields = found.model_dump(mode="json", exclude={"events", "warmup", "pause"})
    fields.update({f"warmup.{k}": v for k, v in found.warmup.model_dump(mode="json").items()})
    fields.update({f"pause.{k}": v for k, v in found.pause.model_dump(mode="json").items()})
    fields["warmup.caps"] = _caps_summary(found.warmup.caps)
    print_table(("field", "value"), [(k, cell_text(v)) for k, v in fields.items()])
    print_table(
        ("at", "kind", "actor", "detail"),
        [(moment(e.at), e.kind, e.actor or "-", e.detail) for e in found.events],
    )


def _caps_summary(caps: list[int] | None) -> str | None:
    if not caps:
        return None
    return f"{len(caps)} days: {caps[0]} … {caps[-1]}"


def _on_ip(address: str, work: Callable[[AsyncSession, IpAddress], Awaitable[T]]) -> T:
    """Run ``work`` on the live row of ``address``; the answer is the row's detail."""
    from control_plane.ips import service

    async def run(db: Database) -> T:
        async with db.session() as session:
            return await work(session, await service.get_live(session, address))

    return run_async(with_database(run))


async def _detail(session: AsyncSession, ip: IpAddress) -> IpDetailOut:
    from control_plane.db.base import utcnow
    from control_plane.ips import operations

    return await operations.detail_out(session, ip, utcnow())


@ip_app.command("list")
def ip_list(
    server: Annotated[str | None, typer.Option("--server", help="A server's id or name.")] = None,
    role: Annotated[str | None, typer.Option("--role", help="sending, standby, retired.")] = None,
    paused: Annotated[bool | None, typer.Option("--paused/--not-paused")] = None,
    as_json: JsonOption = False,
) -> None:
    """Live addresses: server, role, warmup, pause, listing."""
    from control_plane.db.base import utcnow
    from control_plane.ips import operations

    if role is not None and role not in ("sending", "standby", "retired"):
        raise bad_input(f"--role: sending, standby or retired, not {role!r}")

    async def load(db: Database) -> list[IpOut]:
        now = utcnow()
        async with db.session() as session:
            server_id = (
                (await find_server(session, server, field="server_id")).id if server else None
            )
            flt = operations.IpFilter(server_id=server_id, role=role, paused=paused)
            ips = await every_page(lambda after: operations.list_ips(session, flt, after, PAGE))
            return [operations.ip_out(ip, now) for ip in ips]

    found = run_async(with_database(load))
    if as_json:
        return print_json(found)
    rows = [
        (ip.address, str(ip.server_id), ip.role, _warmup_cell(ip),
         f"paused: {ip.pause.reason}" if ip.pause.paused else "-",
         f"{ip.listing} ({ip.score})" if ip.score is not None else ip.listing)
        for ip in found
    ]  # fmt: skip
    print_table(("address", "server", "role", "warmup", "pause", "listing"), rows)


def _warmup_cell(ip: IpOut) -> str:
    plan = ip.warmup
    if plan.plan is None:
        return "-"
    if plan.done_at is not None:
        return f"{plan.plan}: done"
    return f"{plan.plan}: day {plan.day}/{plan.days}, cap {cell_text(plan.today_cap)}"


@ip_app.command("show")
def ip_show(address: Address, as_json: JsonOption = False) -> None:
    """One address with its history on its server."""
    _show(_on_ip(address, _detail), as_json)


@asynccontextmanager
async def _providers(found: provider_ips.Target) -> AsyncIterator[ProviderRegistry | None]:
    """The providers, from Vault, when the server has one (a manual server needs neither)."""
    from control_plane.provisioning.registry import ProviderRegistry
    from control_plane.vault.connect import running_vault

    if found.instance_id is None:
        yield None
        return
    vault = running_vault(settings())
    providers = ProviderRegistry(settings(), vault)
    try:
        yield providers
    finally:
        await providers.aclose()
        vault.close()


@ip_app.command("add")
def ip_add(
    server: Server,
    address: Annotated[
        str | None, typer.Option("--address", help="Manual servers: the address to register.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The server's provider attaches one more address (a standby)."""
    from control_plane.ips import provider_ips, service

    loaded = settings()

    async def add(db: Database) -> IpDetailOut:
        async with db.session() as session:
            found = await provider_ips.target(session, (await find_server(session, server)).id)
        async with _providers(found) as providers:
            added = await provider_ips.add_address(db, providers, loaded, found, address)
        async with db.session() as session:
            return await _detail(session, await service.get_live(session, added))

    _show(run_async(with_database(add)), as_json)


@ip_app.command("remove")
def ip_remove(server: Server, address: Address) -> None:
    """Release a standby or retired address (never the sending or main one)."""
    from control_plane.ips import provider_ips, service

    loaded = settings()

    async def remove(db: Database) -> None:
        async with db.session() as session:
            found = await provider_ips.target(session, (await find_server(session, server)).id)
            row = await service.get_live(session, address)
            if row.server_id != found.server_id:
                raise NotFound("IP address", address)
            provider_ips.check_removable(row)
        async with _providers(found) as providers:
            await provider_ips.remove_address(db, providers, loaded, found, row.address)

    run_async(with_database(remove))
    typer.echo(f"{address}: released")


@ip_app.command("warmup")
def ip_warmup(
    address: Address,
    plan: Annotated[
        str | None, typer.Option("--plan", help="standard, conservative, aggressive, custom.")
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help="First day, YYYY-MM-DD.")] = None,
    caps: Annotated[
        str | None, typer.Option("--caps", help="Custom plan: daily caps, comma-separated.")
    ] = None,
    today_cap: Annotated[int | None, typer.Option("--today-cap", help="Today only.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Start a warmup plan and/or set a cap for today only."""
    from control_plane.db.base import utcnow
    from control_plane.ips import operations
    from control_plane.ips.schemas import WarmupIn

    try:
        body = WarmupIn.model_validate(
            {
                "plan": plan,
                "start_date": date.fromisoformat(start) if start else None,
                "caps": json.loads(f"[{caps}]") if caps else None,
                "today_cap": today_cap,
            }
        )
    except ValidationError as exc:
        raise invalid(exc) from None
    except ValueError as exc:
        raise bad_input(f"--start/--caps: {exc}") from None
    actor = cli_actor()

    async def work(session: AsyncSession, ip: IpAddress) -> IpDetailOut:
        await operations.set_warmup(session, ip, body, actor, utcnow())
        return await _detail(session, ip)

    _show(_on_ip(address, work), as_json)


@ip_app.command("pause")
def ip_pause(
    address: Address,
    reason: Annotated[str, typer.Option("--reason", help="Why (shown with the address).")],
) -> None:
    """Hold new outbound SMTP from the address (mail waits in the queue)."""
    from control_plane.db.base import utcnow
    from control_plane.ips import service

    if not reason.strip():
        raise bad_input("--reason: say why")
    actor = cli_actor()

    async def work(session: AsyncSession, ip: IpAddress) -> bool:
        return await service.pause(session, ip, reason.strip(), actor, utcnow())

    changed = _on_ip(address, work)
    typer.echo(f"{address}: {'paused' if changed else 'already paused'}")


@ip_app.command("resume")
def ip_resume(address: Address) -> None:
    """Let the address send again."""
    from control_plane.db.base import utcnow
    from control_plane.ips import service

    actor = cli_actor()

    async def work(session: AsyncSession, ip: IpAddress) -> bool:
        return await service.resume(session, ip, actor, utcnow())

    changed = _on_ip(address, work)
    typer.echo(f"{address}: {'resumed' if changed else 'was not paused'}")


@ip_app.command("allowance")
def ip_allowance(address: Address, as_json: JsonOption = False) -> None:
    """Today's (UTC) cap, sent, remaining, whether sending is held, whether sent is measured."""
    from control_plane.db.base import utcnow
    from control_plane.ips import operations

    loaded = settings()

    async def work(session: AsyncSession, ip: IpAddress) -> AllowanceOut:
        return await operations.allowance(session, ip, utcnow(), loaded)

    found = _on_ip(address, work)
    if as_json:
        return print_json(found)
    fields = found.model_dump(mode="json") | {"reporting": found.reporting.state}
    print_table(("field", "value"), [(k, cell_text(v)) for k, v in fields.items()])
