"""Aliases: addresses that deliver to mailboxes of the same server.

Mailu's API refuses an alias whose destination is not one of its users (404), so the
destinations are checked here first, against the mailboxes MailFleet manages on that server,
and a bad one is named in the 422 instead of failing later on the VPS.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import service as commands
from control_plane.db.pagination import Page, paginate
from control_plane.db.writes import flush_unique
from control_plane.errors import InvalidInput, NotFound
from control_plane.mail.models import MailAlias, Mailbox, MailDomain
from control_plane.mail.names import idna_address
from control_plane.mail.schemas import AliasCreate, AliasUpdate
from control_plane.mail.service import COMMAND_SECONDS, server_of


def destinations_of(alias: MailAlias) -> list[str]:
    return alias.destinations.splitlines()


async def _checked_destinations(
    session: AsyncSession, domain: MailDomain, wanted: list[str], field: str
) -> list[str]:
    addresses = [idna_address(a, f"{field}[{i}]") for i, a in enumerate(wanted)]
    local = set(
        (
            await session.scalars(
                select(Mailbox.address)
                .join(MailDomain, MailDomain.id == Mailbox.domain_id)
                .where(MailDomain.server_id == domain.server_id, Mailbox.address.in_(addresses))
            )
        ).all()
    )
    for i, address in enumerate(addresses):
        if address not in local:
            raise InvalidInput(
                f"{address} is not a mailbox on this domain's server; Mailu delivers aliases "
                "only to its own mailboxes",
                field=f"{field}[{i}]",
            )
    return list(dict.fromkeys(addresses))


async def create_alias(session: AsyncSession, domain: MailDomain, data: AliasCreate) -> MailAlias:
    destinations = await _checked_destinations(
        session, domain, data.destinations, "body.destinations"
    )
    alias = MailAlias(
        tenant_id=domain.tenant_id,
        domain_id=domain.id,
        address=f"{data.local_part.lower()}@{domain.name}",
        destinations="\n".join(destinations),
        comment=data.comment,
    )
    session.add(alias)
    await flush_unique(session, "body.local_part", f"the alias {alias.address} exists")
    clash = await session.scalar(select(Mailbox.id).where(Mailbox.address == alias.address))
    if clash is not None:
        raise InvalidInput(f"{alias.address} is a mailbox", field="body.local_part")
    await _ensure_in_mailu(session, domain, alias)
    return alias


async def update_alias(
    session: AsyncSession, domain: MailDomain, alias: MailAlias, data: AliasUpdate
) -> MailAlias:
    if data.destinations is not None:
        checked = await _checked_destinations(
            session, domain, data.destinations, "body.destinations"
        )
        alias.destinations = "\n".join(checked)
    if data.comment is not None:
        alias.comment = data.comment
    await _ensure_in_mailu(session, domain, alias)
    return alias


async def delete_alias(session: AsyncSession, domain: MailDomain, alias: MailAlias) -> None:
    server = await server_of(session, domain)
    await commands.queue_system_command(
        session, server, "mailu.alias.delete", {"email": alias.address}, COMMAND_SECONDS
    )
    await session.delete(alias)
    await session.flush()


async def get_alias(session: AsyncSession, domain: MailDomain, alias_id: uuid.UUID) -> MailAlias:
    alias = await session.scalar(
        select(MailAlias).where(MailAlias.id == alias_id, MailAlias.domain_id == domain.id)
    )
    if alias is None:
        raise NotFound("alias", alias_id)
    return alias


async def list_aliases(
    session: AsyncSession, domain: MailDomain, after: uuid.UUID | None, limit: int
) -> Page[MailAlias]:
    stmt = select(MailAlias).where(MailAlias.domain_id == domain.id)
    return await paginate(session, stmt, MailAlias.id, after, limit)


async def _ensure_in_mailu(session: AsyncSession, domain: MailDomain, alias: MailAlias) -> None:
    server = await server_of(session, domain)
    payload = {
        "email": alias.address,
        "destination": destinations_of(alias),
        "comment": alias.comment,
    }
    command = await commands.queue_system_command(
        session, server, "mailu.alias.ensure", payload, COMMAND_SECONDS
    )
    alias.command_id = command.id
    await session.flush()
