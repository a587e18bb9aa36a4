"""Console sessions: a random token in an HttpOnly, SameSite=Strict cookie (Secure over
HTTPS), kept in the database as its SHA-256 so any replica serves any request.

A session lives while its API key does: a revoked or expired key ends it at its next
request, and so does ``MAILFLEET_WEB_SESSION_IDLE_SECONDS`` without one. The CSRF token is
derived from the session token (HMAC), so it is per session and needs no storage; only the
browser holding the cookie can know it. Failed sign-ins are counted per client address in
the database: past ``MAILFLEET_WEB_LOGIN_MAX_FAILURES`` in the window, sign-in is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from control_plane.api_keys.models import ApiKey
from control_plane.settings import Settings
from control_plane.web.models import LoginFailure, WebSession

COOKIE = "mf_session"
LOGIN_COOKIE = "mf_login_csrf"  # the sign-in form's own CSRF token (no session yet)
# last_seen_at is written at most this often (not on every page view), or a quarter of the
# idle timeout when that is shorter.
SEEN_RESOLUTION = timedelta(seconds=30)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    """The session's CSRF token: an HMAC of its cookie token, so a page can show it and a
    cross-site form cannot know it."""
    return hmac.new(token.encode(), b"mailfleet-console-csrf", hashlib.sha256).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@cache
def _networks(spec: str) -> tuple[Network, ...]:
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


def _trusted(address: str, settings: Settings) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(settings.trusted_proxies))


def _peer(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


def client_address(conn: HTTPConnection, settings: Settings) -> str:
    """The browser's address: the peer's, or behind a trusted proxy the nearest
    X-Forwarded-For entry that is not itself a trusted proxy."""
    address = _peer(conn)
    if not _trusted(address, settings):
        return address
    hops = [h.strip() for h in conn.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, settings):
            return hop[:64]
    return address


def is_https(conn: HTTPConnection, settings: Settings) -> bool:
    """HTTPS as the browser sees it: X-Forwarded-Proto counts only from a trusted proxy."""
    if conn.url.scheme == "https":
        return True
    if not _trusted(_peer(conn), settings):
        return False
    proto = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return proto == "https"


@dataclass(frozen=True)
class Signed:
    """A live session and the key it was opened with."""

    session: WebSession
    key: ApiKey


async def start(session: AsyncSession, key: ApiKey, settings: Settings, now: datetime) -> str:
    """Open a session for ``key``; returns the cookie token (shown to no one else). Sessions
    left idle past the timeout (never signed out) go now, so the table stays small."""
    idle = timedelta(seconds=settings.web_session_idle_seconds)
    await session.execute(delete(WebSession).where(WebSession.last_seen_at < now - idle))
    token = new_token()
    session.add(
        WebSession(
            token_hash=token_hash(token),
            api_key_id=key.id,
            tenant_id=key.tenant_id,
            created_at=now,
            last_seen_at=now,
        )
    )
    await session.flush()
    return token


async def resolve(
    session: AsyncSession, token: str, settings: Settings, now: datetime
) -> Signed | None:
    """The session ``token`` names, if it is still live; an idle one, or one whose key was
    revoked or expired, is deleted."""
    row = (
        await session.execute(
            select(WebSession, ApiKey)
            .join(ApiKey, ApiKey.id == WebSession.api_key_id)
            .where(WebSession.token_hash == token_hash(token))
        )
    ).first()
    if row is None:
        return None
    web, key = row
    idle = timedelta(seconds=settings.web_session_idle_seconds)
    key_dead = key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now)
    if key_dead or now - web.last_seen_at > idle:
        await session.execute(delete(WebSession).where(WebSession.id == web.id))
        return None
    if now - web.last_seen_at >= min(SEEN_RESOLUTION, idle / 4):
        await session.execute(
            update(WebSession).where(WebSession.id == web.id).values(last_seen_at=now)
        )
    return Signed(web, key)


async def end(session: AsyncSession, token: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))


async def switch_tenant(session: AsyncSession, web: WebSession, tenant_id: object) -> None:
    await session.execute(
        update(WebSession).where(WebSession.id == web.id).values(tenant_id=tenant_id)
    )


async def retry_after(
    session: AsyncSession, address: str, settings: Settings, now: datetime
) -> int | None:
    """Seconds until ``address`` may try again, or None while it is under the limit."""
    since = now - timedelta(seconds=settings.web_login_window_seconds)
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(LoginFailure.at)).where(
                LoginFailure.address == address, LoginFailure.at > since
            )
        )
    ).one()
    if count < settings.web_login_max_failures or oldest is None:
        return None
    return max(1, int((oldest - since).total_seconds()) + 1)


async def record_failure(
    session: AsyncSession, address: str, settings: Settings, now: datetime
) -> None:
    """Count a refused sign-in; failures older than the window (any address's) go."""
    since = now - timedelta(seconds=settings.web_login_window_seconds)
    await session.execute(delete(LoginFailure).where(LoginFailure.at <= since))
    session.add(LoginFailure(address=address, at=now))
    await session.flush()
