"""Mail domains and mailboxes of a tenant (tenant keys see only their own)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.context import Ctx
from control_plane.commands import handlers
from control_plane.dns import service as dns
from control_plane.mail import aliases, dkim, service
from control_plane.mail.models import MailAlias, Mailbox, MailDomain
from control_plane.mail.schemas import (
    AliasCreate,
    AliasOut,
    AliasUpdate,
    CredentialsOut,
    DkimRecordOut,
    DomainCreate,
    DomainOut,
    DomainUpdate,
    MailboxCreate,
    MailboxOut,
    MailboxUpdate,
)
from control_plane.schemas import After, Limit, PageOut

router = APIRouter(prefix="/api/v1/domains", tags=["mail"])


async def domain_out(session: AsyncSession, domain: MailDomain) -> DomainOut:
    state, error = await service.change_state(session, domain.command_id)
    server = await service.server_of(session, domain)
    return DomainOut(
        id=domain.id,
        tenant_id=domain.tenant_id,
        server_id=domain.server_id,
        workspace_id=domain.workspace_id,
        name=domain.name,
        dkim_selector=server.dkim_selector or "",
        dkim_records=[
            DkimRecordOut(
                selector=key.selector,
                role=role,
                name=f"{key.selector}._domainkey.{domain.name}",
                value=dkim.dns_value(key.public_key),
            )
            for key, role in await dkim.published_keys(session, server, domain)
        ],
        state=state,
        error=error,
        created_at=domain.created_at,
    )


async def mailbox_out(session: AsyncSession, mailbox: Mailbox) -> MailboxOut:
    state, error = await service.change_state(session, mailbox.command_id)
    return MailboxOut(
        id=mailbox.id,
        tenant_id=mailbox.tenant_id,
        domain_id=mailbox.domain_id,
        address=mailbox.address,
        quota_bytes=mailbox.quota_bytes,
        displayed_name=mailbox.displayed_name,
        enabled=mailbox.enabled,
        state=state,
        error=error,
        credentials_taken=mailbox.credentials_taken_at is not None,
        created_at=mailbox.created_at,
        updated_at=mailbox.updated_at,
    )


async def alias_out(session: AsyncSession, alias: MailAlias) -> AliasOut:
    state, error = await service.change_state(session, alias.command_id)
    return AliasOut(
        id=alias.id,
        tenant_id=alias.tenant_id,
        domain_id=alias.domain_id,
        address=alias.address,
        destinations=aliases.destinations_of(alias),
        comment=alias.comment,
        state=state,
        error=error,
        created_at=alias.created_at,
        updated_at=alias.updated_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_domain(body: DomainCreate, ctx: Ctx) -> DomainOut:
    """Add a mail domain to a MailU server; the agent creates it in MailU (see ``state``)."""
    async with ctx.session() as session:
        out = await domain_out(session, await service.create_domain(session, ctx.vault, body))
    handlers.wake(body.server_id)
    return out


@router.get("")
async def list_domains(
    ctx: Ctx, server_id: uuid.UUID | None = None, after: After = None, limit: Limit = 100
) -> PageOut[DomainOut]:
    async with ctx.session() as session:
        page = await service.list_domains(session, server_id, after, limit)
        items = [await domain_out(session, d) for d in page.items]
    return PageOut(items=items, next_after=page.next_after)


@router.get("/{domain_id}")
async def get_domain(domain_id: uuid.UUID, ctx: Ctx) -> DomainOut:
    async with ctx.session() as session:
        return await domain_out(session, await service.get_domain(session, domain_id))


@router.patch("/{domain_id}")
async def update_domain(domain_id: uuid.UUID, body: DomainUpdate, ctx: Ctx) -> DomainOut:
    """Move the domain to another workspace of its tenant (its share of a shared server's
    cost goes with it)."""
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        await service.set_domain_workspace(session, domain, body.workspace_id)
        return await domain_out(session, domain)


@router.delete("/{domain_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_domain(domain_id: uuid.UUID, ctx: Ctx) -> None:
    """Remove the domain's records from its zone, the domain and its mailboxes from MailU,
    and their credentials from Vault."""
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        await dns.withdraw(session, ctx.vault, domain)  # its records leave the zone first
        await service.delete_domain(session, ctx.vault, domain)
    handlers.wake(domain.server_id)


@router.post("/{domain_id}/mailboxes", status_code=status.HTTP_201_CREATED)
async def create_mailbox(domain_id: uuid.UUID, body: MailboxCreate, ctx: Ctx) -> MailboxOut:
    """A mailbox; its password (generated unless given) is kept in Vault and can be taken
    once with ``POST …/credentials``."""
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        mailbox = await service.create_mailbox(session, ctx.vault, domain, body)
        out = await mailbox_out(session, mailbox)
    handlers.wake(domain.server_id)
    return out


@router.get("/{domain_id}/mailboxes")
async def list_mailboxes(
    domain_id: uuid.UUID, ctx: Ctx, after: After = None, limit: Limit = 100
) -> PageOut[MailboxOut]:
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        page = await service.list_mailboxes(session, domain, after, limit)
        items = [await mailbox_out(session, m) for m in page.items]
    return PageOut(items=items, next_after=page.next_after)


@router.get("/{domain_id}/mailboxes/{mailbox_id}")
async def get_mailbox(domain_id: uuid.UUID, mailbox_id: uuid.UUID, ctx: Ctx) -> MailboxOut:
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        return await mailbox_out(session, await service.get_mailbox(session, domain, mailbox_id))


@router.patch("/{domain_id}/mailboxes/{mailbox_id}")
async def update_mailbox(
    domain_id: uuid.UUID, mailbox_id: uuid.UUID, body: MailboxUpdate, ctx: Ctx
) -> MailboxOut:
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        mailbox = await service.get_mailbox(session, domain, mailbox_id)
        await service.update_mailbox(session, domain, mailbox, body)
        out = await mailbox_out(session, mailbox)
    handlers.wake(domain.server_id)
    return out


@router.delete("/{domain_id}/mailboxes/{mailbox_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_mailbox(domain_id: uuid.UUID, mailbox_id: uuid.UUID, ctx: Ctx) -> None:
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        mailbox = await service.get_mailbox(session, domain, mailbox_id)
        await service.delete_mailbox(session, ctx.vault, domain, mailbox)
    handlers.wake(domain.server_id)


@router.post("/{domain_id}/mailboxes/{mailbox_id}/credentials", status_code=201)
async def take_credentials(domain_id: uuid.UUID, mailbox_id: uuid.UUID, ctx: Ctx) -> CredentialsOut:
    """The mailbox's SMTP/IMAP login, once; afterwards 409 until it is rotated."""
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        mailbox = await service.get_mailbox(session, domain, mailbox_id)
        return await service.take_credentials(session, ctx.vault, domain, mailbox)


@router.post("/{domain_id}/mailboxes/{mailbox_id}/credentials/rotate")
async def rotate_credentials(domain_id: uuid.UUID, mailbox_id: uuid.UUID, ctx: Ctx) -> MailboxOut:
    """A new password, in Vault and in MailU; take it with ``POST …/credentials``."""
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        mailbox = await service.get_mailbox(session, domain, mailbox_id)
        await service.rotate_credentials(session, ctx.vault, domain, mailbox)
        out = await mailbox_out(session, mailbox)
    handlers.wake(domain.server_id)
    return out


@router.post("/{domain_id}/aliases", status_code=status.HTTP_201_CREATED)
async def create_alias(domain_id: uuid.UUID, body: AliasCreate, ctx: Ctx) -> AliasOut:
    """An alias delivering to mailboxes on the same server."""
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        out = await alias_out(session, await aliases.create_alias(session, domain, body))
    handlers.wake(domain.server_id)
    return out


@router.get("/{domain_id}/aliases")
async def list_aliases(
    domain_id: uuid.UUID, ctx: Ctx, after: After = None, limit: Limit = 100
) -> PageOut[AliasOut]:
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        page = await aliases.list_aliases(session, domain, after, limit)
        items = [await alias_out(session, a) for a in page.items]
    return PageOut(items=items, next_after=page.next_after)


@router.get("/{domain_id}/aliases/{alias_id}")
async def get_alias(domain_id: uuid.UUID, alias_id: uuid.UUID, ctx: Ctx) -> AliasOut:
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        return await alias_out(session, await aliases.get_alias(session, domain, alias_id))


@router.patch("/{domain_id}/aliases/{alias_id}")
async def update_alias(
    domain_id: uuid.UUID, alias_id: uuid.UUID, body: AliasUpdate, ctx: Ctx
) -> AliasOut:
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        alias = await aliases.get_alias(session, domain, alias_id)
        out = await alias_out(session, await aliases.update_alias(session, domain, alias, body))
    handlers.wake(domain.server_id)
    return out


@router.delete("/{domain_id}/aliases/{alias_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_alias(domain_id: uuid.UUID, alias_id: uuid.UUID, ctx: Ctx) -> None:
    async with ctx.session() as session:
        domain = await service.get_domain(session, domain_id)
        await aliases.delete_alias(
            session, domain, await aliases.get_alias(session, domain, alias_id)
        )
    handlers.wake(domain.server_id)
