"""DNS providers, and each mail domain's records: settings, desired vs published, apply."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import StreamingResponse

from control_plane.api.context import Ctx
from control_plane.dns import checks, service
from control_plane.dns.checker import ServerResult
from control_plane.dns.models import DnsCheck, DnsProvider
from control_plane.dns.record import Record
from control_plane.dns.schemas import (
    ApplyOut,
    ChangeOut,
    CheckOut,
    DiagnosisOut,
    DomainDnsIn,
    DomainDnsOut,
    FindingOut,
    ProviderCreate,
    ProviderOut,
    RecordOut,
)
from control_plane.errors import MailFleetError
from control_plane.mail.service import get_domain
from control_plane.provisioning.stream import sse
from control_plane.schemas import After, Limit, PageOut

router = APIRouter(tags=["dns"])


def provider_out(provider: DnsProvider) -> ProviderOut:
    return ProviderOut(
        id=provider.id,
        tenant_id=provider.tenant_id,
        name=provider.name,
        kind=provider.kind,
        settings=json.loads(provider.settings),
        created_at=provider.created_at,
    )


@router.post("/api/v1/dns-providers", status_code=status.HTTP_201_CREATED)
async def create_provider(body: ProviderCreate, ctx: Ctx) -> ProviderOut:
    """A DNS provider; its secret goes to Vault and is never shown again."""
    tenant_id = ctx.owning_tenant(body.tenant_id)
    async with ctx.session() as session:
        return provider_out(await service.create_provider(session, ctx.vault, tenant_id, body))


@router.get("/api/v1/dns-providers")
async def list_providers(ctx: Ctx, after: After = None, limit: Limit = 100) -> PageOut[ProviderOut]:
    async with ctx.session() as session:
        page = await service.list_providers(session, after, limit)
    return PageOut(items=[provider_out(p) for p in page.items], next_after=page.next_after)


@router.get("/api/v1/dns-providers/{provider_id}")
async def get_provider(provider_id: uuid.UUID, ctx: Ctx) -> ProviderOut:
    async with ctx.session() as session:
        return provider_out(await service.get_provider(session, provider_id))


@router.delete("/api/v1/dns-providers/{provider_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_provider(provider_id: uuid.UUID, ctx: Ctx) -> None:
    """409 while domains publish through it."""
    async with ctx.session() as session:
        provider = await service.get_provider(session, provider_id)
        await service.delete_provider(session, ctx.vault, provider)


@router.put("/api/v1/domains/{domain_id}/dns")
async def put_dns(domain_id: uuid.UUID, body: DomainDnsIn, ctx: Ctx) -> DomainDnsOut:
    """Where and how the domain's records are published (nothing is published yet)."""
    async with ctx.session() as session:
        domain = await get_domain(session, domain_id)
        row = await service.put_settings(session, domain, body, ctx.settings.acme_caa_identity)
        records = await service.desired_records(session, domain, row)
    return DomainDnsOut(
        domain_id=domain.id,
        provider_id=row.provider_id,
        zone=row.zone,
        records=[RecordOut(**_record(r)) for r in records],
    )


@router.get("/api/v1/domains/{domain_id}/dns")
async def get_dns(domain_id: uuid.UUID, ctx: Ctx) -> DomainDnsOut:
    """Desired records beside what the provider serves now."""
    async with ctx.session() as session:
        domain = await get_domain(session, domain_id)
        row, compared = await service.compare(session, ctx.vault, domain)
    return DomainDnsOut(
        domain_id=domain.id,
        provider_id=row.provider_id,
        zone=row.zone,
        records=[
            RecordOut(**_record(record), status=state,
                      published_values=list(there) if there is not None else None)
            for record, state, there in compared
        ],
    )  # fmt: skip


@router.post("/api/v1/domains/{domain_id}/dns/apply")
async def apply_dns(domain_id: uuid.UUID, ctx: Ctx, dry_run: bool = False) -> ApplyOut:
    """Publish the domain's records: the plan, applied in one update (``dry_run``: only
    the plan). Only MailFleet's values change; the zone's other records stay as they are."""
    async with ctx.session() as session:
        domain = await get_domain(session, domain_id)
        zone, changes = await service.apply(session, ctx.vault, domain, dry_run=dry_run)
    return ApplyOut(
        zone=zone,
        applied=not dry_run,
        changes=[
            ChangeOut(action=c.action, name=c.name, type=c.type, ttl=c.ttl,
                      values=list(c.values), previous=list(c.previous))
            for c in changes
        ],
    )  # fmt: skip


@router.get("/api/v1/domains/{domain_id}/dns/troubleshoot")
async def troubleshoot_dns(domain_id: uuid.UUID, ctx: Ctx) -> DiagnosisOut:
    """What is wrong with the domain's DNS as resolvers see it: each finding with its
    severity, the record that fixes it and how to set it at this provider."""
    async with ctx.session() as session:
        domain = await get_domain(session, domain_id)
        found = await checks.troubleshoot(session, ctx.vault, ctx.settings, domain)
    return DiagnosisOut(
        domain=found.domain,
        state=found.state,
        ok=found.ok,
        findings=[FindingOut(**asdict(f)) for f in found.findings],
        spf=found.spf,
        dmarc=found.dmarc,
    )


def check_out(found: DnsCheck) -> CheckOut:
    return CheckOut(
        id=found.id,
        domain_id=found.domain_id,
        started_at=found.started_at,
        finished_at=found.finished_at,
        propagated=found.propagated,
        report=json.loads(found.report),
    )


@router.post("/api/v1/domains/{domain_id}/dns/check", response_model=CheckOut)
async def check_dns(domain_id: uuid.UUID, ctx: Ctx, request: Request) -> Any:
    """ "Test DNS": every authoritative server and resolver, every record, now. The report is
    kept; with ``Accept: text/event-stream`` each result streams as it arrives, then the
    report."""

    async def run(on_progress: Callable[[ServerResult], None] | None = None) -> DnsCheck:
        async with ctx.session() as session:
            domain = await get_domain(session, domain_id)
            return await checks.check(session, ctx.vault, ctx.settings, domain, on_progress)

    if "text/event-stream" not in request.headers.get("accept", ""):
        return check_out(await run())
    async with ctx.session() as session:
        await get_domain(session, domain_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        try:
            async for item in checks.streamed(run):
                if isinstance(item, ServerResult):
                    yield sse("result", json.dumps(item.to_dict()))
                else:
                    yield sse("report", check_out(item).model_dump_json())
        except MailFleetError as exc:
            yield sse("error", json.dumps({"detail": exc.detail}))

    return StreamingResponse(stream(), media_type="text/event-stream")


@router.get("/api/v1/domains/{domain_id}/dns/checks")
async def list_checks(
    domain_id: uuid.UUID, ctx: Ctx, after: After = None, limit: Limit = 100
) -> PageOut[CheckOut]:
    """Earlier checks with their reports, oldest first."""
    async with ctx.session() as session:
        domain = await get_domain(session, domain_id)
        page = await checks.list_checks(session, domain, after, limit)
    return PageOut(items=[check_out(c) for c in page.items], next_after=page.next_after)


def _record(record: Record) -> dict[str, Any]:
    return {
        "name": record.name,
        "type": record.type,
        "ttl": record.ttl,
        "values": list(record.values),
        "purpose": record.purpose,
    }
