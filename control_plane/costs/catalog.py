"""Refreshing the price catalog from the providers' price lists and the settings.

Each offered provider's plans are asked for (Hostwinds: ``get_price_list``; local: its
plans priced by ``MAILFLEET_LOCAL_PLAN_PRICES``), then recorded with ``set_price``: an
unchanged price adds nothing, a changed one closes the old entry at the moment it was read.
Extra IPs, backup storage per repository kind and bandwidth overage come from settings.

A provider that does not answer keeps its previous prices (nothing is zero-priced for want
of an answer) and the others are still refreshed. A price an admin set stands: refreshing
never replaces an entry whose source is ``admin``.

The periodic job does the provider calls in a task of its own, apart from the periodic
round, so a slow provider (retries, back-off) never holds up alert delivery and the other
jobs; the round after the answers are in records them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.prices import ANY_PROVIDER, price_at, set_price
from control_plane.db.base import utcnow
from control_plane.periodic import nudge
from control_plane.provisioning.providers.base import Plan
from control_plane.provisioning.registry import OWNED_BY_CUSTOMER, ProviderRegistry
from control_plane.settings import Settings, parse_storage_prices

log = logging.getLogger(__name__)

# Plans whose prices come from a setting rather than from the provider's price list.
SETTING_PRICED_PROVIDERS = frozenset({"local"})


@dataclass(frozen=True)
class Fetched:
    """What the providers answered at ``at``: plans by provider, and who failed and why."""

    at: datetime
    plans: dict[str, tuple[Plan, ...]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refreshed:
    at: datetime
    recorded: int  # new catalog entries
    providers: tuple[str, ...]  # whose plans were read
    failed: dict[str, str]  # provider → why its prices were kept


async def fetch_plans(registry: ProviderRegistry) -> Fetched:
    """Every offered provider's plans (``manual`` has none); failures are noted, not
    raised."""
    fetched = Fetched(at=utcnow())
    try:
        names = [name for name in await registry.names() if name not in OWNED_BY_CUSTOMER]
    except Exception as exc:  # Vault unreachable: no provider can be listed this time
        log.warning("price refresh: cannot list the providers: %s", exc)
        fetched.failed["*"] = f"cannot list the providers: {exc}"
        return fetched
    for name in names:
        try:
            fetched.plans[name] = await (await registry.get(name)).provider.plans()
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            log.warning("price refresh: %s did not answer, its prices are kept: %s", name, message)
            fetched.failed[name] = message
    return fetched


async def record(session: AsyncSession, settings: Settings, fetched: Fetched) -> Refreshed:
    """Write what was fetched and the setting-priced items into the catalog."""
    recorded = 0
    for provider, plans in fetched.plans.items():
        source = "setting" if provider in SETTING_PRICED_PROVIDERS else "provider"
        for plan in plans:
            recorded += await _keep(
                session, fetched.at, provider, "plan", plan.id, plan.monthly_price,
                plan.currency, source, plan.included_gb,
            )  # fmt: skip
    currency = settings.cost_currency
    settings_priced = [
        ("ip", "", settings.ip_monthly_price),
        ("bandwidth", "", settings.bandwidth_overage_price),
        *(
            ("backup_storage", kind, price)
            for kind, price in parse_storage_prices(settings.backup_storage_prices).items()
        ),
    ]
    for kind, item, amount in settings_priced:
        recorded += await _keep(
            session, fetched.at, ANY_PROVIDER, kind, item, amount, currency, "setting", None
        )
    return Refreshed(fetched.at, recorded, tuple(sorted(fetched.plans)), dict(fetched.failed))


async def _keep(
    session: AsyncSession,
    at: datetime,
    provider: str,
    kind: str,
    item: str,
    amount: Decimal,
    currency: str,
    source: str,
    included_gb: int | None,
) -> int:
    """1 when a new entry was written; an admin's current price is left alone."""
    current = await price_at(session, provider, kind, item, at)
    if current is not None and current.source == "admin":
        return 0
    price = await set_price(
        session,
        provider=provider,
        kind=kind,
        item=item,
        amount=amount,
        currency=currency,
        effective_from=at,
        source=source,
        included_gb=included_gb,
    )
    if price is None:
        return 0
    if current is not None:  # a first price is no news; a change is
        log.info(
            "price of %s %s %s: %s → %s %s",
            provider, kind, item or "-", current.amount, amount, currency,
        )  # fmt: skip
    return 1


class PriceRefreshJob:
    """A ``periodic.Job`` run: refreshes the catalog every ``price_refresh_interval_seconds``
    (the first round, at serve start, too). The provider calls run in their own task; the
    round after they finish records the answers (the task's end wakes the runner)."""

    def __init__(self, settings: Settings, registry: ProviderRegistry) -> None:
        self.settings, self.registry = settings, registry
        self._started: float | None = None
        self._task: asyncio.Task[Fetched] | None = None

    async def __call__(self, session: AsyncSession) -> int:
        if self._task is None:
            interval = self.settings.price_refresh_interval_seconds
            if self._started is not None and time.monotonic() - self._started < interval:
                return 0
            self._started = time.monotonic()
            self._task = asyncio.create_task(fetch_plans(self.registry), name="price-fetch")
            self._task.add_done_callback(lambda _: nudge())
            return 0
        if not self._task.done():
            return 0
        task, self._task = self._task, None
        refreshed = await record(session, self.settings, task.result())
        if refreshed.recorded:
            log.debug("price catalog: %d new entries", refreshed.recorded)
        return refreshed.recorded
