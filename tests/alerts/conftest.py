"""An app whose alert channels may reach loopback receivers, with an SMTP sink as relay."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import select

from control_plane.alerts.delivery import deliver_due
from control_plane.alerts.models import AlertDelivery
from control_plane.alerts.service import AlertItem, AlertMessage, notify
from control_plane.api.app import create_app
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from tests.alerts.receivers import HttpReceiver, SmtpSink


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink().running() as sink:
        yield sink


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver().running() as running:
        yield running


@pytest_asyncio.fixture
async def pagerduty() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver(default=202).running() as running:
        yield running


@pytest.fixture
def alert_settings(settings: Settings, smtp_sink: SmtpSink, pagerduty: HttpReceiver) -> Settings:
    return settings.model_copy(
        update={
            "alert_allow_private_targets": True,
            "alert_retry_base_seconds": 1.0,
            "alert_max_attempts": 2,
            "alert_send_timeout_seconds": 2.0,
            "smtp_relay_host": "127.0.0.1",
            "smtp_relay_port": smtp_sink.port,
            "smtp_relay_security": "none",
            "smtp_relay_from": "alerts@mailfleet.test",
            "pagerduty_events_url": f"{pagerduty.url}/v2/enqueue",
        }
    )


@pytest.fixture
def alert_app(alert_settings: Settings, db: Database, vault: Vault) -> FastAPI:
    return create_app(alert_settings, database=db, vault=vault)


@pytest_asyncio.fixture
async def alert_client(alert_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=alert_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailfleet.test") as http:
        yield http


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
