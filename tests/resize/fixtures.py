"""The resize tests' Hostwinds account (the contract double's plans plus two), a ready
server on it, and hourly usage of a known shape."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import delete

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.metrics.models import MetricRollupHourly
from control_plane.provisioning.providers.base import Region
from control_plane.provisioning.providers.hostwinds import HostwindsProvider, HostwindsSettings
from control_plane.servers.models import Server
from tests.conftest import TenantHandle
from tests.fakes.hostwinds import DEFAULT_PLANS, FakeInstance, HostwindsDouble, PricePlan

API_KEY = "hwk-resize-0123456789abcdef0123456789"
GIB = 1024**3
# The double's plans plus one as small as plan 11 on plan 12's disk (Hostwinds cannot
# shrink a disk, so 11 is never offered to a server on 12) and one above 13.
PLANS = (
    *DEFAULT_PLANS,
    PricePlan(14, "Unmanaged Linux 1 (75 GB)", 1, 2, 75, Decimal("12.99")),
    PricePlan(15, "Unmanaged Linux 4", 8, 16, 300, Decimal("69.99")),
)


def quick_driver(config: dict[str, str], user_data: bool = False) -> HostwindsProvider:
    """The driver as Vault configures it, with the test's times (2 requests/s otherwise)."""
    return HostwindsProvider(
        config["api_key"],
        template=config["template"],
        regions=[Region("2", "Dallas")],
        settings=HostwindsSettings(
            base_url=config["base_url"], requests_per_second=50.0, lookup_interval=0.1
        ),
    )


async def hostwinds_server(
    client: httpx.AsyncClient, tenant: TenantHandle, db: Database, api: HostwindsDouble, rid: int
) -> tuple[uuid.UUID, int]:
    """A ready server at Hostwinds (the double's instance) on plan ``rid``."""
    serviceid = 300_000 + len(api.instances)
    api.instances[serviceid] = FakeInstance(
        serviceid=serviceid, name=f"mf-{serviceid}", location_id=2, rid=rid,
        template="debian-12", keys=[], user_data="", created_at=time.monotonic() - 60,
        ips=["198.51.100.31"], ipv6="2001:db8::31", private_ip="10.0.0.31",
    )  # fmt: skip
    made = await client.post(
        "/api/v1/servers",
        headers=tenant.headers,
        json={"name": f"rs-{uuid.uuid4().hex[:6]}", "mail_stack": "none"},
    )
    assert made.status_code == 201, made.text
    server_id = uuid.UUID(made.json()["id"])
    async with db.session() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        server.provider, server.instance_id, server.plan = "hostwinds", str(serviceid), str(rid)
        server.state, server.agent_state = "ready", "enrolled"
    return server_id, serviceid


async def usage(
    db: Database, tenant: TenantHandle, server_id: uuid.UUID, hours: int, cpu: float,
    memory_gib: float, disk_gib: float,
) -> None:  # fmt: skip
    """``hours`` hourly rollups ending now: CPU % around ``cpu`` (±20 %), memory and disk used
    rising to their figure in the last tenth of the hours (so p90 sits at the plateau)."""
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    rows = []
    for hour in range(hours):
        bucket = now - timedelta(hours=hours - hour)
        high = hour >= hours * 0.85
        values = {
            "cpu_percent": cpu * (0.8 + 0.4 * ((hour * 7) % 10) / 10),
            "memory_used_bytes": memory_gib * GIB * (1.0 if high else 0.7),
            "fs_used_bytes:/": disk_gib * GIB * (1.0 if high else 0.9),
            "fs_total_bytes:/": 75 * GIB,
        }
        rows += [hourly(tenant, server_id, name, bucket, value) for name, value in values.items()]
    async with db.session() as session:
        await session.execute(
            delete(MetricRollupHourly).where(MetricRollupHourly.server_id == server_id)
        )
        session.add_all(rows)


def hourly(
    tenant: TenantHandle, server_id: uuid.UUID, name: str, bucket: datetime, value: float
) -> MetricRollupHourly:
    return MetricRollupHourly(
        tenant_id=uuid.UUID(tenant.id), server_id=server_id, metric=name, bucket=bucket,
        count=60, sum=value * 60, min=value * 0.9, max=value,
    )  # fmt: skip
