"""The usage routes: a server's series and summaries, the CSV/JSON export round trip,
refusals naming the field, the fleet view over two tenants, and other tenants' 404s."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.metrics.models import MetricRollupHourly, MetricSample
from control_plane.usage.schemas import UsageOut
from tests.conftest import MakeTenant
from tests.control_plane.cli_fixtures import MakeServer, make_server
from tests.usage.test_series import rollup, sample

__all__ = ["make_server"]  # a fixture, used by name

SERIES = {
    "cpu_percent": 20.0,
    "memory_total_bytes": 1000.0,
    "memory_available_bytes": 250.0,
    "fs_used_bytes:/": 300.0,
    "fs_total_bytes:/": 1000.0,
    "fs_free_bytes:/": 600.0,  # 100 reserved for root: df's Use% is 300 / 900
    "net_rx_bytes_per_second": 5.0,
}


async def hourly_history(
    db: Database, tenant_id: str, server_id: uuid.UUID, hours: int
) -> tuple[Any, Any]:
    """``hours`` of hourly rollups of SERIES ending at the last whole hour."""
    end = utcnow().replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours)
    rows = [
        rollup(uuid.UUID(tenant_id), server_id, name, start + timedelta(hours=n), value)
        for name, value in SERIES.items()
        for n in range(hours)
    ]
    async with db.session() as session:
        await session.execute(insert(MetricRollupHourly), rows)
    return start, end


async def test_server_usage_summaries_export_and_refusals(
    client: httpx.AsyncClient, db: Database, make_tenant: MakeTenant, make_server: MakeServer
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    server_id = await make_server(owner.id, "usage-1")
    start, end = await hourly_history(db, owner.id, server_id, 72)
    url = f"/api/v1/servers/{server_id}/usage"
    span = {"from": start.isoformat(), "to": end.isoformat()}

    response = await client.get(url, params={**span, "step": "1h"}, headers=owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    UsageOut.model_validate(body)  # the documented shape
    assert (body["step"], body["server_id"]) == ("1h", str(server_id))
    assert (body["from"], body["to"]) == (
        start.isoformat().replace("+00:00", "Z"),
        end.isoformat().replace("+00:00", "Z"),
    )
    assert [r["resource"] for r in body["resources"]] == ["cpu", "memory", "filesystem", "network"]
    series = {s["name"]: s for r in body["resources"] for s in r["series"]}
    cpu = series["cpu_percent"]
    assert (cpu["unit"], len(cpu["points"])) == ("%", 72)
    summary = cpu["summary"]
    assert (summary["average"], summary["p95"], summary["max"]) == (20.0, 20.0, 21.0)
    assert summary["trend_per_day"] == 0.0 and summary["peak_hour"] in range(24)
    assert series["memory_percent"]["points"][0]["avg"] == 75.0  # 1 - available / total
    assert series["fs_used_percent:/"]["summary"]["average"] == pytest.approx(100 / 3)
    filesystem = next(r for r in body["resources"] if r["resource"] == "filesystem")
    assert filesystem["mountpoint"] == "/"

    # The default step follows the range: three days → 5-minute buckets (no 1m rows: empty).
    default = await client.get(url, params=span, headers=owner.headers)
    assert default.json()["step"] == "5m"

    # Export round trip: the CSV and JSON records are the series' points.
    expected = sorted(
        (p["t"], name, p["avg"], p["min"], p["max"], p["count"])
        for name, s in series.items()
        for p in s["points"]
    )
    exported = await client.get(
        url, params={**span, "step": "1h", "format": "csv"}, headers=owner.headers
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    disposition = exported.headers["content-disposition"]
    assert disposition.startswith(f'attachment; filename="usage-{server_id}-')
    assert disposition.endswith('-1h.csv"')
    reader = csv.DictReader(io.StringIO(exported.text))
    assert reader.fieldnames == ["time", "series", "avg", "min", "max", "count"]
    got = sorted(
        (r["time"], r["series"], float(r["avg"]), float(r["min"]), float(r["max"]), int(r["count"]))
        for r in reader
    )
    assert [(t.replace("+00:00", "Z"), *rest) for t, *rest in got] == [
        (t.replace("+00:00", "Z"), *rest) for t, *rest in expected
    ]
    as_json = await client.get(
        url, params={**span, "step": "1h", "format": "json"}, headers=owner.headers
    )
    records = json.loads(as_json.text)
    assert len(records) == len(expected) == 72 * (len(SERIES) + 2)  # + memory %, disk %
    assert as_json.headers["content-disposition"].endswith('-1h.json"')

    refusals = [
        ({"step": "2m"}, "query.step"),
        ({**span, "step": "raw", "from": (end - timedelta(days=20)).isoformat()}, "query.step"),
        ({"from": end.isoformat(), "to": start.isoformat()}, "query.from"),
        ({"step": "1h", "from": (end - timedelta(days=800)).isoformat()}, "query.from"),
        ({"format": "xml"}, "query.format"),
    ]
    for params, field in refusals:
        refused = await client.get(url, params=params, headers=owner.headers)
        assert refused.status_code == 422, (params, refused.text)
        assert field in [e["field"] for e in refused.json()["errors"]], refused.json()

    for params in ({}, {"format": "csv"}):  # another tenant's server: not found, either way
        hidden = await client.get(url, params=params, headers=other.headers)
        assert hidden.status_code == 404, hidden.text
    missing = await client.get(f"/api/v1/servers/{uuid.uuid4()}/usage", headers=owner.headers)
    assert missing.status_code == 404


async def test_fleet_view_over_two_tenants(
    client: httpx.AsyncClient,
    db: Database,
    admin_headers: dict[str, str],
    make_tenant: MakeTenant,
    make_server: MakeServer,
) -> None:
    first, second = await make_tenant(), await make_tenant()
    a1 = await make_server(first.id, "fleet-a1")
    a2 = await make_server(first.id, "fleet-a2")
    b1 = await make_server(second.id, "fleet-b1")
    quiet = await make_server(second.id, "fleet-quiet")  # no sample: counted, not reporting
    now = utcnow()
    rows = []
    # (server, tenant, cpu, memory available of 1000, disk used of 1000)
    for n, (server, tenant, cpu, available, used) in enumerate(
        [(a1, first, 10.0, 900, 950), (a2, first, 70.0, 100, 100), (b1, second, 40.0, 500, 500)]
    ):
        row = sample(uuid.UUID(tenant.id), server, now - timedelta(seconds=5), n)
        fs = [{"mountpoint": "/", "used_bytes": used, "total_bytes": 1000,
               "free_bytes": 1000 - used, "inodes_used": 0, "inodes_total": 0}]  # fmt: skip
        row.update(cpu_percent=cpu, memory_available_bytes=available, filesystems=json.dumps(fs))
        row["mail_queue_messages"] = 3
        rows.append(row)
        stale = sample(uuid.UUID(tenant.id), server, now - timedelta(hours=1), n)
        rows.append(stale | {"cpu_percent": 99.0})  # not now: ignored
    async with db.session() as session:
        await session.execute(insert(MetricSample), rows)

    own = await client.get("/api/v1/usage", headers=first.headers)
    assert own.status_code == 200, own.text
    body = own.json()
    totals = body["totals"]
    assert (totals["servers"], totals["reporting"]) == (2, 2)
    assert totals["cpu_percent_average"] == 40.0
    assert (totals["memory_used_bytes"], totals["memory_total_bytes"]) == (1000, 2000)
    assert (totals["disk_used_bytes"], totals["disk_total_bytes"]) == (1050, 2000)
    assert (totals["net_rx_bytes_per_second"], totals["mail_queue_messages"]) == (1.0, 6)
    limits = body["closest_to_limits"]
    assert [(x["server_name"], x["percent"]) for x in limits["disk"]] == [
        ("fleet-a1", 95.0), ("fleet-a2", 10.0)
    ]  # fmt: skip
    assert limits["disk"][0]["mountpoint"] == "/"
    assert [(x["server_name"], x["percent"]) for x in limits["memory"]] == [
        ("fleet-a2", 90.0), ("fleet-a1", 10.0)
    ]  # fmt: skip
    assert [x["server_name"] for x in limits["cpu"]] == ["fleet-a2", "fleet-a1"]

    # A tenant key naming another tenant sees nothing of it (as the server list does).
    foreign = await client.get(
        "/api/v1/usage", params={"tenant_id": second.id}, headers=first.headers
    )
    assert foreign.status_code == 200
    assert foreign.json()["totals"]["servers"] == 0
    assert foreign.json()["closest_to_limits"] == {"disk": [], "memory": [], "cpu": []}

    # The admin sees any tenant, or all (other tests' servers may be there too).
    theirs = await client.get(
        "/api/v1/usage", params={"tenant_id": second.id, "limit": 1}, headers=admin_headers
    )
    assert (theirs.json()["totals"]["servers"], theirs.json()["totals"]["reporting"]) == (2, 1)
    assert [x["server_name"] for x in theirs.json()["closest_to_limits"]["cpu"]] == ["fleet-b1"]
    everyone = (await client.get("/api/v1/usage", headers=admin_headers)).json()
    assert everyone["totals"]["servers"] >= 4 and everyone["totals"]["reporting"] >= 3
    named = {x["server_name"] for x in everyone["closest_to_limits"]["disk"]}
    assert {"fleet-a1", "fleet-b1"} <= named
    assert quiet not in {x["server_id"] for x in everyone["closest_to_limits"]["cpu"]}
