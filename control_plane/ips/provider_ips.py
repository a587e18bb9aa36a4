"""Addresses through the VPS provider: adding and removing one, and learning a server's
addresses (when provisioning gets there, and for servers made before the inventory).

Provider calls are slow network calls: they run between transactions, never inside one, and
the inventory is synced from the provider's own list afterwards (its word is the truth).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.db.lookup import get_by_id
from control_plane.errors import Conflict, InvalidInput, MailFleetError, Unavailable
from control_plane.ips import service
from control_plane.ips.models import IpAddress
from control_plane.provisioning.providers.base import Provider, ProviderError, ProviderNotFound
from control_plane.provisioning.registry import OWNED_BY_CUSTOMER, ProviderRegistry
from control_plane.servers.models import Server
from control_plane.settings import Settings

log = logging.getLogger(__name__)

RECONCILE_BATCH = 50  # ready servers without rows given theirs per round of the job


@dataclass(frozen=True)
class Target:
    """What a provider call needs, read in a transaction and used after it (``instance_id``
    None: a manual server, whose owner manages its addresses at their own provider)."""

    server_id: uuid.UUID
    provider: str
    instance_id: str | None


async def target(session: AsyncSession, server_id: uuid.UUID) -> Target:
    """The server (404 if the session may not see it) as a provider call needs it; 409
    while a provider's server is not ready."""
    server = await get_by_id(session, Server, server_id, "server")
    if server.provider in OWNED_BY_CUSTOMER:
        return Target(server.id, server.provider, None)
    if server.state != "ready" or not server.instance_id:
        raise Conflict(f"the server is {server.state}, not ready", field="server_id")
    return Target(server.id, server.provider, server.instance_id)


async def driver(
    providers: ProviderRegistry | None, settings: Settings, name: str, adding: bool = False
) -> Provider:
    """The server's provider (None: the caller has none, e.g. a CLI without Vault for a
    manual server); Hostwinds' ``add_ip`` is unverified, so adding needs the setting."""
    if providers is None:
        raise Unavailable("no provider access here", field="server_id")
    if adding and name == "hostwinds" and not settings.hostwinds_unverified_actions:
        raise Conflict(
            "adding an address through Hostwinds uses an API action no public source confirms; "
            "an admin can allow it with MAILFLEET_HOSTWINDS_UNVERIFIED_ACTIONS=1",
            field="server_id",
        )
    return (await providers.get(name, field="server_id")).provider


async def sync_from_provider(
    db: Database, provider: Provider, found: Target, now: datetime
) -> list[IpAddress]:
    """Read the instance's addresses and sync the rows (a system session: an address the
    provider moved from another tenant's server ends that row too)."""
    assert found.instance_id is not None
    addresses = await provider.list_ips(found.instance_id)
    return await db.transact(lambda session: _sync(session, found, addresses, now))


async def _sync(
    session: AsyncSession, found: Target, addresses: Sequence[str], now: datetime
) -> list[IpAddress]:
    server = await get_by_id(session, Server, found.server_id, "server")
    live = await service.sync_server(session, server, main_first(server, addresses), now)
    await service.push_limits(session, server, now)
    return live


def main_first(server: Server, addresses: Sequence[str]) -> list[str]:
    """The provider's list with the server's recorded main address first."""
    ordered = list(addresses)
    if server.ipv4 and server.ipv4 in ordered:
        ordered.remove(server.ipv4)
        ordered.insert(0, server.ipv4)
    return ordered


async def add_address(
    db: Database,
    providers: ProviderRegistry | None,
    settings: Settings,
    found: Target,
    address: str | None,
) -> str:
    """Have the provider attach one more address, then sync; returns the new address.

    A manual server's owner adds the address at their own provider and registers it here
    (``address``); an address live on another server is refused (409), never taken over.
    """
    if found.instance_id is None:
        if address is None:
            raise InvalidInput(
                "a manual server's address is added by its owner: name it", field="body.address"
            )
        canonical = service.canonical(address, field="body.address")
        if ":" in canonical:  # the inventory keeps IPv4 rows only (see sync_server)
            raise InvalidInput("an IPv4 address, not IPv6", field="body.address")
        return await _register(db, found, canonical)
    if address is not None:
        raise InvalidInput("the provider picks the new address", field="body.address")
    provider = await driver(providers, settings, found.provider, adding=True)
    added = await provider.add_ip(found.instance_id)
    await sync_from_provider(db, provider, found, utcnow())
    return added


async def _register(db: Database, found: Target, address: str) -> str:
    async def register(session: AsyncSession) -> str:
        taken = await session.scalar(
            select(IpAddress).where(IpAddress.address == address, IpAddress.released_at.is_(None))
        )
        if taken is not None:
            raise Conflict(f"{address} is already an address of a server", field="body.address")
        live = [ip.address for ip in await service.live_ips(session, found.server_id)]
        await _sync(session, found, [*live, address], utcnow())
        return address

    return await db.transact(register)


def check_removable(ip: IpAddress) -> None:
    if ip.role == "sending":
        raise Conflict(
            f"{ip.address} is the server's sending address: switch to another first",
            field="ip",
        )
    if ip.is_main:
        raise Conflict(f"{ip.address} is the server's main address", field="ip")


async def remove_address(
    db: Database,
    providers: ProviderRegistry | None,
    settings: Settings,
    found: Target,
    address: str,
) -> None:
    """Have the provider release a secondary address, then sync (the row ends); a manual
    server's row just ends (its owner removes the address at their provider)."""
    if found.instance_id is None:

        async def forget(session: AsyncSession) -> None:
            live = [ip.address for ip in await service.live_ips(session, found.server_id)]
            await _sync(session, found, [a for a in live if a != address], utcnow())

        await db.transact(forget)
        return
    provider = await driver(providers, settings, found.provider)
    with contextlib.suppress(ProviderNotFound):  # already gone: the sync ends the row
        await provider.remove_ip(found.instance_id, address)
    await sync_from_provider(db, provider, found, utcnow())


async def learn_at_provisioning(db: Database, providers: ProviderRegistry, server: Server) -> None:
    """The provisioning workflow knows the server's address: give it its rows. The
    provider's list when it can give it, else the recorded address (the reconcile job reads
    the provider again later if needed)."""
    addresses: Sequence[str] = (server.ipv4,) if server.ipv4 else ()
    if server.provider not in OWNED_BY_CUSTOMER and server.instance_id:
        try:
            provider = (await providers.get(server.provider, field="provider")).provider
            addresses = await provider.list_ips(server.instance_id) or addresses
        except ProviderError as exc:
            log.warning("listing the addresses of server %s: %s", server.id, exc.message)
    if not addresses:
        return

    async def sync(session: AsyncSession) -> None:
        row = await session.get(Server, server.id)
        if row is not None:
            await service.sync_server(session, row, main_first(row, addresses), utcnow())

    try:
        await db.transact(sync)
    except MailFleetError as exc:  # never stops provisioning: the ip-inventory job retries
        log.warning("recording the addresses of server %s: %s", server.id, exc.detail)


async def record_ptr(db: Database, server_id: uuid.UUID, address: str, host: str) -> None:
    """The provider took the PTR of ``address``: the inventory shows it."""

    async def record(session: AsyncSession) -> None:
        ip = await session.scalar(
            select(IpAddress).where(
                IpAddress.server_id == server_id,
                IpAddress.address == address,
                IpAddress.released_at.is_(None),
            )
        )
        if ip is not None:
            await service.set_ptr(session, ip, host, service.CONTROL_PLANE, utcnow())

    await db.transact(record)


async def adopt_unlisted(session: AsyncSession) -> int:
    """The ``ip-inventory`` job: ready servers with an address but no live rows (made before
    the inventory, or whose provisioning sync failed) get rows from their recorded address,
    at most ``RECONCILE_BATCH`` a round (a provider's further addresses come with the next
    add, remove or provisioning sync)."""
    has_rows = exists().where(IpAddress.server_id == Server.id, IpAddress.released_at.is_(None))
    # An address live on another server's row stays there (two rows claiming one address,
    # e.g. a manual server's mistaken record, must not take it from each other by turns).
    taken = exists().where(IpAddress.address == Server.ipv4, IpAddress.released_at.is_(None))
    servers = await session.scalars(
        select(Server)
        .where(Server.state == "ready", Server.ipv4.is_not(None), ~has_rows, ~taken)
        .order_by(Server.id)
        .limit(RECONCILE_BATCH)
        .with_for_update(skip_locked=True)
    )
    now = utcnow()
    count = 0
    for server in servers:
        if server.ipv4:
            await service.sync_server(session, server, [server.ipv4], now)
            count += 1
    return count
