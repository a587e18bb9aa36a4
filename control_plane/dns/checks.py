"""Judging a domain's DNS as the world sees it: troubleshooting (what is wrong and how to
fix it) and the propagation check ("Test DNS", kept as history)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.dns import checker, desired, publish
from control_plane.dns.models import DnsCheck, DnsProvider
from control_plane.dns.service import desired_records, provider_target, settings_of
from control_plane.errors import InvalidInput, Unavailable
from control_plane.ips import service as ips
from control_plane.mail import dkim
from control_plane.mail.models import MailDomain
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.vault.client import Vault

# dnspython (and the DoH client it brings: httpx2, h2) loads with the first lookup, not with serve.
if TYPE_CHECKING:
    from control_plane.dns import troubleshoot as troubleshooting


def resolvers(settings: Settings) -> list[tuple[str, int]]:
    """The configured recursive resolvers (host, port); empty: the system's."""
    found = []
    for item in filter(None, (x.strip() for x in settings.dns_resolvers.split(","))):
        host, _, port = item.rpartition(":")
        found.append((host.strip("[]"), int(port)) if host else (item, 53))
    return found


async def troubleshoot(
    session: AsyncSession, vault: Vault, settings: Settings, domain: MailDomain
) -> troubleshooting.Diagnosis:
    """What is wrong with the domain's DNS as the world sees it, and how to fix it."""
    from control_plane.dns import troubleshoot as troubleshooting  # subclasses dnspython's

    row = await settings_of(session, domain)
    records = await desired_records(session, domain, row)
    provider = await get_by_id(session, DnsProvider, row.provider_id, "DNS provider")
    server = await get_by_id(session, Server, domain.server_id, "server")
    target = await provider_target(session, vault, row)
    served = await asyncio.to_thread(publish.published, target, row.zone)
    by_purpose = {r.purpose: r for r in records}
    expectations = troubleshooting.Expectations(
        domain=domain.name,
        mail_host=server.mail_hostname or "",
        ipv4=await ips.published_addresses(session, server),
        dkim=tuple(
            (key.selector, key.public_key)
            for key, _ in await dkim.published_keys(session, server, domain)
        ),
        caa_issuer=settings.acme_caa_identity,
        provider_kind=provider.kind,
        provider_ns=tuple(
            v for r in served if r.type == "NS" and r.name == row.zone for v in r.values
        ),
        spf=desired.txt_text(by_purpose["spf"].values[0]) if "spf" in by_purpose else None,
        dmarc=desired.txt_text(by_purpose["dmarc"].values[0]) if "dmarc" in by_purpose else None,
    )
    configured = resolvers(settings)
    timeout = settings.dns_lookup_timeout_seconds
    if configured:
        resolver = troubleshooting.resolver_for(configured, timeout)
    else:
        resolver = troubleshooting.Resolver()  # the system's (/etc/resolv.conf)
        resolver.timeout = resolver.lifetime = timeout
    return await asyncio.to_thread(troubleshooting.diagnose, expectations, resolver)


async def authoritative_nameservers(
    provider: DnsProvider, zone: str, settings: Settings
) -> list[checker.Nameserver]:
    """The zone's authoritative servers: as the provider's settings list them
    (``nameservers``: host:port, for servers not on port 53), else as the world finds them.
    Used by the on-demand check below and by the health sweep's ``dns.drift``."""
    import dns.resolver

    listed = json.loads(provider.settings).get("nameservers") or []
    if listed:
        found = []
        for item in listed:
            host, _, port = str(item).rpartition(":")
            found.append(checker.Nameserver(host or str(item), host or str(item),
                                            int(port) if host else 53))  # fmt: skip
        return found
    configured = resolvers(settings)
    try:
        return await checker.find_authoritative(
            zone, configured[0] if configured else None, timeout=settings.dns_lookup_timeout_seconds
        )
    except checker.AuthoritativeLookupError as exc:
        if isinstance(exc.__cause__, (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)) or (
            exc.__cause__ is None
        ):
            raise InvalidInput(f"the nameservers of {zone} cannot be found: {exc}") from None
        # A lookup that got no answer says nothing about the zone: the check could not run.
        raise Unavailable(f"the nameservers of {zone} could not be looked up: {exc}") from None


async def check(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    domain: MailDomain,
    on_progress: Callable[[checker.ServerResult], None] | None = None,
) -> DnsCheck:
    """Ask every authoritative server and the configured resolvers for every desired record
    now; the report is kept."""
    row = await settings_of(session, domain)
    records = await desired_records(session, domain, row)
    provider = await get_by_id(session, DnsProvider, row.provider_id, "DNS provider")
    inside = [r for r in records if r.name == row.zone or r.name.endswith("." + row.zone)]
    started = utcnow()
    report = await checker.check(
        inside,
        await authoritative_nameservers(provider, row.zone, settings),
        resolvers(settings),
        zones=[row.zone],
        timeout=settings.dns_lookup_timeout_seconds,
        on_progress=on_progress,
    )
    result = DnsCheck(
        tenant_id=domain.tenant_id,
        domain_id=domain.id,
        started_at=started,
        finished_at=utcnow(),
        propagated=report.propagated,
        report=json.dumps(report.to_dict()),
    )
    session.add(result)
    await session.flush()
    return result


async def streamed(
    run: Callable[[Callable[[checker.ServerResult], None]], Awaitable[DnsCheck]],
) -> AsyncIterator[checker.ServerResult | DnsCheck]:
    """ "Test DNS" as it runs: each server's result as soon as it is known, then the kept
    check; ``run`` is ``check`` given its progress callback. Its error (a refusal is a
    MailFleetError) is raised after the results seen so far; leaving early cancels it."""
    queue: asyncio.Queue[checker.ServerResult | DnsCheck | Exception | None] = asyncio.Queue()

    async def produce() -> None:
        try:
            queue.put_nowait(await run(queue.put_nowait))
        except Exception as exc:  # handed to the reader, who decides what it means
            queue.put_nowait(exc)
        finally:
            queue.put_nowait(None)

    task = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        task.cancel()


async def list_checks(
    session: AsyncSession, domain: MailDomain, after: uuid.UUID | None, limit: int
) -> Page[DnsCheck]:
    stmt = select(DnsCheck).where(DnsCheck.domain_id == domain.id)
    return await paginate(session, stmt, DnsCheck.id, after, limit)
