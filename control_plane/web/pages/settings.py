"""Settings: alert channels and escalation policies, API keys, the audit log. Each change
goes through the service (and the rules) its API route uses, audited as that route.

A tenant key makes channels, policies and tenant keys for its own tenant; an admin makes
them for the tenant it switched to, or (none chosen) the fleet's own channels and policies
and admin keys, exactly as the API lets each key. Secrets are never shown again after
creation: channels show hints, an API key is on the page that created it only.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.status import HTTP_303_SEE_OTHER

from control_plane.alerts import channels, policies
from control_plane.alerts.schemas import ChannelCreate, DeliveryOut, PolicyCreate
from control_plane.alerts.service import send_test
from control_plane.api_keys import service as api_keys
from control_plane.api_keys.models import ApiKey
from control_plane.api_keys.routes import issue_for
from control_plane.api_keys.schemas import ApiKeyCreate, ApiKeyCreated
from control_plane.audit import service as audit
from control_plane.errors import MailFleetError
from control_plane.tenants.service import tenant_names
from control_plane.web import forms
from control_plane.web.console import Console, SignedIn, acting_as, not_found, render, require_csrf
from control_plane.web.pages import NavLink

router = APIRouter(include_in_schema=False)
NAV = (NavLink("Settings", "/ui/settings", 60),)
PAGE_SIZE = 50
SETTINGS = "/ui/settings"
KEYS = "/ui/settings/api-keys"
CHANNELS = "/api/v1/alert-channels"
CHANNEL = f"{CHANNELS}/{{channel_id}}"
POLICIES = "/api/v1/escalation-policies"
Csrf = Annotated[str | None, Form()]
Text = Annotated[str, Form(max_length=2000)]


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=HTTP_303_SEE_OTHER)


# Alert channels and escalation policies


async def _alerts_page(
    request: Request, console: Console, status_code: int = 200, tested: DeliveryOut | None = None
) -> HTMLResponse:
    async with console.ctx.session() as session:
        found = await channels.list_channels(session, console.tenant_id)
        made = await policies.list_policies(session, console.tenant_id)
        tenants = {c.tenant_id for c in found} | {p.tenant_id for p in made}
        owners = await tenant_names(session, {t for t in tenants if t is not None})
    outs = [channels.channel_out(c) for c in found]
    return render(
        request, "settings.html", status_code, console=console, tab="alerts",
        channels=outs, names={c.id: c.name for c in outs},
        policies=[policies.policy_out(p) for p in made], owners=owners, tested=tested,
    )  # fmt: skip


@router.get(SETTINGS)
async def alert_settings(request: Request, console: SignedIn) -> HTMLResponse:
    """The channels notifications go to and the policies that escalate through them."""
    return await _alerts_page(request, console)


@router.post(f"{SETTINGS}/alert-channels")
async def create_channel(
    request: Request,
    console: SignedIn,
    csrf_token: Csrf = None,
    name: Text = "",
    kind: Annotated[str, Form(max_length=16)] = "",
    url: Text = "",
    secret: Text = "",
    to: Text = "",
    routing_key: Text = "",
) -> RedirectResponse:
    """As ``POST /api/v1/alert-channels``: the URL, secret and routing key go to Vault."""
    changing = forms.changing(request, console, csrf_token, "POST", CHANNELS, 201)
    async with changing as (ctx, session):
        recipients = [a.strip() for a in to.replace("\n", ",").split(",") if a.strip()]
        data = forms.parse(
            ChannelCreate, name=name, kind=kind, url=forms.blank_to_none(url),
            secret=forms.blank_to_none(secret), to=recipients or None,
            routing_key=forms.blank_to_none(routing_key),
        )  # fmt: skip
        await channels.create_channel(session, ctx.vault, ctx.settings, console.tenant_id, data)
    return _see(SETTINGS)


@router.post(f"{SETTINGS}/alert-channels/{{channel_id}}/delete")
async def delete_channel(
    request: Request, console: SignedIn, channel_id: uuid.UUID, csrf_token: Csrf = None
) -> RedirectResponse:
    """As ``DELETE /api/v1/alert-channels/{id}`` (refused while a policy notifies it)."""
    changing = forms.changing(request, console, csrf_token, "DELETE", CHANNEL, 204)
    async with changing as (ctx, session):
        channel = await channels.get_channel(session, channel_id)
        await channels.delete_channel(session, ctx.vault, channel)
    return _see(SETTINGS)


@router.post(f"{SETTINGS}/alert-channels/{{channel_id}}/test")
async def send_channel_test(
    request: Request, console: SignedIn, channel_id: uuid.UUID, csrf_token: Csrf = None
) -> HTMLResponse:
    """As ``POST /api/v1/alert-channels/{id}/test``: send now, show how it went."""
    ctx = acting_as(request, console, "POST", f"{CHANNEL}/test", 200)
    require_csrf(request, csrf_token, console.csrf)
    try:
        tested = await send_test(
            ctx.session, ctx.db, ctx.vault, ctx.settings, channel_id, ctx.principal.key_name
        )
    except MailFleetError as exc:
        raise not_found(exc) from None
    return await _alerts_page(request, console, tested=tested)


@router.post(f"{SETTINGS}/escalation-policies")
async def create_policy(
    request: Request,
    console: SignedIn,
    csrf_token: Csrf = None,
    name: Text = "",
    channel_ids: Annotated[list[str] | None, Form()] = None,
    wait_minutes: Annotated[str, Form(max_length=20)] = "0",
    repeat: Annotated[str, Form(max_length=20)] = "0",
) -> RedirectResponse:
    """As ``POST /api/v1/escalation-policies``, with one step (the API takes more)."""
    changing = forms.changing(request, console, csrf_token, "POST", POLICIES, 201)
    async with changing as (_, session):
        step = {"channel_ids": channel_ids or [], "wait_minutes": wait_minutes or 0}
        data = forms.parse(PolicyCreate, name=name, steps=[step], repeat=repeat or 0)
        await policies.create_policy(session, console.tenant_id, data)
    return _see(SETTINGS)


@router.post(f"{SETTINGS}/escalation-policies/{{policy_id}}/delete")
async def delete_policy(
    request: Request, console: SignedIn, policy_id: uuid.UUID, csrf_token: Csrf = None
) -> RedirectResponse:
    """As ``DELETE /api/v1/escalation-policies/{id}``."""
    changing = forms.changing(
        request, console, csrf_token, "DELETE", f"{POLICIES}/{{policy_id}}", 204
    )
    async with changing as (_, session):
        await policies.delete_policy(session, await policies.get_policy(session, policy_id))
    return _see(SETTINGS)


# API keys


async def _keys_page(
    request: Request,
    console: Console,
    *,
    revoked: bool = False,
    after: uuid.UUID | None = None,
    created: ApiKeyCreated | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    async with console.ctx.session() as session:
        page = await api_keys.list_keys(session, console.tenant_id, revoked, after, PAGE_SIZE)
        owners = await tenant_names(session, {k.tenant_id for k in page.items if k.tenant_id})
    return render(
        request, "settings_keys.html", status_code, console=console, tab="keys",
        keys=page.items, next_after=page.next_after, revoked=revoked, owners=owners,
        created=created,
    )  # fmt: skip


@router.get(KEYS)
async def keys(
    request: Request, console: SignedIn, revoked: bool = False, after: uuid.UUID | None = None
) -> HTMLResponse:
    """The keys by hint, scope, expiry and last use; never the keys themselves."""
    return await _keys_page(request, console, revoked=revoked, after=after)


@router.post(KEYS)
async def create_key(
    request: Request,
    console: SignedIn,
    csrf_token: Csrf = None,
    name: Text = "",
    scope: Annotated[str, Form(max_length=16)] = "tenant",
    expires_on: Annotated[str, Form(max_length=10)] = "",
) -> HTMLResponse:
    """As ``POST /api/v1/api-keys``: the new key is on this answer and nowhere after."""
    ctx = acting_as(request, console, "POST", "/api/v1/api-keys", 201)
    require_csrf(request, csrf_token, console.csrf)
    expires = f"{expires_on}T00:00:00Z" if expires_on else None
    data = forms.parse(
        ApiKeyCreate, name=name or "unnamed", scope=scope, expires_at=expires,
        tenant_id=console.tenant_id if scope == "tenant" else None,
    )  # fmt: skip
    try:
        created = await issue_for(ctx, data)
    except MailFleetError as exc:
        raise not_found(exc) from None
    response = await _keys_page(request, console, created=created, status_code=201)
    response.headers["Cache-Control"] = "no-store"
    return response


async def _visible_key(console: Console, api_key_id: uuid.UUID) -> ApiKey:
    try:
        async with console.ctx.session() as session:
            return await api_keys.get_key(session, api_key_id)
    except MailFleetError as exc:
        raise not_found(exc) from None


@router.get(f"{KEYS}/{{api_key_id}}/revoke")
async def confirm_revoke(
    request: Request, console: SignedIn, api_key_id: uuid.UUID
) -> HTMLResponse:
    """Asks first: a revoked key stops working at once, for every session signed in with it."""
    key = await _visible_key(console, api_key_id)
    own = key.id == console.signed.key.id
    return render(request, "settings_revoke.html", console=console, key=key, own=own)


@router.post(f"{KEYS}/{{api_key_id}}/revoke")
async def revoke_key(
    request: Request, console: SignedIn, api_key_id: uuid.UUID, csrf_token: Csrf = None
) -> RedirectResponse:
    """As ``DELETE /api/v1/api-keys/{id}``."""
    changing = forms.changing(
        request, console, csrf_token, "DELETE", "/api/v1/api-keys/{api_key_id}", 204
    )
    async with changing as (_, session):
        await api_keys.revoke_key(session, api_key_id)
    return _see(KEYS)


# The audit log


@router.get(f"{SETTINGS}/audit")
async def audit_log(
    request: Request,
    console: SignedIn,
    object_type: Annotated[str | None, Query(max_length=64)] = None,
    after: uuid.UUID | None = None,
) -> HTMLResponse:
    """Every recorded change, newest first (a tenant's own; an admin's chosen tenant's)."""
    object_type = (object_type or "").strip() or None
    async with console.ctx.session() as session:
        page = await audit.list_events(
            session, object_type=object_type, object_id=None, key_id=None,
            tenant_id=console.tenant_id, since=None, until=None, after=after,
            limit=PAGE_SIZE, newest_first=True,
        )  # fmt: skip
    return render(
        request, "settings_audit.html", console=console, tab="audit", events=page.items,
        next_after=page.next_after, object_type=object_type,
    )  # fmt: skip
