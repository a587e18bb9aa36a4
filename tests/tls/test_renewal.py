"""The renewal job against a real Pebble and Knot: a certificate whose renewal keeps failing
backs off and is a finding, the others are renewed; a server that reached ``ready`` without a
certificate gets one once a zone serves its mail host."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.settings import Settings
from control_plane.tls import service
from control_plane.tls.models import Certificate
from control_plane.vault.client import Vault
from tests.conftest import MakeTenant
from tests.support.knot import KnotServer, TsigKey, zone_text
from tests.support.pebble import Pebble
from tests.tls.test_acme import mail_server, publish_zone

ROUNDS = 12  # rounds of the job at most; leftovers of earlier tests may take a few
BASE = 3600.0  # no second attempt of the failing one can fall inside the test


@pytest.fixture
def zones() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"ok-{tag}.test", f"bad-{tag}.test"


@pytest.fixture
def knot_zones(zones: tuple[str, str]) -> dict[str, str]:
    return {f"{zone}.": zone_text(f"{zone}.") for zone in zones}


@pytest.fixture
def acme(settings: Settings, pebble: Pebble) -> Settings:
    return settings.model_copy(
        update={
            "acme_directory_url": pebble.directory_url,
            "acme_ca_file": Path(pebble.ca_bundle),
            "tls_retry_base_seconds": BASE,
            "acme_retry_pause_seconds": 0.2,
        }
    )


async def certificate(db: Database, server_id: str) -> Certificate | None:
    async with db.session() as session:
        return await session.scalar(
            select(Certificate).where(Certificate.server_id == uuid.UUID(server_id))
        )


async def run_round(db: Database, job: service.Renewals) -> None:
    """One round of the job, waiting for what it started."""
    await db.transact(job)
    await job.wait()


async def run_until(
    db: Database, job: service.Renewals, done: Callable[[], Awaitable[bool]]
) -> None:
    """Rounds of the job until ``done()`` holds."""
    for _ in range(ROUNDS):
        await run_round(db, job)
        if await done():
            return
    raise AssertionError(f"not done after {ROUNDS} rounds")


async def test_a_failing_renewal_backs_off_and_the_others_are_renewed(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault,
    knot_primary: KnotServer, acme: Settings, zones: tuple[str, str],
) -> None:  # fmt: skip
    tenant = await make_tenant()
    good_zone, bad_zone = zones
    good = await mail_server(client, tenant, db, f"mx1.{good_zone}")
    bad = await mail_server(client, tenant, db, f"mx1.{bad_zone}")
    await publish_zone(client, tenant, knot_primary, good, good_zone)
    # The bad zone's provider has a TSIG key Knot does not know: every update is refused.
    await publish_zone(client, tenant, knot_primary, bad, bad_zone,
                       key_secret=TsigKey.generate().secret)  # fmt: skip
    now = utcnow()
    async with db.session() as session:
        for server_id, days in ((bad, 1), (good, 2)):  # the failing one is the most urgent
            session.add(Certificate(tenant_id=uuid.UUID(tenant.id),
                                    server_id=uuid.UUID(server_id), names="old", serial="01",
                                    issued_at=now - timedelta(days=88),
                                    not_after=now + timedelta(days=days)))  # fmt: skip
        # The good one failed before (a run of failures that its renewal ends).
        good_cert = await session.scalar(
            select(Certificate).where(Certificate.server_id == uuid.UUID(good))
        )
        assert good_cert is not None
        good_cert.failures, good_cert.failing_since = 1, now - timedelta(days=1)
    job = service.renew_job(db, vault, acme)

    async def good_renewed() -> bool:
        cert = await certificate(db, good)
        return cert is not None and cert.serial != "01"

    await run_until(db, job, good_renewed)
    for _ in range(3):  # and a few more rounds: still the one attempt
        await run_round(db, job)
    failing = await certificate(db, bad)
    assert failing is not None and failing.serial == "01"
    assert failing.failures == 1, failing.failures  # not picked again within its backoff
    assert failing.last_failure_at is not None and failing.next_attempt_at is not None
    assert failing.next_attempt_at - failing.last_failure_at == timedelta(seconds=BASE)
    assert failing.renewing_until is None and failing.last_error is not None
    assert "TSIG" in failing.last_error, failing.last_error  # the provider's own words
    renewed = await certificate(db, good)
    assert renewed is not None and renewed.failures == 0 and renewed.next_attempt_at is None
    assert renewed.failing_since is None
    assert failing.failing_since is not None and failing.failing_since == failing.last_failure_at
    assert renewed.not_after is not None and renewed.not_after > now + timedelta(days=30)

    shown = (await client.get(f"/api/v1/servers/{bad}/tls", headers=tenant.headers)).json()
    (finding,) = shown["findings"]
    assert finding["code"] == "tls.renewal_failed" and finding["state"] == "failing"
    assert finding["severity"] == "critical" and "TSIG" in finding["message"]
    assert shown["failures"] == 1 and shown["next_attempt_at"] is not None
    assert finding["since"] is not None
    assert datetime.fromisoformat(finding["since"]) == failing.failing_since
    async with db.session() as session:
        assert [f.code for f in await service.findings(session, uuid.UUID(bad))] == [
            "tls.renewal_failed"
        ]
        assert await service.findings(session, uuid.UUID(good)) == []

    # Once its backoff has passed it is tried again, and then waits twice as long.
    async with db.session() as session:
        cert = await session.get(Certificate, failing.id)
        assert cert is not None
        cert.next_attempt_at = utcnow() - timedelta(seconds=1)

    async def failed_twice() -> bool:
        cert = await certificate(db, bad)
        return cert is not None and cert.failures == 2

    await run_until(db, job, failed_twice)
    again = await certificate(db, bad)
    assert again is not None and again.next_attempt_at and again.last_failure_at
    assert again.next_attempt_at - again.last_failure_at == timedelta(seconds=2 * BASE)
    assert again.failing_since == failing.failing_since < again.last_failure_at  # the run's start
    await vault.delete(f"vps/{tenant.id}/{good}/tls")


def test_the_backoff_doubles_up_to_its_cap(settings: Settings) -> None:
    capped = settings.model_copy(
        update={"tls_retry_base_seconds": 60.0, "tls_retry_max_seconds": 21600.0}
    )
    waits = [service.backoff(n, capped).total_seconds() for n in (1, 2, 3, 8, 9, 10, 500)]
    assert waits == [60, 120, 240, 7680, 15360, 21600, 21600]


async def test_a_server_ready_without_tls_gets_its_certificate_once_a_zone_serves_it(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault,
    knot_primary: KnotServer, acme: Settings, zones: tuple[str, str],
) -> None:  # fmt: skip
    tenant = await make_tenant()
    zone, _ = zones
    server = await mail_server(client, tenant, db, f"mx1.{zone}")  # ready, no certificate
    job = service.renew_job(db, vault, acme)
    for _ in range(3):  # no zone yet: nothing to do, and nothing recorded for it
        await run_round(db, job)
    assert await certificate(db, server) is None

    await publish_zone(client, tenant, knot_primary, server, zone)

    async def certified() -> bool:
        cert = await certificate(db, server)
        return cert is not None and cert.serial is not None

    await run_until(db, job, certified)
    cert = await certificate(db, server)
    assert cert is not None and cert.names.splitlines() == [f"mx1.{zone}"]
    assert cert.command_id is not None  # delivered to MailU
    assert await vault.get(f"vps/{tenant.id}/{server}/tls") is not None
    await vault.delete(f"vps/{tenant.id}/{server}/tls")


async def test_a_renewal_whose_zone_is_gone_backs_off_too(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault,
    settings: Settings,
) -> None:  # fmt: skip
    tenant = await make_tenant()
    server = await mail_server(client, tenant, db, f"mx1.gone-{uuid.uuid4().hex[:8]}.test")
    async with db.session() as session:  # issued once; no zone serves the host any more
        session.add(Certificate(tenant_id=uuid.UUID(tenant.id), server_id=uuid.UUID(server),
                                serial="01", not_after=utcnow() - timedelta(hours=1)))  # fmt: skip
    job = service.renew_job(db, vault, settings.model_copy(update={"tls_retry_base_seconds": BASE}))

    async def failed() -> bool:
        cert = await certificate(db, server)
        return cert is not None and cert.failures > 0

    await run_until(db, job, failed)
    for _ in range(2):  # not picked again within its backoff
        await run_round(db, job)
    cert = await certificate(db, server)
    assert cert is not None and cert.failures == 1 and cert.renewing_until is None
    (finding,) = service.certificate_findings(cert, utcnow())
    assert "no DNS provider publishes the zone" in finding.message
    assert "there is no valid certificate" in finding.message
