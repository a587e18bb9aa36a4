"""November 2026 played out in the ledger (through meter.py and prices.set_price, with
explicit timestamps), for the report tests: see ``EXPECTED``."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from control_plane.costs import meter
from control_plane.costs.prices import set_price
from control_plane.db.engine import Database
from control_plane.servers.models import Server
from control_plane.tenants.models import Tenant
from control_plane.workspaces.models import Workspace
from tests.support import rows

NOW = datetime(2026, 11, 21, tzinfo=UTC)  # 20 of November's 30 days are over
NOV = datetime(2026, 11, 1, tzinfo=UTC)
GB = 1_000_000_000


def at(day: int, hour: int = 0) -> datetime:
    return NOV + timedelta(days=day - 1, hours=hour)


@dataclass
class Month:
    tenant_id: uuid.UUID
    provider: str
    a: uuid.UUID  # 10 % markup
    b: uuid.UUID  # 9.00 a month fixed markup
    c: uuid.UUID
    s1: Server


async def _workspace(db: Database, tenant_id: uuid.UUID, name: str, **markup: Decimal) -> uuid.UUID:
    async with db.session() as session:
        workspace = Workspace(tenant_id=tenant_id, name=name, **markup)
        session.add(workspace)
        await session.flush()
        return workspace.id


async def play_month(db: Database, tenant_id: uuid.UUID | None = None) -> Month:
    """S1 (A): small 30.00 from the 1st, resized to large on the 11th (60.00, 72.00 set
    ahead from the 26th), backups growing 1 GB a day (0.30 per GB-month). S2 (B): small,
    the 5th 12:00 to the 8th 12:00, then deleted. S3 (shared, large): a second address
    from the 16th (7.20 an address-month), split by mailboxes A 1 : B 1 : C 2 from the 3rd
    (before: idle). S4 (C): small all month, 10 GB sent a day (100 GB included, 0.05 per
    GB beyond); small goes from 30.00 to 36.00 on the 16th. S5 (B): a plan with no price
    from the 20th."""
    tenant_id = tenant_id or await rows.a_tenant(db, "costs")
    provider = f"p{os.urandom(4).hex()}"
    large = f"large-{provider}"  # priced for every provider ('*')
    a = await _workspace(db, tenant_id, "A", markup_percent=Decimal("10"))
    b = await _workspace(db, tenant_id, "B", markup_fixed=Decimal("9.00"))
    c = await _workspace(db, tenant_id, "C")
    servers = {}
    for name, workspace in (("s1", a), ("s2", b), ("s3", None), ("s4", c), ("s5", b)):
        servers[name] = await rows.a_server_row(
            db, tenant_id, name=f"{name}-{provider}", provider=provider, workspace_id=workspace
        )
    s1, s2, s3, s4, s5 = (servers[n] for n in ("s1", "s2", "s3", "s4", "s5"))
    async with db.session() as session:
        await session.get(Tenant, tenant_id)  # cost_split: mailboxes (the default)
        for prov, kind, item, amount, since, included in (
            (provider, "plan", "small", "30.00", NOV - timedelta(days=40), 100),
            (provider, "plan", "small", "36.00", at(16), 100),
            ("*", "plan", large, "60.00", NOV - timedelta(days=40), 1000),
            ("*", "plan", large, "72.00", at(26), 1000),
            (provider, "ip", "", "7.20", NOV - timedelta(days=40), None),
            (provider, "backup_storage", "s3", "0.30", NOV - timedelta(days=40), None),
            (provider, "bandwidth", "", "0.05", NOV - timedelta(days=40), None),
        ):
            await set_price(
                session, provider=prov, kind=kind, item=item, amount=Decimal(amount),
                currency="USD", effective_from=since, source="admin", included_gb=included,
            )  # fmt: skip
        await meter.open_span(session, s1, "server", "small", at(1))
        await meter.change_plan(session, s1, large, at(11))
        await meter.open_span(session, s2, "server", "small", at(5, 12))
        await meter.close_spans(session, s2.id, "server", at(8, 12))
        await meter.open_span(session, s3, "server", large, at(1))
        await meter.open_span(session, s3, "ip", "192.0.2.1", at(1))
        await meter.open_span(session, s3, "ip", "192.0.2.2", at(16))
        await meter.open_span(session, s4, "server", "small", at(1))
        await meter.open_span(session, s5, "server", "no-such-plan", at(20))
        for day in range(1, 21):
            await meter.record_reading(
                session, s1, "backup_storage", "s3", date(2026, 11, day), day * GB
            )
            await meter.record_reading(session, s4, "bandwidth", "", date(2026, 11, day), 10 * GB)
            if day >= 3:
                for workspace, mailboxes in ((a, 1), (b, 1), (c, 2)):
                    await meter.record_reading(
                        session,
                        s3,
                        "share_mailboxes",
                        str(workspace),
                        date(2026, 11, day),
                        mailboxes,
                    )
        await session.delete(await session.get(Server, s2.id))  # the ledger outlives it
    return Month(tenant_id, provider, a, b, c, s1)


# Cents to the 21st 00:00, and projected to the month's end (see play_month):
# A: S1 10.00 small + 20.00 large, backups Σ1..20 × 0.01 = 2.10, S3 ¼ of 36.00 + ¼ of 1.20
# B: S2 72 h = 3.00, S3 9.00 + 0.30; S5 unpriced
# C: S4 15.00 + 6.00, 100 GB over = 5.00, S3 18.00 + 0.60
# idle: S3 the 1st and 2nd, 4.00
# Ahead: S1 10.00 + 12.00 (72.00 from the 26th), backups 2.00; S3 10.00 + 12.00 and
# 2.40 split; S4 12.00 + 5.00
EXPECTED = {"A": Decimal("41.40"), "B": Decimal("12.30"), "C": Decimal("44.60")}
IDLE = Decimal("4.00")
TOTAL = Decimal("102.30")
PROJECTED = Decimal("167.70")
PROJECTED_BY = {"A": Decimal("71.50"), "B": Decimal("18.40"), "C": Decimal("73.80")}
