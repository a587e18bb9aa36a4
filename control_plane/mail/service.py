"""Domains and mailboxes: rows here, MailU changed through agent commands, credentials in Vault.

Each change queues a system command to the server's agent (``mailu.domain.*``,
``mailu.mailbox.*``) and records its id on the row; the row's state is read from that
command (pending until the agent reports, then active or failed with the agent's reason).
A mailbox's SMTP/IMAP credentials live only in Vault at ``smtp/<tenant>/<mailbox id>``;
the command carries a reference that the gateway resolves at delivery.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.db.writes import flush_unique
from control_plane.errors import Conflict, NotFound
from control_plane.mail import dkim
from control_plane.mail.models import MailAlias, Mailbox, MailDomain
from control_plane.mail.names import idna_name
from control_plane.mail.schemas import (
    ChangeState,
    CredentialsOut,
    DomainCreate,
    MailboxCreate,
    MailboxUpdate,
)
from control_plane.servers.models import Server
from control_plane.vault.client import Vault, secret_path
from control_plane.workspaces.models import Workspace

COMMAND_SECONDS = 120.0
PENDING = ("queued", "sent", "running")


def credentials_path(mailbox: Mailbox) -> str:
    return secret_path("smtp", mailbox.tenant_id, mailbox.id)


async def change_state(
    session: AsyncSession, command_id: uuid.UUID | None
) -> tuple[ChangeState, str | None]:
    """Where the latest change to MailU stands, from its command."""
    command = await session.get(Command, command_id) if command_id else None
    if command is None or command.state in PENDING:
        return "pending", None
    if command.state == "succeeded":
        return "active", None
    return "failed", command.error or command.state


async def server_of(session: AsyncSession, domain: MailDomain) -> Server:
    return await get_by_id(session, Server, domain.server_id, "server")


async def create_domain(session: AsyncSession, vault: Vault, data: DomainCreate) -> MailDomain:
    """The domain, its DKIM key (private half to Vault only), and the command adding both
    to MailU."""
    name = idna_name(data.name, "body.name")
    server = await get_by_id(session, Server, data.server_id, "server", field="body.server_id")
    if server.mail_stack != "mailu":
        raise Conflict(f"server {server.id} runs no mail stack", field="body.server_id")
    workspace_id = server.workspace_id
    if data.workspace_id is not None:
        workspace_id = await workspace_of(session, server.tenant_id, data.workspace_id)
    server.dkim_selector = server.dkim_selector or dkim.default_selector(utcnow())
    domain = MailDomain(
        tenant_id=server.tenant_id, server_id=server.id, workspace_id=workspace_id, name=name
    )
    session.add(domain)
    await flush_unique(session, "body.name", f"the domain {name} is already managed")
    for selector in dkim.live_selectors(server):
        await dkim.add_key(session, vault, server, domain, selector)
    await session.flush()
    return domain


async def workspace_of(
    session: AsyncSession, tenant_id: uuid.UUID, workspace_id: uuid.UUID
) -> uuid.UUID:
    """``workspace_id`` when it is a workspace of ``tenant_id`` (else 404 naming it)."""
    found = await session.scalar(
        select(Workspace.id).where(Workspace.id == workspace_id, Workspace.tenant_id == tenant_id)
    )
    if found is None:
        raise NotFound("workspace", workspace_id, field="body.workspace_id")
    return found


async def set_domain_workspace(
    session: AsyncSession, domain: MailDomain, workspace_id: uuid.UUID | None
) -> MailDomain:
    """Move the domain to another workspace of its tenant (or to none)."""
    if workspace_id is not None:
        workspace_id = await workspace_of(session, domain.tenant_id, workspace_id)
    domain.workspace_id = workspace_id
    await session.flush()
    return domain


async def domain_owned_by(session: AsyncSession, name: str, tenant_id: uuid.UUID) -> bool:
    owner = await session.scalar(select(MailDomain.tenant_id).where(MailDomain.name == name))
    return owner == tenant_id


handlers.register_domain_owner(domain_owned_by)  # commands may carry the domain's DKIM key


async def get_domain(session: AsyncSession, domain_id: uuid.UUID) -> MailDomain:
    return await get_by_id(session, MailDomain, domain_id, "domain")


async def list_domains(
    session: AsyncSession,
    server_id: uuid.UUID | None,
    after: uuid.UUID | None,
    limit: int,
    tenant_id: uuid.UUID | None = None,
) -> Page[MailDomain]:
    """One page of domains (RLS limits a tenant key to its own); ``tenant_id`` narrows an
    admin's view to one tenant (the console's chosen tenant)."""
    stmt = select(MailDomain)
    if server_id is not None:
        stmt = stmt.where(MailDomain.server_id == server_id)
    if tenant_id is not None:
        stmt = stmt.where(MailDomain.tenant_id == tenant_id)
    return await paginate(session, stmt, MailDomain.id, after, limit)


async def delete_domain(session: AsyncSession, vault: Vault, domain: MailDomain) -> None:
    """Remove the domain (and its mailboxes) from MailU and from MailFleet, with their
    credentials."""
    server = await server_of(session, domain)
    mailboxes = (await session.scalars(select(Mailbox).where(Mailbox.domain_id == domain.id))).all()
    await commands.queue_system_command(
        session, server, "mailu.domain.delete", {"domain": domain.name}, COMMAND_SECONDS
    )
    for mailbox in mailboxes:
        await vault.delete(credentials_path(mailbox))
    for selector in await vault.list(secret_path("dkim", domain.name)):
        await vault.delete(dkim.key_path(domain.name, selector.rstrip("/")))
    await session.delete(domain)
    await session.flush()


async def create_mailbox(
    session: AsyncSession, vault: Vault, domain: MailDomain, data: MailboxCreate
) -> Mailbox:
    mailbox = Mailbox(
        tenant_id=domain.tenant_id,
        domain_id=domain.id,
        address=f"{data.local_part.lower()}@{domain.name}",
        quota_bytes=data.quota_bytes,
        enabled=data.enabled,
        displayed_name=data.displayed_name,
    )
    session.add(mailbox)
    await flush_unique(session, "body.local_part", f"the mailbox {mailbox.address} exists")
    password = data.password or secrets.token_urlsafe(18)
    await vault.put(credentials_path(mailbox), {"username": mailbox.address, "password": password})
    await _ensure_in_mailu(session, domain, mailbox)
    return mailbox


async def update_mailbox(
    session: AsyncSession, domain: MailDomain, mailbox: Mailbox, data: MailboxUpdate
) -> Mailbox:
    for name, value in data.model_dump(exclude_none=True).items():
        setattr(mailbox, name, value)
    await _ensure_in_mailu(session, domain, mailbox)
    return mailbox


async def rotate_credentials(
    session: AsyncSession, vault: Vault, domain: MailDomain, mailbox: Mailbox
) -> Mailbox:
    """A new password in Vault (a new version) and in MailU; it can be taken once again."""
    password = secrets.token_urlsafe(18)
    await vault.put(credentials_path(mailbox), {"username": mailbox.address, "password": password})
    mailbox.credentials_taken_at = None
    await _ensure_in_mailu(session, domain, mailbox)
    return mailbox


async def take_credentials(
    session: AsyncSession, vault: Vault, domain: MailDomain, mailbox: Mailbox
) -> CredentialsOut:
    """The mailbox's login and where to use it, once."""
    if mailbox.credentials_taken_at is not None:
        raise Conflict(
            f"the credentials of {mailbox.address} were already taken; rotate them for new ones"
        )
    stored = await vault.get(credentials_path(mailbox))
    if stored is None:
        raise NotFound("credentials of mailbox", mailbox.id)
    mailbox.credentials_taken_at = utcnow()
    await session.flush()
    server = await server_of(session, domain)
    return CredentialsOut(
        username=stored["username"], password=stored["password"], smtp_host=server.mail_hostname
    )


async def delete_mailbox(
    session: AsyncSession, vault: Vault, domain: MailDomain, mailbox: Mailbox
) -> None:
    """Refused while an alias delivers to it: Mailu would keep forwarding into nothing."""
    server = await server_of(session, domain)
    pointing = [
        alias.address
        for alias in (
            await session.scalars(
                select(MailAlias)
                .join(MailDomain, MailDomain.id == MailAlias.domain_id)
                .where(MailDomain.server_id == server.id)
            )
        ).all()
        if mailbox.address in alias.destinations.splitlines()
    ]
    if pointing:
        raise Conflict(
            f"the aliases {', '.join(sorted(pointing))} deliver to {mailbox.address}; "
            "change or delete them first"
        )
    await commands.queue_system_command(
        session, server, "mailu.mailbox.delete", {"email": mailbox.address}, COMMAND_SECONDS
    )
    await vault.delete(credentials_path(mailbox))
    await session.delete(mailbox)
    await session.flush()


async def get_mailbox(session: AsyncSession, domain: MailDomain, mailbox_id: uuid.UUID) -> Mailbox:
    mailbox = await session.scalar(
        select(Mailbox).where(Mailbox.id == mailbox_id, Mailbox.domain_id == domain.id)
    )
    if mailbox is None:
        raise NotFound("mailbox", mailbox_id)
    return mailbox


async def list_mailboxes(
    session: AsyncSession, domain: MailDomain, after: uuid.UUID | None, limit: int
) -> Page[Mailbox]:
    stmt = select(Mailbox).where(Mailbox.domain_id == domain.id)
    return await paginate(session, stmt, Mailbox.id, after, limit)


async def _ensure_in_mailu(session: AsyncSession, domain: MailDomain, mailbox: Mailbox) -> None:
    server = await server_of(session, domain)
    payload: dict[str, Any] = {
        "email": mailbox.address,
        "quota_bytes": mailbox.quota_bytes,
        "enabled": mailbox.enabled,
        "displayed_name": mailbox.displayed_name,
        "secrets_from": {
            "path": credentials_path(mailbox),
            "fields": {"password": "raw_password"},
        },
    }
    command = await commands.queue_system_command(
        session, server, "mailu.mailbox.ensure", payload, COMMAND_SECONDS
    )
    mailbox.command_id = command.id
    await session.flush()
