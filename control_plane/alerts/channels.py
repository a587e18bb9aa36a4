"""Alert channels: create, change, delete; their secrets live in Vault only.

Vault path ``alerts/<tenant or fleet>/<channel>`` holds ``url`` (a Slack webhook URL is
itself a credential, and webhook URLs often carry tokens), ``secret`` and ``routing_key``.
The database keeps hints (scheme and host, a key's last four characters).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts.models import PENDING, AlertChannel, AlertDelivery, EscalationPolicy
from control_plane.alerts.owned import list_owned, same_tenant, unique_name
from control_plane.alerts.quiet import QuietHours
from control_plane.alerts.schemas import (
    ChannelCreate,
    ChannelOut,
    ChannelUpdate,
    QuietHoursIn,
    QuietHoursOut,
)
from control_plane.alerts.targets import url_problem
from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.errors import Conflict, InvalidInput
from control_plane.mail.names import idna_address
from control_plane.settings import Settings
from control_plane.vault.client import Vault, secret_path

# What each kind takes (beyond name and quiet hours); the rest must be absent.
FIELDS: dict[str, tuple[str, ...]] = {
    "webhook": ("url", "secret"),
    "slack": ("url",),
    "pagerduty": ("routing_key",),
    "email": ("to",),
    "in_app": (),
}
SECRET_FIELDS = ("url", "secret", "routing_key")


def channel_secret_path(channel: AlertChannel) -> str:
    return secret_path("alerts", channel.tenant_id or "fleet", channel.id)


def _url_hint(url: str) -> str:
    import httpx  # on first use: not with serve (it brings click, rich, pygments)

    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}/…"


def channel_out(channel: AlertChannel) -> ChannelOut:
    config = json.loads(channel.config)
    quiet = json.loads(channel.quiet_hours) if channel.quiet_hours else None
    return ChannelOut(
        id=channel.id,
        tenant_id=channel.tenant_id,
        name=channel.name,
        kind=channel.kind,
        to=config.get("to"),
        url_hint=config.get("url_hint"),
        routing_key_hint=config.get("routing_key_hint"),
        has_secret=channel.has_secret,
        quiet_hours=QuietHoursOut(**quiet) if quiet else None,
        created_at=channel.created_at,
        updated_at=channel.updated_at,
    )


def _quiet_json(quiet: QuietHoursIn | None) -> str | None:
    if quiet is None:
        return None
    hours = QuietHours.from_json(quiet.model_dump())
    return json.dumps(hours.to_json())


def _check_fields(kind: str, given: dict[str, Any], *, creating: bool) -> None:
    allowed = FIELDS[kind]
    for field in ("url", "secret", "routing_key", "to"):
        if given.get(field) is not None and field not in allowed:
            raise InvalidInput(f"a {kind} channel takes no {field}", field=f"body.{field}")
        if creating and field in allowed and given.get(field) is None:
            raise InvalidInput(f"a {kind} channel needs {field}", field=f"body.{field}")


def _config(kind: str, values: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    config = dict(previous)
    if values.get("to") is not None:
        config["to"] = [
            idna_address(address, f"body.to.{i}") for i, address in enumerate(values["to"])
        ]
    if values.get("url") is not None:
        config["url_hint"] = _url_hint(values["url"])
    if values.get("routing_key") is not None:
        config["routing_key_hint"] = "…" + values["routing_key"][-4:]
    return config


def _check_url(values: dict[str, Any], settings: Settings) -> None:
    if values.get("url") is not None and (problem := url_problem(values["url"], settings)):
        raise InvalidInput(f"the URL {problem}", field="body.url")


async def create_channel(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    tenant_id: uuid.UUID | None,
    data: ChannelCreate,
) -> AlertChannel:
    """The row first (its id names the Vault path), then its secrets into Vault, inside the
    caller's transaction: a Vault failure rolls the channel back rather than leave one
    without its secrets."""
    values = data.model_dump()
    _check_fields(data.kind, values, creating=True)
    _check_url(values, settings)
    await unique_name(session, AlertChannel, tenant_id, data.name, None, "channel")
    secret = {k: values[k] for k in SECRET_FIELDS if values.get(k) is not None}
    channel = AlertChannel(
        tenant_id=tenant_id,
        name=data.name,
        kind=data.kind,
        config=json.dumps(_config(data.kind, values, {})),
        quiet_hours=_quiet_json(data.quiet_hours),
        has_secret=bool(secret),
    )
    session.add(channel)
    await session.flush()
    if secret:
        await vault.put(channel_secret_path(channel), secret)
    await session.refresh(channel)
    return channel


async def get_channel(session: AsyncSession, channel_id: uuid.UUID) -> AlertChannel:
    return await get_by_id(session, AlertChannel, channel_id, "alert channel")


async def list_channels(
    session: AsyncSession, tenant_id: uuid.UUID | None = None
) -> list[AlertChannel]:
    return await list_owned(session, AlertChannel, tenant_id)


async def update_channel(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    channel: AlertChannel,
    data: ChannelUpdate,
) -> AlertChannel:
    """Secrets given are merged into the stored ones (a new URL keeps the webhook secret);
    the kind never changes, so the fields it takes do not either."""
    values = data.model_dump(exclude_unset=True)
    _check_fields(channel.kind, values, creating=False)
    _check_url(values, settings)
    if values.get("name") is not None:
        await unique_name(
            session, AlertChannel, channel.tenant_id, values["name"], channel.id, "channel"
        )
        channel.name = values["name"]
    if "quiet_hours" in values:
        channel.quiet_hours = _quiet_json(data.quiet_hours)
    channel.config = json.dumps(_config(channel.kind, values, json.loads(channel.config)))
    changed = {k: values[k] for k in SECRET_FIELDS if values.get(k) is not None}
    channel.updated_at = utcnow()
    await session.flush()
    if changed:
        path = channel_secret_path(channel)
        await vault.put(path, {**(await vault.get(path) or {}), **changed})
        channel.has_secret = True
    await session.refresh(channel)
    return channel


async def delete_channel(session: AsyncSession, vault: Vault, channel: AlertChannel) -> None:
    """Refused while a policy names it; pending deliveries to it fail as 'channel deleted'."""
    policies = await session.scalars(
        select(EscalationPolicy).where(same_tenant(EscalationPolicy.tenant_id, channel.tenant_id))
    )
    for policy in policies:
        if any(str(channel.id) in step["channel_ids"] for step in json.loads(policy.steps)):
            raise Conflict(f"escalation policy {policy.name!r} notifies this channel")
    pending = await session.scalars(
        select(AlertDelivery).where(
            AlertDelivery.channel_id == channel.id,
            AlertDelivery.status.in_(PENDING),
        )
    )
    for delivery in pending:
        delivery.status, delivery.last_error = "failed", "channel deleted"
    await session.delete(channel)
    await session.flush()
    if channel.has_secret:
        await vault.delete(channel_secret_path(channel))
