"""One knotd for the DNSBL tests, serving three lists (a fourth the catalog names is not
served: knotd answers REFUSED for it), and settings whose catalog points at them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import or_, update

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.dnsbl import schedule
from control_plane.dnsbl.models import DnsblSubject
from control_plane.dnsbl.sweep import Checker
from control_plane.ips import service as ips
from control_plane.ips.models import IpAddress
from control_plane.servers.models import Server
from control_plane.settings import Settings
from tests.support import rows
from tests.support.dnsbl import Listing, Zone, addresses, catalog, knot_zones
from tests.support.knot import KnotServer, run_knot_primary

# The session's addresses: random, so tests sharing a database never meet each other's.
LISTED, CLEAN, PUBLIC, MINOR, SPARE, OTHER = addresses(6)
MAJOR_ZONE, MINOR_ZONE, REFUSED_ZONE, BROKEN_ZONE = (
    "bl-major.test", "bl-minor.test", "bl-refused.test", "bl-broken.test",
)  # fmt: skip
DOMAIN_ZONE = "dbl.test"
# Domain names are unique in the database: one listed domain per test that makes one.
BAD_DOMAIN, OTHER_BAD_DOMAIN = (f"spammy-{uuid.uuid4().hex[:8]}-{n}.example" for n in (1, 2))
REASON = "Listed for sending to spam traps, see https://bl-major.test/why"
ZONES = [
    Zone(MAJOR_ZONE, listed={
        LISTED: Listing("127.0.0.4", REASON),
        PUBLIC: Listing("127.255.255.254"),
    }),
    Zone(MINOR_ZONE, listed={LISTED: Listing("127.0.0.2"), MINOR: Listing("127.0.0.2", "minor")}),
    Zone(BROKEN_ZONE, test_points=False, listed={LISTED: Listing()}),
    Zone(DOMAIN_ZONE, kind="domain", listed={
        BAD_DOMAIN: Listing("127.0.1.2", "spam domain"),
        OTHER_BAD_DOMAIN: Listing("127.0.1.2", "spam domain"),
    }),
]  # fmt: skip
LISTS = catalog(
    {"zone": MAJOR_ZONE, "name": "Major BL", "major": True, "weight": 30,
     "codes": {"127.0.0.4": "XBL: exploited host"}},
    {"zone": MINOR_ZONE, "name": "Minor BL", "weight": 10},
    {"zone": REFUSED_ZONE, "name": "Refusing BL", "weight": 20},
    {"zone": BROKEN_ZONE, "name": "Broken BL", "weight": 20},
    {"zone": DOMAIN_ZONE, "kind": "domain", "name": "Domain BL", "major": True, "weight": 30},
)  # fmt: skip
# Claims in these tests run on a clock far in the past: only the subjects they set up are
# due then, whatever other tests left in the shared database.
PAST = datetime(2001, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def dnsbl_knot() -> Iterator[KnotServer]:
    with run_knot_primary(knot_zones(ZONES)) as server:
        yield server


def dnsbl_settings_for(settings: Settings, knot: KnotServer, **overrides: Any) -> Settings:
    """The session's settings with the test catalog, knotd as resolver and ~1 s timers."""
    values: dict[str, Any] = {
        "dnsbl_lists": LISTS,
        "dnsbl_resolvers": f"{knot.host}:{knot.port}",
        "dnsbl_timeout_seconds": 0.5,
        "dnsbl_interval_seconds": 60.0,
        "dnsbl_lease_seconds": 5.0,
        "dnsbl_tick_seconds": 0.1,
        "dnsbl_test_point_ttl_seconds": 1.0,
        "dnsbl_delist_recheck_seconds": 1.0,
        "dnsbl_check_min_seconds": 5.0,  # no test waits it out: it only refuses a re-ask
        **overrides,
    }
    return settings.model_copy(update=values)


@pytest.fixture
def dnsbl_settings(settings: Settings, dnsbl_knot: KnotServer) -> Settings:
    return dnsbl_settings_for(settings, dnsbl_knot)


async def a_server_with(
    db: Database, addresses: list[str], tenant_id: uuid.UUID | None = None
) -> tuple[Server, list[IpAddress]]:
    """A ready server of a new tenant (or ``tenant_id``) whose live addresses are these."""
    tenant = tenant_id or await rows.a_tenant(db, "dnsbl")
    server = await rows.a_server_row(
        db, tenant, name=f"mx-{uuid.uuid4().hex[:8]}", state="ready", mail_stack="none"
    )
    async with db.session() as session:
        found = await session.get(Server, server.id)
        assert found is not None
        live = await ips.sync_server(session, found, addresses, utcnow())
    return server, live


async def make_due(
    db: Database, ip_ids: Sequence[uuid.UUID], domain_ids: Sequence[uuid.UUID] = ()
) -> None:
    """Every live address and domain gets its subject (due now), then these are due at
    PAST (and what earlier tests left due that early is moved to now)."""
    async with db.session() as session:
        while await schedule.ensure_subjects(session, utcnow()):
            pass
        await session.execute(
            update(DnsblSubject)
            .where(DnsblSubject.next_run_at <= PAST + timedelta(days=1))
            .values(next_run_at=utcnow())
        )
        await session.execute(
            update(DnsblSubject)
            .where(or_(DnsblSubject.ip_id.in_(ip_ids), DnsblSubject.domain_id.in_(domain_ids)))
            .values(next_run_at=PAST - timedelta(seconds=10), lease_owner=None,
                    lease_expires_at=None)
        )  # fmt: skip


async def check_due(db: Database, settings: Settings, at: datetime = PAST) -> list[str]:
    """Claim what is due at PAST and look it up (stored as of ``at``): the names done."""
    checker = Checker(db, settings, clock=lambda: at)
    try:
        async with db.session() as session:
            claims = await schedule.claim_due(session, checker.owner, 100, PAST, settings)
        await checker.run(claims)
    finally:
        await checker.aclose()
    return sorted(claim.name for claim in claims)
