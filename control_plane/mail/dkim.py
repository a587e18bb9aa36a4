"""DKIM keys: made by the control plane, private halves only in Vault, installed into MailU.

One 2048-bit RSA key per domain and selector, stored at ``dkim/<domain>/<selector>``.
MailU 2024.06 signs every domain of a server with one selector (``DKIM_SELECTOR``), so
selectors belong to the server: ``mf<yyyymm>`` when it was ordered.

Rotation keeps mail verifiable throughout, in three phases per server:

1. *publish*: a key for the new selector is made for every domain and installed beside
   the old one in MailU; DNS publishes both (``published_keys``) while MailU still signs
   with the old selector, for ``publish_lead`` — long enough for the new record to reach
   every resolver;
2. *switch*: MailU is re-rendered with the new ``DKIM_SELECTOR``; the old selector stays
   published for the overlap (mail already in flight or queued elsewhere still verifies);
3. *retire*: the old keys leave MailU, Vault and DNS.

``advance_rotations`` moves servers through 2 and 3; the periodic service runs it.
"""

from __future__ import annotations

import base64
import re
import string
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import service as commands
from control_plane.db.base import utcnow
from control_plane.errors import Conflict, MailFleetError
from control_plane.mail import stack
from control_plane.mail.models import DkimKey, MailDomain
from control_plane.mail.schemas import DkimRole
from control_plane.servers.models import Server
from control_plane.vault.client import Vault, secret_path

KEY_BITS = 2048
COMMAND_SECONDS = 120.0
SELECTOR = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def default_selector(now: datetime) -> str:
    return f"mf{now:%Y%m}"


def key_path(domain: str, selector: str) -> str:
    return secret_path("dkim", domain, selector)


def dns_value(public_key: str) -> str:
    """The TXT record's value for ``<selector>._domainkey.<domain>``."""
    return f"v=DKIM1; k=rsa; p={public_key}"


def role(server: Server, selector: str) -> str:
    """What a selector is on its server now: signing, next, retiring (all published) or
    retired (about to be removed)."""
    if selector == server.dkim_selector:
        return "signing"
    if selector == server.dkim_next_selector:
        return "next"
    if selector == server.dkim_retiring_selector:
        return "retiring"
    return "retired"


def _new_key() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,  # what Mailu itself writes
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {"private_key": private, "public_key": base64.b64encode(public).decode()}


async def add_key(
    session: AsyncSession, vault: Vault, server: Server, domain: MailDomain, selector: str
) -> DkimKey:
    """The domain's key for ``selector`` (made once, race-safe) and the command putting it
    into MailU."""
    stored = await vault.ensure(key_path(domain.name, selector), _new_key)
    key = DkimKey(
        tenant_id=domain.tenant_id,
        domain_id=domain.id,
        selector=selector,
        public_key=stored["public_key"],
    )
    session.add(key)
    await session.flush()
    payload = {
        "domain": domain.name,
        "dkim_selector": selector,
        "secrets_from": {
            "path": key_path(domain.name, selector),
            "fields": {"private_key": "dkim_private_key"},
        },
    }
    command = await commands.queue_system_command(
        session, server, "mailu.domain.ensure", payload, COMMAND_SECONDS
    )
    domain.command_id = command.id
    return key


def live_selectors(server: Server) -> list[str]:
    """The selectors a new domain needs keys for (signing first)."""
    return [s for s in (server.dkim_selector, server.dkim_next_selector) if s]


_PUBLISHED: dict[str, DkimRole] = {"signing": "signing", "next": "next", "retiring": "retiring"}


async def published_keys(
    session: AsyncSession, server: Server, domain: MailDomain
) -> list[tuple[DkimKey, DkimRole]]:
    """The domain's keys with their roles, those DNS must publish (signing first)."""
    keys = (await session.scalars(select(DkimKey).where(DkimKey.domain_id == domain.id))).all()
    roles = [(key, role(server, key.selector)) for key in keys]
    published = [(key, _PUBLISHED[r]) for key, r in roles if r in _PUBLISHED]
    return sorted(published, key=lambda kr: list(_PUBLISHED).index(kr[1]))


async def start_rotation(
    session: AsyncSession,
    vault: Vault,
    server: Server,
    selector: str | None,
    publish_lead: timedelta,
    overlap: timedelta,
) -> Server:
    """Phase 1: keys for the new selector everywhere; the switch is due after the lead."""
    if server.mail_stack != "mailu" or server.dkim_selector is None:
        raise Conflict(f"server {server.id} runs no mail stack")
    if server.state != "ready":
        raise Conflict(f"server {server.id} is {server.state}; rotate once it is ready")
    if server.dkim_next_selector or server.dkim_retiring_selector:
        raise Conflict(
            f"a DKIM rotation of server {server.id} is in progress "
            f"(next: {server.dkim_next_selector}, retiring: {server.dkim_retiring_selector})"
        )
    chosen = selector or _fresh_selector(server.dkim_selector, utcnow())
    if chosen == server.dkim_selector:
        raise Conflict(f"the server already signs with {chosen}", field="body.selector")
    server.dkim_next_selector = chosen
    server.dkim_switch_at = utcnow() + publish_lead
    server.dkim_retire_at = server.dkim_switch_at + overlap
    for domain in await _domains_of(session, server):
        await add_key(session, vault, server, domain, chosen)
    await session.flush()
    return server


def _fresh_selector(current: str, now: datetime) -> str:
    base = default_selector(now)
    for suffix in ("", *string.ascii_lowercase):
        candidate = f"{base}{suffix}"
        if candidate != current:
            return candidate
    raise MailFleetError("no free selector")


async def _domains_of(session: AsyncSession, server: Server) -> list[MailDomain]:
    stmt = select(MailDomain).where(MailDomain.server_id == server.id)
    return list((await session.scalars(stmt)).all())


async def advance_rotations(session: AsyncSession, vault: Vault) -> int:
    """Switch servers whose lead is over, retire selectors whose overlap is over; returns
    how many servers moved. Rows are claimed ``FOR UPDATE SKIP LOCKED`` so replicas never
    advance the same server twice."""
    now = utcnow()
    due = (
        await session.scalars(
            select(Server)
            .where(
                or_(
                    Server.dkim_switch_at <= now,
                    (Server.dkim_retire_at <= now) & Server.dkim_next_selector.is_(None),
                )
            )
            .with_for_update(skip_locked=True)
        )
    ).all()
    for server in due:
        if server.dkim_next_selector is not None:
            await _switch(session, vault, server)
        else:
            await _retire(session, vault, server)
    await session.flush()
    return len(due)


async def _switch(session: AsyncSession, vault: Vault, server: Server) -> None:
    """Phase 2: MailU signs with the next selector; the old one stays published."""
    assert server.dkim_next_selector is not None
    server.dkim_retiring_selector = server.dkim_selector
    server.dkim_selector = server.dkim_next_selector
    server.dkim_next_selector = None
    server.dkim_switch_at = None
    secrets_path = await stack.ensure_mailu_secrets(vault, server)
    await commands.queue_system_command(
        session,
        server,
        "mailu.install",
        stack.install_payload(server, secrets_path),
        stack.INSTALL_SECONDS,
    )


async def _retire(session: AsyncSession, vault: Vault, server: Server) -> None:
    """Phase 3: the old selector's keys leave MailU, Vault and (by their absence) DNS."""
    selector = server.dkim_retiring_selector
    server.dkim_retiring_selector = None
    server.dkim_retire_at = None
    if selector is None:
        return
    domains = await _domains_of(session, server)
    for domain in domains:
        await vault.delete(key_path(domain.name, selector))
    ids = [d.id for d in domains]
    for key in (
        await session.scalars(
            select(DkimKey).where(DkimKey.domain_id.in_(ids), DkimKey.selector == selector)
        )
    ).all():
        await session.delete(key)
    if domains:
        await commands.queue_system_command(
            session,
            server,
            "mailu.dkim.remove",
            {"selector": selector, "domains": [d.name for d in domains]},
            COMMAND_SECONDS,
        )
