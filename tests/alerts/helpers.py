"""Making channels and messages, notifying and delivering, for the alerts tests (and one
alerts object of each kind for the tenancy walk in tests/control_plane)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from control_plane.alerts.delivery import deliver_due
from control_plane.alerts.models import AlertDelivery
from control_plane.alerts.service import AlertItem, AlertMessage, notify
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from tests.alerts.receivers import HttpReceiver

SECRET = "whsec-0123456789abcdef"  # the webhook channels' signing secret


async def make_channel(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await client.post("/api/v1/alert-channels", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def message(
    tenant_id: str | uuid.UUID | None,
    *,
    event: str = "trigger",
    severity: str = "critical",
    dedup_key: str = "incident-1",
    incident_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> AlertMessage:
    item = AlertItem(
        incident_id=incident_id or uuid.uuid4(),
        check="smtp.25",
        subject_kind="server",
        subject_id=str(uuid.uuid4()),
        subject_name="mx1",
        severity=severity,
        state="failing",
        summary="connection refused",
    )
    return AlertMessage(
        event=event,  # type: ignore[arg-type]
        tenant_id=uuid.UUID(str(tenant_id)) if tenant_id else None,
        dedup_key=dedup_key,
        title="mx1: smtp.25 failing",
        severity=severity,  # type: ignore[arg-type]
        items=(item,),
        at=at or utcnow(),
    )


async def notify_now(
    db: Database,
    msg: AlertMessage,
    channel_ids: list[str],
    *,
    step: int | None = 1,
    now: datetime | None = None,
) -> uuid.UUID:
    async with db.session() as session:
        return await notify(
            session, msg, [uuid.UUID(c) for c in channel_ids], step=step, now=now or utcnow()
        )


async def deliver(
    db: Database,
    vault: Vault,
    settings: Settings,
    notification_id: uuid.UUID,
    now: datetime | None = None,
) -> list[AlertDelivery]:
    """Run the job's claim-send-record for this notification's deliveries only (the
    database is shared with other tests)."""
    async with db.session() as session:
        ids = list(
            (
                await session.scalars(
                    select(AlertDelivery.id).where(AlertDelivery.notification_id == notification_id)
                )
            ).all()
        )
    return await deliver_due(db, vault, settings, now=now, delivery_ids=ids)


async def statuses(db: Database, notification_id: uuid.UUID) -> list[AlertDelivery]:
    async with db.session() as session:
        rows = await session.scalars(
            select(AlertDelivery)
            .where(AlertDelivery.notification_id == notification_id)
            .order_by(AlertDelivery.id)
        )
        return list(rows.all())


@dataclass
class Alerting:
    """The alerts app under test with its database, Vault, settings and loopback receiver
    (the ``alerting`` fixture): what nearly every delivery test takes, with the steps they
    all repeat (make a channel, notify it, run the delivery job)."""

    client: httpx.AsyncClient
    db: Database
    vault: Vault
    settings: Settings
    receiver: HttpReceiver

    async def channel(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        return await make_channel(self.client, headers, **body)

    async def webhook(
        self, headers: dict[str, str], name: str, path: str, **body: Any
    ) -> dict[str, Any]:
        """A webhook channel to ``path`` on the receiver, signed with SECRET."""
        url = f"{self.receiver.url}{path}"
        return await self.channel(headers, name=name, kind="webhook", url=url, secret=SECRET,
                                  **body)  # fmt: skip

    async def notify(
        self,
        msg: AlertMessage,
        channel_ids: list[str],
        *,
        step: int | None = 1,
        now: datetime | None = None,
    ) -> uuid.UUID:
        return await notify_now(self.db, msg, channel_ids, step=step, now=now)

    async def deliver(
        self,
        notification_id: uuid.UUID,
        now: datetime | None = None,
        *,
        settings: Settings | None = None,
    ) -> list[AlertDelivery]:
        return await deliver(self.db, self.vault, settings or self.settings, notification_id, now)

    async def statuses(self, notification_id: uuid.UUID) -> list[AlertDelivery]:
        return await statuses(self.db, notification_id)


async def walk_objects(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """``channel_id``, ``policy_id`` and ``notification_id`` owned by the caller's tenant."""
    channel = await client.post(
        "/api/v1/alert-channels", json={"name": "victim-feed", "kind": "in_app"}, headers=headers
    )
    assert channel.status_code == 201, channel.text
    channel_id = channel.json()["id"]
    policy = await client.post(
        "/api/v1/escalation-policies",
        json={"name": "victim-policy", "steps": [{"channel_ids": [channel_id]}]},
        headers=headers,
    )
    assert policy.status_code == 201, policy.text
    sent = await client.post(f"/api/v1/alert-channels/{channel_id}/test", headers=headers)
    assert sent.status_code == 200, sent.text
    return {
        "channel_id": channel_id,
        "policy_id": policy.json()["id"],
        "notification_id": sent.json()["notification_id"],
    }
