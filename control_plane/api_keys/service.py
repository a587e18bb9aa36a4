"""Issuing, checking and revoking API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api_keys.cache import VerifiedKey, keys
from control_plane.api_keys.models import ApiKey
from control_plane.api_keys.tokens import Scope, generate_key, hash_key, key_hint, key_scope
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.errors import InvalidInput
from control_plane.tenants.service import get_tenant

# last_used_at is a hint for humans; writing it on every request would make reads write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class IssuedKey:
    record: ApiKey
    key: str


async def issue_key(
    session: AsyncSession,
    *,
    scope: Scope,
    tenant_id: uuid.UUID | None,
    name: str,
    created_by: uuid.UUID | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    if scope == "admin" and tenant_id is not None:
        raise InvalidInput("an admin key belongs to no tenant", field="body.tenant_id")
    if scope == "tenant":
        if tenant_id is None:
            raise InvalidInput("a tenant key needs tenant_id", field="body.tenant_id")
        await get_tenant(session, tenant_id, field="body.tenant_id")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("expires_at must be in the future", field="body.expires_at")
    key = generate_key(scope)
    record = ApiKey(
        scope=scope,
        tenant_id=tenant_id,
        name=name,
        key_hash=hash_key(key),
        hint=key_hint(key),
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(record)
    await session.flush()
    return IssuedKey(record=record, key=key)


async def verify_key(session: AsyncSession, key: str) -> ApiKey | None:
    """The live key record for ``key``, or None; refreshes ``last_used_at`` now and then."""
    if key_scope(key) is None:
        return None
    record = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    now = utcnow()
    if record is None or record.revoked_at is not None:
        return None
    if record.expires_at is not None and record.expires_at <= now:
        return None
    if record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION:
        await session.execute(update(ApiKey).where(ApiKey.id == record.id).values(last_used_at=now))
        record.last_used_at = now
    return record


async def verify_key_cached(db: Database, key: str, seconds: float) -> VerifiedKey | None:
    """``verify_key`` for API requests: a key verified less than ``seconds`` ago is taken
    from memory (see ``control_plane.api_keys.cache``) without a database round trip."""
    if key_scope(key) is None:
        return None
    digest = hash_key(key)
    found = keys.get(digest) if seconds > 0 else None
    if found is not None:
        return found
    async with db.session() as session:
        record = await verify_key(session, key)
    if record is None:
        return None
    found = VerifiedKey.of(record)
    keys.put(digest, found, seconds)
    return found


async def get_key(session: AsyncSession, key_id: uuid.UUID) -> ApiKey:
    return await get_by_id(session, ApiKey, key_id, "api key")


async def live_admin_key(session: AsyncSession) -> ApiKey | None:
    """An admin key that still works (not revoked, not expired), if there is one."""
    now = utcnow()
    return await session.scalar(
        select(ApiKey)
        .where(ApiKey.scope == "admin", ApiKey.revoked_at.is_(None))
        .where((ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now))
        .order_by(ApiKey.created_at)
        .limit(1)
    )


async def list_keys(
    session: AsyncSession,
    tenant_id: uuid.UUID | None,
    include_revoked: bool,
    after: uuid.UUID | None,
    limit: int,
) -> Page[ApiKey]:
    stmt = select(ApiKey)
    if tenant_id is not None:
        stmt = stmt.where(ApiKey.tenant_id == tenant_id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return await paginate(session, stmt, ApiKey.id, after, limit)


async def revoke_key(session: AsyncSession, key_id: uuid.UUID) -> ApiKey:
    """Revoke a key; revoking an already revoked key keeps the first revocation time."""
    record = await get_key(session, key_id)
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        await session.flush()
    keys.forget(record.key_hash)
    return record
