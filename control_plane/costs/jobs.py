"""The ``cost-metering`` periodic job: the day's facts that happen continuously, read into
the ledger, and the ledger checked against the servers it meters.

Every ``cost_metering_interval_seconds``, for today and yesterday (yesterday again so data
that arrived late completes it):

- ``bandwidth``: the bytes each server sent that UTC day, from the 1-minute rollups of
  ``net_tx_bytes_per_second`` — each minute's average rate × 60 s, summed. The minute tier
  (kept 90 days) rather than the hourly one: an hour's average × 3600 would count the
  current hour as if it were complete, and a minute without samples adds nothing.
- today's split weights of each shared server (``workspace_id`` NULL) per workspace whose
  domains it carries: ``share_domains``, ``share_mailboxes``, ``share_storage``
  (``shares``). A workspace that had weights earlier today and no longer does gets 0.

Then a safety net for the hooks (``meter`` is called where servers are created, resized,
terminated, and addresses assigned or released): a metered server with an instance and no
open span gets one from now, one whose open span names another plan moves to its plan now,
an open span of a server or address that is gone ends now; each is logged as a warning,
since it means a hook was missed.

A re-run over the same data changes nothing and returns 0.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs import meter
from control_plane.costs.models import MeterReading, MeterSpan
from control_plane.db.base import utcnow
from control_plane.ips.models import IpAddress
from control_plane.mail.models import Mailbox, MailDomain
from control_plane.metrics.models import MetricRollup
from control_plane.servers.models import Server
from control_plane.settings import Settings

log = logging.getLogger(__name__)

BANDWIDTH_SERIES = "net_tx_bytes_per_second"
MINUTE_SECONDS = 60
SHARES = ("share_domains", "share_mailboxes", "share_storage")
CHUNK = 500  # server ids per IN (…) list


class MeteringJob:
    """A ``periodic.Job`` run: ``meter_all`` at most every ``cost_metering_interval_seconds``
    (the periodic runner ticks far more often)."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings, self.clock = settings, clock
        self._last: float | None = None

    async def __call__(self, session: AsyncSession) -> int:
        started = time.monotonic()
        interval = self.settings.cost_metering_interval_seconds
        if self._last is not None and started - self._last < interval:
            return 0
        changed = await meter_all(session, self.clock())
        self._last = started
        return changed


async def meter_all(session: AsyncSession, now: datetime) -> int:
    """One metering pass at ``now``; how many ledger rows it wrote or ended."""
    changed = await reconcile_spans(session, now)
    servers = list(await session.scalars(select(Server).order_by(Server.id)))
    changed += await meter_bandwidth(session, servers, now)
    shared = [server for server in servers if server.workspace_id is None]
    changed += await meter_shares(session, shared, now.date())
    return changed


def _chunks(servers: Sequence[Server]) -> list[dict[uuid.UUID, Server]]:
    return [{s.id: s for s in servers[i : i + CHUNK]} for i in range(0, len(servers), CHUNK)]


async def sent_bytes(
    session: AsyncSession, server_ids: Sequence[uuid.UUID], day: date
) -> dict[uuid.UUID, int]:
    """Bytes each server sent on the UTC ``day`` (servers without samples that day: absent)."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    per_minute = func.sum(MetricRollup.sum / MetricRollup.count)
    rows = await session.execute(
        select(MetricRollup.server_id, per_minute)
        .where(
            MetricRollup.server_id.in_(server_ids),
            MetricRollup.metric == BANDWIDTH_SERIES,
            MetricRollup.bucket >= start,
            MetricRollup.bucket < start + timedelta(days=1),
            MetricRollup.count > 0,
        )
        .group_by(MetricRollup.server_id)
    )
    return {server_id: round(float(rate) * MINUTE_SECONDS) for server_id, rate in rows.all()}


async def known_readings(
    session: AsyncSession, server_ids: Sequence[uuid.UUID], resources: Sequence[str], day: date
) -> dict[tuple[uuid.UUID, str, str], int]:
    """(server, resource, item) → the quantity already recorded for ``day``: one read, so
    a pass that finds nothing new writes (and reads) nothing more per server."""
    rows = await session.execute(
        select(
            MeterReading.server_id, MeterReading.resource, MeterReading.item, MeterReading.quantity
        ).where(
            MeterReading.server_id.in_(server_ids),
            MeterReading.resource.in_(resources),
            MeterReading.day == day,
        )
    )
    return {(server_id, resource, item): q for server_id, resource, item, q in rows.all()}


async def meter_bandwidth(session: AsyncSession, servers: Sequence[Server], now: datetime) -> int:
    """Today's and yesterday's ``bandwidth`` readings of ``servers``; how many changed.
    Also called just before a server's row (and its metrics) are deleted."""
    pending: list[meter.Reading] = []
    today = now.date()
    for day in (today - timedelta(days=1), today):
        for chunk in _chunks(servers):
            sent = await sent_bytes(session, list(chunk), day)
            known = await known_readings(session, list(sent), ("bandwidth",), day)
            pending += [
                (chunk[server_id], "bandwidth", "", day, quantity)
                for server_id, quantity in sent.items()
                if known.get((server_id, "bandwidth", "")) != quantity
            ]
    return await meter.record_readings(session, pending)


async def share_weights(
    session: AsyncSession, server_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[tuple[str, str], int]]:
    """Per server: (share resource, workspace id or '') → weight, for the domains it carries.

    ``share_storage`` sums the mailboxes' ``quota_bytes``: what each workspace reserved, not
    what its mail takes up. MailFleet does not know the bytes a mailbox uses (MailU keeps
    that, and the agent reports disk use per filesystem, not per mailbox or domain); the
    quota is known for every mailbox, changes only when someone decides it, and is what a
    client is sold, so it is a fair and stable key.
    """
    per_domain = (
        select(
            MailDomain.server_id.label("server_id"),
            MailDomain.workspace_id.label("workspace_id"),
            MailDomain.id.label("domain_id"),
            func.count(Mailbox.id).label("mailboxes"),
            func.coalesce(func.sum(Mailbox.quota_bytes), 0).label("quota"),
        )
        .outerjoin(Mailbox, Mailbox.domain_id == MailDomain.id)
        .where(MailDomain.server_id.in_(server_ids))
        .group_by(MailDomain.server_id, MailDomain.workspace_id, MailDomain.id)
        .subquery()
    )
    rows = await session.execute(
        select(
            per_domain.c.server_id,
            per_domain.c.workspace_id,
            func.count(per_domain.c.domain_id),
            func.sum(per_domain.c.mailboxes),
            func.sum(per_domain.c.quota),
        ).group_by(per_domain.c.server_id, per_domain.c.workspace_id)
    )
    weights: dict[uuid.UUID, dict[tuple[str, str], int]] = {}
    for server_id, workspace_id, domains, mailboxes, quota in rows.all():
        item = str(workspace_id) if workspace_id is not None else ""
        found = weights.setdefault(server_id, {})
        found[("share_domains", item)] = int(domains)
        found[("share_mailboxes", item)] = int(mailboxes or 0)
        found[("share_storage", item)] = int(quota or 0)
    return weights


async def meter_shares(session: AsyncSession, shared: Sequence[Server], day: date) -> int:
    """``day``'s split weights of each shared server; a workspace it weighed earlier that
    day and no longer carries goes to 0 (kept, not deleted: the ledger says what changed)."""
    pending: list[meter.Reading] = []
    for chunk in _chunks(shared):
        weights = await share_weights(session, list(chunk))
        known = await known_readings(session, list(chunk), SHARES, day)
        for server_id, resource, item in known:
            weights.setdefault(server_id, {}).setdefault((resource, item), 0)
        pending += [
            (chunk[server_id], resource, item, day, quantity)
            for server_id, found in weights.items()
            for (resource, item), quantity in sorted(found.items())
            if known.get((server_id, resource, item)) != quantity
        ]
    return await meter.record_readings(session, pending)


async def reconcile_spans(session: AsyncSession, now: datetime) -> int:
    """The safety net: the open spans agree with the servers and addresses that exist."""
    changed = 0
    open_server_span = exists().where(
        MeterSpan.server_id == Server.id,
        MeterSpan.resource == "server",
        MeterSpan.ended_at.is_(None),
    )
    unmetered = await session.scalars(
        select(Server).where(
            Server.instance_id.is_not(None),
            Server.plan.is_not(None),
            Server.state != "deprovisioning",  # terminated, or about to be
            ~open_server_span,
        )
    )
    for server in unmetered:
        log.warning("metering: server %s had no open span; opened at %s", server.id, now)
        await meter.open_span(session, server, "server", server.plan or "", now)
        changed += 1
    other_plan = await session.scalars(
        select(Server)
        .join(MeterSpan, MeterSpan.server_id == Server.id)
        .where(
            MeterSpan.resource == "server",
            MeterSpan.ended_at.is_(None),
            MeterSpan.item != Server.plan,
            Server.state != "deprovisioning",
        )
    )
    for server in other_plan.unique():
        log.warning("metering: server %s is on %s, its span was not", server.id, server.plan)
        await meter.change_plan(session, server, server.plan or "", now)
        changed += 1
    live_ip = exists().where(
        IpAddress.server_id == MeterSpan.server_id,
        IpAddress.address == MeterSpan.item,
        IpAddress.released_at.is_(None),
    )
    ip_without_span = await session.execute(
        select(Server, IpAddress.address)
        .join(IpAddress, IpAddress.server_id == Server.id)
        .where(
            IpAddress.released_at.is_(None),
            Server.plan.is_not(None),
            Server.state != "deprovisioning",
            ~exists().where(
                MeterSpan.server_id == Server.id,
                MeterSpan.resource == "ip",
                MeterSpan.item == IpAddress.address,
                MeterSpan.ended_at.is_(None),
            ),
        )
    )
    for server, address in ip_without_span.all():
        log.warning("metering: address %s of server %s had no open span", address, server.id)
        await meter.open_span(session, server, "ip", address, now)
        changed += 1
    server_gone = ~exists().where(Server.id == MeterSpan.server_id)
    address_gone = and_(MeterSpan.resource == "ip", ~live_ip)
    stale = (
        await session.scalars(
            select(MeterSpan.id).where(MeterSpan.ended_at.is_(None), server_gone | address_gone)
        )
    ).all()
    if stale:
        log.warning("metering: %d open span(s) of servers or addresses gone; ended", len(stale))
        await session.execute(
            update(MeterSpan)
            .where(MeterSpan.id.in_(stale))
            .values(ended_at=now)
            .execution_options(synchronize_session=False)
        )
    return changed + len(stale)
