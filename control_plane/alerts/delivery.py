"""The delivery job: claim due deliveries, send them outside any transaction, record.

A claim is a lease (``lease_until``) taken ``FOR UPDATE SKIP LOCKED`` in a short
transaction, so two replicas never send the same delivery and a sender that dies is taken
over once its lease lapses. The send itself holds no database transaction open. Each
attempt is recorded; failures are retried with exponential backoff up to
``MAILFLEET_ALERT_MAX_ATTEMPTS``. When every channel of a notification has finally failed,
admins get an in-app notice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from control_plane.alerts import senders
from control_plane.alerts.channels import channel_secret_path
from control_plane.alerts.models import (
    PENDING,
    AlertChannel,
    AlertDelivery,
    AlertDeliveryAttempt,
    AlertNotification,
)
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.settings import Settings
from control_plane.vault.client import Vault, VaultError, secret_path

log = logging.getLogger(__name__)
RELAY_SECRET = secret_path("alerts", "smtp-relay")


@dataclass(frozen=True)
class Claimed:
    """What one send needs, read while claiming (the send runs after the claim commits)."""

    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    channel_id: uuid.UUID
    kind: str
    name: str
    config: dict[str, Any]
    secret_path: str | None
    payload: dict[str, Any]


async def claim(
    session: AsyncSession,
    settings: Settings,
    now: datetime,
    *,
    delivery_ids: Sequence[uuid.UUID] | None = None,
) -> list[Claimed]:
    """Lease up to a batch of due deliveries (or just ``delivery_ids``, when due)."""
    stmt = (
        select(AlertDelivery)
        .where(
            AlertDelivery.status.in_(PENDING),
            AlertDelivery.next_attempt_at <= now,
            or_(AlertDelivery.lease_until.is_(None), AlertDelivery.lease_until < now),
        )
        .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id)
        .limit(settings.alert_delivery_batch)
        .with_for_update(skip_locked=True)
    )
    if delivery_ids is not None:
        stmt = stmt.where(AlertDelivery.id.in_(delivery_ids))
    claimed: list[Claimed] = []
    for delivery in (await session.scalars(stmt)).all():
        channel = await session.get(AlertChannel, delivery.channel_id)
        notification = await session.get(AlertNotification, delivery.notification_id)
        if channel is None or notification is None:
            delivery.status, delivery.last_error = "failed", "channel deleted"
            continue
        delivery.attempts += 1
        delivery.lease_until = now + timedelta(seconds=settings.alert_lease_seconds)
        payload = json.loads(notification.body)
        payload["notification_id"] = str(notification.id)
        payload["delivery_id"] = str(delivery.id)
        claimed.append(
            Claimed(
                delivery_id=delivery.id,
                notification_id=notification.id,
                channel_id=channel.id,
                kind=channel.kind,
                name=channel.name,
                config=json.loads(channel.config),
                secret_path=channel_secret_path(channel) if channel.has_secret else None,
                payload=payload,
            )
        )
    await session.flush()
    return claimed


async def delivery_ids(session: AsyncSession, notification_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(AlertDelivery.id).where(AlertDelivery.notification_id == notification_id)
    )
    return list(rows.all())


async def relay_password(vault: Vault) -> str | None:
    stored = await vault.get(RELAY_SECRET)
    return stored.get("password") if stored else None


async def send_claimed(
    item: Claimed, vault: Vault, settings: Settings
) -> tuple[senders.Outcome, int]:
    """Send once; the outcome and how long it took (ms). Never raises."""
    started = time.monotonic()
    secret: dict[str, str] = {}
    try:
        secret = (await vault.get(item.secret_path) or {}) if item.secret_path else {}
        password = await relay_password(vault) if item.kind == "email" else None
        target = senders.Target(item.kind, item.name, item.config, secret)
        outcome = await senders.send(target, item.payload, settings, password)
    except VaultError as exc:
        outcome = senders.Outcome(ok=False, error=exc.detail, retry=True)
    except KeyError as exc:
        outcome = senders.Outcome(ok=False, error=f"channel secret lacks {exc}")
    except Exception as exc:  # a sender bug must not leave the lease to lapse silently
        # The frames, and the message with the channel's secrets blanked: an exception's
        # words may quote a webhook URL, which is itself a credential.
        log.error(
            "alert delivery %s failed unexpectedly: %s\n%s",
            item.delivery_id,
            redact(f"{type(exc).__name__}: {exc}", secret),
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        outcome = senders.Outcome(ok=False, error=f"internal error: {type(exc).__name__}")
    if outcome.error:  # kept in the delivery log, which the API shows
        outcome = replace(outcome, error=redact(outcome.error, secret))
    return outcome, int((time.monotonic() - started) * 1000)


def redact(text: str, secret: dict[str, str]) -> str:
    """``text`` with every secret value of the channel (URL, key, token) blanked."""
    for value in sorted(secret.values(), key=len, reverse=True):
        if isinstance(value, str) and len(value) >= 8:
            text = text.replace(value, "[secret]")
    return text


def backoff(settings: Settings, attempts: int) -> timedelta:
    """The wait before the next attempt: doubling from the base, so a receiver that is down
    is not hammered while it comes back."""
    return timedelta(seconds=settings.alert_retry_base_seconds * 2 ** max(attempts - 1, 0))


async def record(
    session: AsyncSession,
    item: Claimed,
    outcome: senders.Outcome,
    duration_ms: int,
    settings: Settings,
    now: datetime,
) -> AlertDelivery | None:
    """Store one attempt's result and the delivery's next state."""
    # The notification row first: deliveries of one notification finishing at once are
    # recorded one after the other, so exactly one of them sees that all have failed.
    notification = await session.scalar(
        select(AlertNotification)
        .where(AlertNotification.id == item.notification_id)
        .with_for_update()
    )
    delivery = await session.get(AlertDelivery, item.delivery_id)
    if delivery is None or notification is None:
        return None
    session.add(
        AlertDeliveryAttempt(
            tenant_id=delivery.tenant_id,
            delivery_id=delivery.id,
            at=now,
            ok=outcome.ok,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=duration_ms,
        )
    )
    delivery.lease_until = None
    delivery.last_status_code = outcome.status_code
    if delivery.status not in PENDING:
        pass  # settled meanwhile (the channel was deleted): keep that
    elif outcome.ok:
        delivery.status, delivery.delivered_at, delivery.last_error = "sent", now, None
    elif outcome.retry and delivery.attempts < settings.alert_max_attempts:
        delivery.status, delivery.last_error = "retrying", outcome.error
        delivery.next_attempt_at = now + backoff(settings, delivery.attempts)
    else:
        delivery.status, delivery.last_error = "failed", outcome.error
        await session.flush()
        await _all_failed(session, notification, now)
    await session.flush()
    return delivery


async def _all_failed(
    session: AsyncSession, notification: AlertNotification, now: datetime
) -> None:
    """Nobody was told: tell the admins in-app (once per notification)."""
    if notification.failed_at is not None or notification.event == "test":
        return
    deliveries = (
        await session.scalars(
            select(AlertDelivery).where(AlertDelivery.notification_id == notification.id)
        )
    ).all()
    if any(d.status in (*PENDING, "sent") for d in deliveries):
        return
    failed = [d for d in deliveries if d.status == "failed"]
    if not failed:
        return
    notification.failed_at = now
    body = {
        "event": "delivery_failed",
        "notification_id": str(notification.id),
        "tenant_id": str(notification.tenant_id) if notification.tenant_id else None,
        "step": notification.step,
        "title": notification.title,
        "failures": [
            {"channel_id": str(d.channel_id), "channel_name": d.channel_name,
             "kind": d.kind, "error": d.last_error}
            for d in failed
        ],
    }  # fmt: skip
    step = f" (step {notification.step})" if notification.step is not None else ""
    session.add(
        AlertNotification(
            tenant_id=None,
            created_at=now,
            event="delivery_failed",
            dedup_key=f"delivery-failed:{notification.id}",
            title=f"Every channel failed{step}: {notification.title}"[:500],
            severity="critical",
            body=json.dumps(body),
            step=notification.step,
            in_app=True,
        )
    )


async def deliver_due(
    db: Database,
    vault: Vault,
    settings: Settings,
    *,
    now: datetime | None = None,
    delivery_ids: Sequence[uuid.UUID] | None = None,
) -> list[AlertDelivery]:
    """Claim, send and record, start to end (the test route; tests with a fixed clock)."""
    at = now or utcnow()
    claimed = await db.transact(
        lambda session: claim(session, settings, at, delivery_ids=delivery_ids)
    )
    results = await asyncio.gather(*(send_claimed(item, vault, settings) for item in claimed))
    recorded: list[AlertDelivery] = []
    for item, (outcome, took) in zip(claimed, results, strict=True):
        # Bind the loop values now: the closure runs inside transact.
        async def write(
            session: AsyncSession,
            item: Claimed = item,
            outcome: senders.Outcome = outcome,
            took: int = took,
        ) -> AlertDelivery | None:
            return await record(session, item, outcome, took, settings, now or utcnow())

        delivery = await db.transact(write)
        if delivery is not None:
            recorded.append(delivery)
    return recorded


async def next_due(session: AsyncSession) -> datetime | None:
    """When the next retry (or a lapsing lease) falls due, so the runner wakes then."""
    now = utcnow()
    retry = await session.scalar(
        select(func.min(AlertDelivery.next_attempt_at)).where(
            AlertDelivery.status.in_(PENDING), AlertDelivery.next_attempt_at > now
        )
    )
    lease = await session.scalar(
        select(func.min(AlertDelivery.lease_until)).where(
            AlertDelivery.status.in_(PENDING), AlertDelivery.lease_until > now
        )
    )
    found = [t for t in (retry, lease) if t is not None]
    return min(found) if found else None


class DeliveryJob:
    """The periodic job: claims in the job's transaction, sends once it has committed."""

    def __init__(self, db: Database, vault: Vault, settings: Settings) -> None:
        self.db, self.vault, self.settings = db, vault, settings
        self.running: set[asyncio.Task[None]] = set()

    async def __call__(self, session: AsyncSession) -> int:
        claimed = await claim(session, self.settings, utcnow())
        if claimed:
            loop = asyncio.get_running_loop()

            def start(_: Session) -> None:
                task = loop.create_task(self._send_all(claimed))
                self.running.add(task)
                task.add_done_callback(self.running.discard)

            event.listen(session.sync_session, "after_commit", start, once=True)
        return len(claimed)

    async def _send_all(self, claimed: list[Claimed]) -> None:
        await asyncio.gather(*(self._send(item) for item in claimed))

    async def _send(self, item: Claimed) -> None:
        outcome, took = await send_claimed(item, self.vault, self.settings)
        try:
            await self.db.transact(
                lambda session: record(session, item, outcome, took, self.settings, utcnow())
            )
        except Exception:
            log.exception("recording delivery %s failed; its lease lapses", item.delivery_id)

    async def wait(self) -> None:
        """Until the sends started so far are recorded."""
        while self.running:
            await asyncio.gather(*self.running, return_exceptions=True)


def delivery_job(db: Database, vault: Vault, settings: Settings) -> DeliveryJob:
    return DeliveryJob(db, vault, settings)
