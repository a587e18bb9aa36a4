"""DNS providers, each mail domain's DNS settings, and publishing its records.

A provider's secret (TSIG key, API token, access keys) is in Vault at
``dns/<tenant>/<provider>``. Publishing runs octoDNS in a thread with the domain's
``domain_dns`` row locked, so two applies of one domain never interleave; what MailFleet
published is stored with the row (value-level ownership, see ``publish.py``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import service as commands
from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.db.writes import flush_unique
from control_plane.dns import checker, desired, publish
from control_plane.dns.models import DnsProvider, DomainDns
from control_plane.dns.record import Record
from control_plane.dns.schemas import DomainDnsIn, ProviderCreate
from control_plane.errors import Conflict, InvalidInput, NotFound
from control_plane.ips import service as ips
from control_plane.mail import dkim
from control_plane.mail.models import MailDomain
from control_plane.mail.names import idna_name
from control_plane.servers.models import Server
from control_plane.vault.client import Vault, secret_path


def _secret_path(provider: DnsProvider) -> str:
    return secret_path("dns", provider.tenant_id, provider.id)


async def create_provider(
    session: AsyncSession, vault: Vault, tenant_id: uuid.UUID, data: ProviderCreate
) -> DnsProvider:
    provider = DnsProvider(
        tenant_id=tenant_id, name=data.name, kind=data.kind, settings=json.dumps(data.settings)
    )
    session.add(provider)
    await flush_unique(session, "body.name", f"a DNS provider named {data.name} exists")
    await vault.put(_secret_path(provider), dict(data.secret))
    return provider


async def get_provider(session: AsyncSession, provider_id: uuid.UUID) -> DnsProvider:
    return await get_by_id(session, DnsProvider, provider_id, "DNS provider")


async def list_providers(
    session: AsyncSession, after: uuid.UUID | None, limit: int
) -> Page[DnsProvider]:
    return await paginate(session, select(DnsProvider), DnsProvider.id, after, limit)


async def delete_provider(session: AsyncSession, vault: Vault, provider: DnsProvider) -> None:
    """Refused while a domain publishes through it (its records would be orphaned)."""
    users = await session.scalar(
        select(func.count()).select_from(DomainDns).where(DomainDns.provider_id == provider.id)
    )
    if users:
        raise Conflict(f"{users} domain(s) still publish through {provider.name}")
    await session.delete(provider)
    await session.flush()
    await vault.delete(_secret_path(provider))


async def settings_of(session: AsyncSession, domain: MailDomain) -> DomainDns:
    found = await session.scalar(select(DomainDns).where(DomainDns.domain_id == domain.id))
    if found is None:
        raise NotFound("DNS settings of domain", domain.id)
    return found


async def put_settings(
    session: AsyncSession, domain: MailDomain, data: DomainDnsIn, acme_ca: str
) -> DomainDns:
    await get_by_id(
        session, DnsProvider, data.provider_id, "DNS provider", field="body.provider_id"
    )
    zone = idna_name(data.zone or domain.name, "body.zone")
    if domain.name != zone and not domain.name.endswith("." + zone):
        raise InvalidInput(f"{domain.name} is not inside the zone {zone}", field="body.zone")
    row = await session.scalar(select(DomainDns).where(DomainDns.domain_id == domain.id))
    if row is None:
        row = DomainDns(tenant_id=domain.tenant_id, domain_id=domain.id, published="[]")
        session.add(row)
    if row.dmarc_policy != data.dmarc_policy or row.dmarc_policy_since is None:
        row.dmarc_policy_since = utcnow()
    row.provider_id, row.zone, row.dmarc_policy = data.provider_id, zone, data.dmarc_policy
    row.dmarc_step_days = data.dmarc_step_days
    row.dmarc_rua = "\n".join(data.dmarc_rua)
    row.tls_rpt_rua = "\n".join(data.tls_rpt_rua)
    row.spf_includes = "\n".join(data.spf_includes)
    row.caa_issuers = "\n".join(data.caa_issuers if data.caa_issuers is not None else [acme_ca])
    row.mta_sts_mode = data.mta_sts_mode
    await desired_records(session, domain, row)  # refuse settings that make bad records
    await session.flush()
    return row


def mta_sts_policy(server: Server, row: DomainDns) -> str | None:
    """The domain's MTA-STS policy text, or None when MTA-STS is off."""
    if row.mta_sts_mode == "none" or not server.mail_hostname:
        return None
    return desired.mta_sts_policy(row.mta_sts_mode, [server.mail_hostname])  # type: ignore[arg-type]


async def mta_sts_policies(session: AsyncSession, server: Server) -> dict[str, str]:
    """Every MTA-STS policy the server's front must serve, by ``mta-sts.<domain>`` host."""
    rows = (
        await session.execute(
            select(MailDomain.name, DomainDns)
            .join(DomainDns, DomainDns.domain_id == MailDomain.id)
            .where(MailDomain.server_id == server.id)
        )
    ).all()
    found = {f"mta-sts.{name}": mta_sts_policy(server, row) for name, row in rows}
    return {host: policy for host, policy in found.items() if policy}


async def desired_records(
    session: AsyncSession, domain: MailDomain, row: DomainDns
) -> list[Record]:
    """The domain's records, computed from its server, its DKIM keys and its settings."""
    server = await get_by_id(session, Server, domain.server_id, "server")
    addresses = await ips.published_addresses(session, server)  # sending first
    if not server.mail_hostname or not addresses:
        raise Conflict(f"server {server.id} has no mail host name or address yet")
    keys = await dkim.published_keys(session, server, domain)
    policy = mta_sts_policy(server, row)
    try:
        facts = desired.DomainFacts(
            domain=domain.name,
            mail_host=server.mail_hostname,
            ipv4=addresses,
            dkim=tuple((key.selector, key.public_key) for key, _ in keys),
            dmarc_policy=row.dmarc_policy,  # type: ignore[arg-type]
            dmarc_rua=tuple(row.dmarc_rua.splitlines()),
            tls_rpt_rua=tuple(row.tls_rpt_rua.splitlines()),
            spf_includes=tuple(row.spf_includes.splitlines()),
            caa_issuers=tuple(row.caa_issuers.splitlines()),
            mta_sts_id=desired.mta_sts_policy_id(policy) if policy else None,
        )
        return desired.desired_records(facts)
    except desired.InvalidDnsInput as exc:
        raise InvalidInput(exc.reason, field=f"body.{exc.field}") from None


async def provider_target(session: AsyncSession, vault: Vault, row: DomainDns) -> Any:
    provider = await get_by_id(session, DnsProvider, row.provider_id, "DNS provider")
    secret = await vault.get(_secret_path(provider)) or {}
    return publish.provider(str(provider.id), provider.kind, json.loads(provider.settings), secret)


def _owned(row: DomainDns) -> publish.Owned:
    return {(n, t): tuple(v) for n, t, v in json.loads(row.published or "[]")}


async def apply(
    session: AsyncSession, vault: Vault, domain: MailDomain, *, dry_run: bool = False
) -> tuple[str, list[publish.Change]]:
    """Plan the domain's records against its provider and (unless ``dry_run``) apply."""
    row = await session.scalar(
        select(DomainDns).where(DomainDns.domain_id == domain.id).with_for_update()
    )
    if row is None:
        raise NotFound("DNS settings of domain", domain.id)
    records = await desired_records(session, domain, row)
    changes = await _publish(session, vault, row, records, dry_run)
    if not dry_run:
        await deliver_mta_sts(session, await get_by_id(session, Server, domain.server_id, "server"))
    return row.zone, changes


async def deliver_mta_sts(session: AsyncSession, server: Server) -> None:
    """The MTA-STS policies MailU's front serves (``mailu.mta_sts.set``; idempotent)."""
    if server.mail_stack != "mailu":
        return
    policies = await mta_sts_policies(session, server)
    await commands.queue_system_command(
        session, server, "mailu.mta_sts.set", {"policies": policies}, 300.0
    )


async def withdraw(session: AsyncSession, vault: Vault, domain: MailDomain) -> None:
    """Take MailFleet's values out of the domain's zone (the domain is leaving)."""
    row = await session.scalar(
        select(DomainDns).where(DomainDns.domain_id == domain.id).with_for_update()
    )
    if row is not None:
        await _publish(session, vault, row, [], dry_run=False)


async def _publish(
    session: AsyncSession, vault: Vault, row: DomainDns, records: list[Record], dry_run: bool
) -> list[publish.Change]:
    target = await provider_target(session, vault, row)
    planned, changes, owned = await asyncio.to_thread(
        publish.plan, target, row.zone, records, _owned(row)
    )
    if not dry_run:
        await asyncio.to_thread(publish.apply, target, row.zone, planned)
        row.published = json.dumps([[n, t, list(v)] for (n, t), v in sorted(owned.items())])
        await session.flush()
    return changes


async def compare(
    session: AsyncSession, vault: Vault, domain: MailDomain
) -> tuple[DomainDns, list[tuple[Record, str, tuple[str, ...] | None]]]:
    """Each desired record with what the provider serves: published, missing or different
    (MailFleet's values must all be in the served set)."""
    row = await settings_of(session, domain)
    records = await desired_records(session, domain, row)
    served = await asyncio.to_thread(
        publish.published, await provider_target(session, vault, row), row.zone
    )
    by_key = {r.key: r for r in served}
    out: list[tuple[Record, str, tuple[str, ...] | None]] = []
    for record in records:
        there = by_key.get(record.key)
        if there is None:
            out.append((record, "missing", None))
            continue
        have = {checker.normalise_value(record.type, v) for v in there.values}
        want = {checker.normalise_value(record.type, v) for v in record.values}
        out.append((record, "published" if want <= have else "different", there.values))
    return row, out


async def published_domains(session: AsyncSession, server_id: uuid.UUID) -> list[uuid.UUID]:
    """The server's domains that publish through a DNS provider."""
    stmt = (
        select(MailDomain.id)
        .join(DomainDns, DomainDns.domain_id == MailDomain.id)
        .where(MailDomain.server_id == server_id)
    )
    return list((await session.scalars(stmt)).all())


def dmarc_progression_job(vault: Vault) -> Callable[[AsyncSession], Awaitable[int]]:
    """A periodic job: domains whose DMARC policy has been in place for its ``step_days``
    move one step (none → quarantine → reject) and are published again."""

    async def run(session: AsyncSession) -> int:
        now = utcnow()
        rows = (
            await session.scalars(
                select(DomainDns)
                .where(DomainDns.dmarc_step_days > 0, DomainDns.dmarc_policy != "reject")
                .with_for_update(skip_locked=True)
            )
        ).all()
        moved = 0
        for row in rows:
            since = row.dmarc_policy_since or now
            days = (now - since).total_seconds() / 86400
            # Failure rates would come from aggregate (rua) reports; until MailFleet reads
            # them, the policy steps on time alone.
            step = desired.next_dmarc_policy(
                row.dmarc_policy,  # type: ignore[arg-type]
                days,
                0.0,
                days_per_step=row.dmarc_step_days,
            )
            if step == row.dmarc_policy:
                continue
            row.dmarc_policy, row.dmarc_policy_since = step, now
            domain = await session.get(MailDomain, row.domain_id)
            if domain is not None:
                await apply(session, vault, domain)
            moved += 1
        return moved

    return run
