"""The price catalog: history, refresh from providers and settings, the routes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from control_plane.costs import catalog
from control_plane.costs.models import Price
from control_plane.costs.prices import list_prices, set_price
from control_plane.db.engine import Database
from control_plane.errors import Conflict
from control_plane.provisioning.providers.hostwinds_responses import parse_bandwidth
from control_plane.provisioning.registry import HOSTWINDS_SECRET, ProviderRegistry
from control_plane.settings import Settings, SettingsError, load_settings
from control_plane.vault.client import Vault
from tests.conftest import MakeTenant
from tests.fakes.hostwinds import hostwinds_double

T0 = datetime(2026, 11, 1, tzinfo=UTC)


async def entries(db: Database, provider: str, item: str) -> list[Price]:
    async with db.session() as session:
        rows = await list_prices(session, at=None, provider=provider, kind="plan")
        return [row for row in rows if row.item == item]


async def put(db: Database, provider: str, item: str, amount: str, at: datetime) -> Price | None:
    async with db.session() as session:
        return await set_price(
            session, provider=provider, kind="plan", item=item, amount=Decimal(amount),
            currency="USD", effective_from=at, source="admin",
        )  # fmt: skip


async def test_history_change_mid_month_same_price_and_ahead(db: Database) -> None:
    await put(db, "histp", "p1", "10.00", T0)
    mid = T0 + timedelta(days=14, hours=12)
    assert await put(db, "histp", "p1", "10.00", mid) is None  # unchanged: nothing added
    await put(db, "histp", "p1", "12.50", mid)
    ahead = T0 + timedelta(days=45)
    await put(db, "histp", "p1", "15.00", ahead)
    rows = await entries(db, "histp", "p1")
    assert [(r.amount, r.effective_from, r.effective_to) for r in rows] == [
        (Decimal("10.00"), T0, mid),
        (Decimal("12.50"), mid, ahead),
        (Decimal("15.00"), ahead, None),
    ]
    with pytest.raises(Conflict):
        await put(db, "histp", "p1", "11.00", mid)


@pytest.mark.postgres_only
async def test_two_replicas_refreshing_at_once_keep_one_history(db: Database) -> None:
    """Both read the item's history before either writes: without the per-item lock each
    would add an entry open to the future (two current prices)."""
    await asyncio.gather(
        *(put(db, "racep", "p1", amount, T0 + timedelta(minutes=n))
          for n, amount in enumerate(("10.00", "11.00", "12.00")))
    )  # fmt: skip
    rows = await entries(db, "racep", "p1")
    assert [r.effective_to for r in rows] == [r.effective_from for r in rows[1:]] + [None]
    assert len(rows) == 3


def test_bandwidth_units_and_storage_setting_wording() -> None:
    assert parse_bandwidth("2000") == 2000
    assert parse_bandwidth("2 TB") == 2000
    assert parse_bandwidth("unlimited") is None
    with pytest.raises(SettingsError, match="kind=price"):
        load_settings(backup_storage_prices="s3=-1")


async def current(db: Database, provider: str, kind: str) -> dict[str, Price]:
    async with db.session() as session:
        rows = await list_prices(session, at=datetime.now(UTC), provider=provider, kind=kind)
        return {row.item: row for row in rows}


async def test_refresh_from_hostwinds_local_and_settings(
    db: Database, vault: Vault, settings: Settings
) -> None:
    local = settings.model_copy(
        update={"local_provider": True, "local_plan_prices": "local-small=5.00",
                "ip_monthly_price": Decimal("3.50")}
    )  # fmt: skip
    with hostwinds_double() as api:
        await vault.put(
            HOSTWINDS_SECRET,
            {"api_key": api.api_key, "template": "t", "regions": "1=Seattle", "base_url": api.url},
        )
        providers = ProviderRegistry(local, vault)
        try:
            async with db.session() as session:
                first = await catalog.record(session, local, await catalog.fetch_plans(providers))
            assert first.failed == {} and first.providers == ("hostwinds", "local")
            hw = await current(db, "hostwinds", "plan")
            assert hw["11"].amount == Decimal("9.99") and hw["11"].included_gb == 2000
            assert hw["11"].source == "provider"
            loc = await current(db, "local", "plan")
            assert loc["local-small"].amount == Decimal("5.00")
            assert loc["local-small"].source == "setting"
            assert (await current(db, "*", "ip"))[""].amount == Decimal("3.50")
            storage = await current(db, "*", "backup_storage")
            assert storage["s3"].amount == Decimal("0.023") and storage["s3"].currency == "USD"
            assert (await current(db, "*", "bandwidth"))[""].source == "setting"
            async with db.session() as session:  # nothing changed: nothing added
                again = await catalog.record(session, local, await catalog.fetch_plans(providers))
            assert again.recorded == 0
            api.fail_next(10, "error_body", actions={"get_price_list"}, message="Billing down.")
            async with db.session() as session:
                down = await catalog.record(session, local, await catalog.fetch_plans(providers))
            assert "Billing down" in down.failed["hostwinds"]
            assert (await current(db, "hostwinds", "plan"))["11"].amount == Decimal("9.99")
        finally:
            await providers.aclose()
            await vault.delete(HOSTWINDS_SECRET)


async def test_routes(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    body = {"provider": "routep", "kind": "plan", "item": "big", "amount": "20.00",
            "currency": "EUR", "effective_from": "2026-11-01T00:00:00Z",
            "included_gb": 500}  # fmt: skip
    refused = await client.post("/api/v1/prices", json=body, headers=tenant.headers)
    assert refused.status_code == 403
    made = await client.post("/api/v1/prices", json=body, headers=admin_headers)
    assert made.status_code == 201, made.text
    assert made.json()["amount"] == "20.00" and made.json()["currency"] == "EUR"
    same = await client.post("/api/v1/prices", json=body, headers=admin_headers)
    assert same.status_code == 200 and same.json()["id"] == made.json()["id"]
    clash = await client.post(
        "/api/v1/prices", json={**body, "amount": "21"}, headers=admin_headers
    )
    assert clash.status_code == 409 and "effective_from" in clash.text
    for field, bad in (("amount", "-1"), ("kind", "disk"), ("currency", "euro")):
        response = await client.post(
            "/api/v1/prices", json={**body, field: bad}, headers=admin_headers
        )
        assert response.status_code == 422 and f"body.{field}" in response.text, response.text
    later = {**body, "amount": "25.00", "effective_from": "2026-11-16T00:00:00Z"}
    assert (
        await client.post("/api/v1/prices", json=later, headers=admin_headers)
    ).status_code == 201
    params = {"provider": "routep", "at": "2026-11-10T00:00:00Z"}
    at = await client.get("/api/v1/prices", params=params, headers=tenant.headers)
    assert [p["amount"] for p in at.json()["items"]] == ["20.00"]
    history = await client.get(
        "/api/v1/prices", params={"provider": "routep", "history": "true"}, headers=tenant.headers
    )
    items = history.json()["items"]
    assert [p["effective_to"] for p in items] == ["2026-11-16T00:00:00Z", None]
    refresh = await client.post("/api/v1/prices/refresh", headers=tenant.headers)
    assert refresh.status_code == 403
    refresh = await client.post("/api/v1/prices/refresh", headers=admin_headers)
    assert refresh.status_code == 200 and refresh.json()["failed"] == []


async def test_periodic_job_fetches_apart_then_records(
    db: Database, vault: Vault, settings: Settings
) -> None:
    quick = settings.model_copy(
        update={"price_refresh_interval_seconds": 1.0, "ip_monthly_price": Decimal("6.25")}
    )
    providers = ProviderRegistry(quick, vault)
    job = catalog.PriceRefreshJob(quick, providers)
    try:
        assert await db.transact(job) == 0  # the first round starts the fetch
        deadline = asyncio.get_running_loop().time() + 10
        while (recorded := await db.transact(job)) == 0:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        assert recorded >= 1
        assert (await current(db, "*", "ip"))[""].amount == Decimal("6.25")
        assert await db.transact(job) == 0  # not due again within the interval
    finally:
        await providers.aclose()
