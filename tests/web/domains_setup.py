"""What the domains pages' tests start from, made through MailFleet's own services on the
console's loop: a MailU server (the console server's ``server()`` makes ``mail_stack="none"``
ones, which take no domain), a workspace, and a domain with a mailbox and an alias."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select

from control_plane.audit.models import AuditEvent
from control_plane.mail import aliases, service
from control_plane.mail.models import MailAlias, Mailbox
from control_plane.mail.schemas import AliasCreate, DomainCreate, MailboxCreate
from control_plane.servers.schemas import ServerCreate
from control_plane.servers.service import create_server
from control_plane.vault.client import Vault
from control_plane.workspaces.schemas import WorkspaceCreate
from control_plane.workspaces.service import create_workspace
from tests.web.console import ConsoleServer


@dataclass(frozen=True)
class MailSetup:
    server_id: uuid.UUID
    domain_id: uuid.UUID
    name: str
    mailbox_id: uuid.UUID
    alias_id: uuid.UUID


def vault_of(console: ConsoleServer) -> Vault:
    return Vault(console.openbao.url, token=console.openbao.token, kv_mount="mailfleet")


def ensure_kv_mount(console: ConsoleServer) -> None:
    """Mail keeps DKIM keys and mailbox logins in Vault's KV mount (``mailfleet serve``
    makes it at start-up; the console server alone does not)."""
    console.run(vault_of(console).ensure_kv_mount())


def mail_server(console: ConsoleServer, tenant_id: uuid.UUID, name: str) -> uuid.UUID:
    async def make() -> uuid.UUID:
        data = ServerCreate(
            name=name, provider="manual", mail_stack="mailu", mail_hostname=f"mx.{name}.test"
        )
        async with console.db.tenant_session(tenant_id) as session:
            return (await create_server(session, tenant_id, data)).id

    return console.run(make())


def workspace(console: ConsoleServer, tenant_id: uuid.UUID, name: str) -> uuid.UUID:
    async def make() -> uuid.UUID:
        async with console.db.tenant_session(tenant_id) as session:
            return (await create_workspace(session, tenant_id, WorkspaceCreate(name=name))).id

    return console.run(make())


def domain_with_mail(console: ConsoleServer, tenant_id: uuid.UUID, label: str) -> MailSetup:
    """A MailU server with a domain, its mailbox ``box@`` and alias ``info@`` (to box)."""
    server_id = mail_server(console, tenant_id, label)
    name = f"{label}-{uuid.uuid4().hex[:6]}.example"

    async def make() -> MailSetup:
        vault = vault_of(console)
        async with console.db.tenant_session(tenant_id) as session:
            domain = await service.create_domain(
                session, vault, DomainCreate(name=name, server_id=server_id)
            )
            mailbox = await service.create_mailbox(
                session, vault, domain, MailboxCreate(local_part="box")
            )
            alias = await aliases.create_alias(
                session, domain, AliasCreate(local_part="info", destinations=[mailbox.address])
            )
            return MailSetup(server_id, domain.id, name, mailbox.id, alias.id)

    return console.run(make())


def mailbox_password(console: ConsoleServer, tenant_id: uuid.UUID, address: str) -> str:
    """The password Vault holds for the mailbox at ``address``."""

    async def read() -> str:
        async with console.db.tenant_session(tenant_id) as session:
            mailbox = await session.scalar(select(Mailbox).where(Mailbox.address == address))
            assert mailbox is not None
        stored = await vault_of(console).get(service.credentials_path(mailbox))
        assert stored is not None
        return str(stored["password"])

    return console.run(read())


def audit_actions(console: ConsoleServer, tenant_id: uuid.UUID) -> list[str]:
    """The tenant's recorded actions, oldest first, as ``action status``."""

    async def read() -> list[str]:
        async with console.db.tenant_session(tenant_id) as session:
            rows = await session.scalars(
                select(AuditEvent).where(AuditEvent.tenant_id == tenant_id).order_by(AuditEvent.id)
            )
            return [f"{e.action} {e.status}" for e in rows]

    return console.run(read())


def addresses(console: ConsoleServer, tenant_id: uuid.UUID) -> list[str]:
    """The tenant's mailboxes and aliases, sorted."""

    async def read() -> list[str]:
        async with console.db.tenant_session(tenant_id) as session:
            boxes = await session.scalars(select(Mailbox.address))
            more = await session.scalars(select(MailAlias.address))
            return sorted([*boxes, *more])

    return console.run(read())


def more_mailboxes(
    console: ConsoleServer, tenant_id: uuid.UUID, domain_id: uuid.UUID, n: int
) -> None:
    """``n`` more mailboxes on the domain, ``m00@`` … (one transaction)."""

    async def make() -> None:
        vault = vault_of(console)
        async with console.db.tenant_session(tenant_id) as session:
            domain = await service.get_domain(session, domain_id)
            for i in range(n):
                data = MailboxCreate(local_part=f"m{i:02}")
                await service.create_mailbox(session, vault, domain, data)

    console.run(make(), timeout=60)
