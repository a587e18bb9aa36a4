"""GET /api/v1/servers/{id}/capacity on both databases: forecasts per resource with each
level's crossing and band, anomalies with their reasons; another tenant's key gets 404, a
bad window is refused naming its field."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from tests.capacity.history import Shape, flat, hour_at, write_history
from tests.conftest import MakeTenant
from tests.support import rows


async def test_capacity_forecasts_and_anomalies(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    server = await rows.a_server_row(db, owner.id, name="cap-api", state="ready")
    now = utcnow()
    spike = hour_at(now, 4, 3)  # a night at the afternoon's level
    await write_history(
        db,
        server,
        {
            "cpu": Shape(level=50, slope=0.0, amplitude=20.0, planted={spike: 90.0}).series(
                now, 30
            ),
            "memory": Shape(level=70, days_to_level=0, slope=-0.5, amplitude=3.0).series(now, 30),
            "disk": Shape(level=90, days_to_level=5, slope=1.0, amplitude=1.0, noise=0.2).series(
                now, 30
            ),
            "inodes": flat(now, 2, 10.0),
        },
    )
    base = f"/api/v1/servers/{server.id}/capacity"
    response = await client.get(base, headers=owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["window_days"] == 30 and body["warning_days"] == 7
    forecasts = {f["check"]: f for f in body["forecasts"]}
    assert set(forecasts) == {
        "forecast.cpu",
        "forecast.memory",
        "forecast.disk./",
        "forecast.inodes./",
    }

    disk = forecasts["forecast.disk./"]
    assert (disk["state"], disk["severity"], disk["resource"], disk["mountpoint"]) == (
        "warning", "warning", "disk", "/"
    )  # fmt: skip
    assert 84 <= disk["peak_percent"] <= 86 and abs(disk["slope_per_day"] - 1.0) < 0.1
    low, high = disk["slope_band"]
    assert low <= disk["slope_per_day"] <= high and disk["days_fitted"] == 30
    levels = {t["level"]: t for t in disk["thresholds"]}
    assert levels[80]["status"] == "above" and levels[80]["at"] is None
    for level, days in ((90, 5), (95, 10), (100, 15)):
        crossing = levels[level]
        assert crossing["status"] == "forecast" and abs(crossing["in_days"] - days) <= 1, crossing
        assert crossing["earliest"] <= crossing["at"] <= crossing["latest"]

    memory = forecasts["forecast.memory"]
    assert memory["state"] == "ok" and memory["slope_per_day"] < 0
    assert {t["status"] for t in memory["thresholds"]} == {"not_rising"}
    inodes = forecasts["forecast.inodes./"]
    assert inodes["state"] == "unknown" and "a forecast needs 3" in inodes["summary"]
    assert forecasts["forecast.cpu"]["state"] == "ok"

    assert body["baselines"]["forecast.cpu"] == "hour_of_week"
    assert body["baselines"]["forecast.inodes./"] == "none"
    spotted = [(a["resource"], datetime.fromisoformat(a["at"])) for a in body["anomalies"]]
    assert spotted == [("cpu", spike)], body["anomalies"]
    assert body["anomalies_total"] == 1
    assert body["anomalies"][0]["reason"].startswith(
        f"CPU use 90.0% at {spike:%a %Y-%m-%d %H:%M} UTC"
    )

    short = await client.get(base, params={"window_days": 7}, headers=owner.headers)
    assert short.status_code == 200, short.text
    assert short.json()["baselines"]["forecast.cpu"] == "hour_of_day"

    bad = await client.get(base, params={"window_days": 0}, headers=owner.headers)
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["query.window_days"]

    for key in (other, owner):
        missing = await client.get(
            base if key is other else f"/api/v1/servers/{uuid.uuid4()}/capacity",
            headers=key.headers,
        )
        assert missing.status_code == 404, missing.text
        assert "forecast" not in missing.text
