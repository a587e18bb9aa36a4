"""A delisting request of a tenant, for the route walk in
tests/control_plane/test_cross_tenant.py (a request needs a listing, which lookups make:
here one is stored directly, on the default catalog's first list)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.dnsbl import schedule
from control_plane.dnsbl.catalog import DEFAULT_LISTS
from control_plane.dnsbl.models import DnsblResult, DnsblSubject
from control_plane.ips.models import IpAddress


async def walk_objects(
    client: httpx.AsyncClient, headers: dict[str, str], address: str
) -> dict[str, str]:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app: Any = transport.app
    db: Database = app.state.db  # the app under test's own database
    zone = DEFAULT_LISTS[0].zone
    async with db.session() as session:
        now = utcnow()
        while await schedule.ensure_subjects(session, now):
            pass
        subject = await session.scalar(
            select(DnsblSubject)
            .join(IpAddress, IpAddress.id == DnsblSubject.ip_id)
            .where(IpAddress.address == address, IpAddress.released_at.is_(None))
        )
        assert subject is not None
        session.add(
            DnsblResult(tenant_id=subject.tenant_id, subject_id=subject.id, zone=zone,
                        state="listed", code="127.0.0.2", meaning="victim listing",
                        checked_at=now, changed_at=now)
        )  # fmt: skip
    request = await client.post(
        f"/api/v1/ips/{address}/delist-requests", json={"list": zone}, headers=headers
    )
    assert request.status_code == 201, request.text
    return {"request_id": request.json()["id"]}
