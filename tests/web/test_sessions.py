"""Console sessions and the sign-in limit at the database, on both backends; which proxy
headers count."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from starlette.requests import Request

from control_plane.api_keys.models import ApiKey
from control_plane.api_keys.service import issue_key, revoke_key
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.settings import Settings
from control_plane.tenants.models import Tenant
from control_plane.web import sessions
from control_plane.web.models import LoginFailure, WebSession


async def a_tenant_key(db: Database) -> tuple[uuid.UUID, str]:
    async with db.session() as session:
        tenant = Tenant(name=f"web-{uuid.uuid4().hex[:8]}")
        session.add(tenant)
        await session.flush()
        issued = await issue_key(session, scope="tenant", tenant_id=tenant.id, name="web")
        return issued.record.id, issued.key


async def opened(db: Database, key_id: uuid.UUID, settings: Settings) -> str:
    async with db.session() as session:
        key = await session.get_one(ApiKey, key_id)
        return await sessions.start(session, key, settings, utcnow())


async def test_the_token_is_stored_hashed_and_names_its_session(
    db: Database, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path)
    key_id, _ = await a_tenant_key(db)
    token = await opened(db, key_id, settings)
    async with db.session() as session:
        stored = await session.scalars(
            select(WebSession.token_hash).where(WebSession.api_key_id == key_id)
        )
        assert list(stored) == [sessions.token_hash(token)] != [token]
        signed = await sessions.resolve(session, token, settings, utcnow())
        assert signed is not None and signed.key.id == key_id
        assert await sessions.resolve(session, token + "x", settings, utcnow()) is None
    assert sessions.csrf_token(token) != sessions.csrf_token(sessions.new_token())


async def test_an_idle_session_ends(db: Database, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, web_session_idle_seconds=60)
    key_id, _ = await a_tenant_key(db)
    token = await opened(db, key_id, settings)
    async with db.session() as session:
        assert await sessions.resolve(session, token, settings, utcnow() + timedelta(seconds=50))
    async with db.session() as session:  # 50 s on: seen then, so 100 s on is 50 s idle
        assert await sessions.resolve(session, token, settings, utcnow() + timedelta(seconds=100))
    async with db.session() as session:
        later = utcnow() + timedelta(seconds=200)
        assert await sessions.resolve(session, token, settings, later) is None
    async with db.session() as session:  # and it is gone, not just refused
        assert await sessions.resolve(session, token, settings, utcnow()) is None


async def test_a_revoked_key_ends_its_session(db: Database, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    key_id, _ = await a_tenant_key(db)
    token = await opened(db, key_id, settings)
    async with db.session() as session:
        await revoke_key(session, key_id)
    async with db.session() as session:
        assert await sessions.resolve(session, token, settings, utcnow()) is None
        left = await session.scalars(select(WebSession).where(WebSession.api_key_id == key_id))
        assert list(left) == []


async def test_failed_sign_ins_are_limited_per_address_within_the_window(
    db: Database, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, web_login_max_failures=2, web_login_window_seconds=60)
    address, other = f"192.0.2.{uuid.uuid4().int % 250}", "198.51.100.1"
    now = utcnow()
    async with db.session() as session:
        for seconds in (0, 10):
            at = now + timedelta(seconds=seconds)
            assert await sessions.retry_after(session, address, settings, at) is None
            await sessions.record_failure(session, address, settings, at)
        wait = await sessions.retry_after(session, address, settings, now + timedelta(seconds=20))
        assert wait == 41  # the first failure leaves the window at 60 s
        assert await sessions.retry_after(session, other, settings, now) is None
        later = now + timedelta(seconds=61)  # the first failure has left the window
        assert await sessions.retry_after(session, address, settings, later) is None
        await sessions.record_failure(session, address, settings, later)
        kept = await session.scalars(select(LoginFailure.at).where(LoginFailure.address == address))
        assert sorted(kept) == [now + timedelta(seconds=10), later]  # the old one went


def request(peer: str, headers: dict[str, str], scheme: str = "http") -> Request:
    return Request(
        {
            "type": "http",
            "scheme": scheme,
            "method": "GET",
            "path": "/ui/",
            "server": ("mailfleet.test", 80),
            "client": (peer, 50000),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
    )


def test_forwarded_headers_count_only_from_trusted_proxies(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, trusted_proxies="10.0.0.0/8, 127.0.0.1")
    forwarded = {"X-Forwarded-For": "203.0.113.9, 10.1.2.3", "X-Forwarded-Proto": "https"}
    behind = request("10.0.0.5", forwarded)
    assert sessions.client_address(behind, settings) == "203.0.113.9"
    assert sessions.is_https(behind, settings)
    direct = request("198.51.100.7", forwarded)  # anyone can send the headers
    assert sessions.client_address(direct, settings) == "198.51.100.7"
    assert not sessions.is_https(direct, settings)
    spoofed = request("10.0.0.5", {"X-Forwarded-For": "10.9.9.9"})  # only proxies: the peer
    assert sessions.client_address(spoofed, settings) == "10.0.0.5"
    assert sessions.is_https(request("198.51.100.7", {}, "https"), settings)
