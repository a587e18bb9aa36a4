"""Join tokens in, short-lived agent certificates out; revocation takes them back.

Tokens work the way Teleport's and kubelet's bootstrap tokens do: random, single use, a TTL
of at most an hour, bound to one server, stored as a SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.enrollment.csr import validate_csr
from control_plane.enrollment.models import JoinToken
from control_plane.errors import Forbidden, Unauthorized
from control_plane.servers.models import AgentCertificate, Server
from control_plane.vault.client import VaultError
from control_plane.vault.pki import AgentPki, IssuedCertificate

log = logging.getLogger(__name__)
TOKEN_PREFIX = "mfjoin_"  # noqa: S105 - a prefix, not a secret


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewJoinToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class Enrolled:
    server_id: uuid.UUID
    certificate: IssuedCertificate


async def create_join_token(session: AsyncSession, server: Server, ttl: timedelta) -> NewJoinToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = utcnow() + ttl
    session.add(
        JoinToken(
            tenant_id=server.tenant_id,
            server_id=server.id,
            token_hash=hash_token(token),
            expires_at=expires_at,
        )
    )
    await session.flush()
    return NewJoinToken(token=token, expires_at=expires_at)


async def record_certificate(
    session: AsyncSession, server: Server, issued: IssuedCertificate
) -> None:
    session.add(
        AgentCertificate(
            serial=issued.serial,
            tenant_id=server.tenant_id,
            server_id=server.id,
            issued_at=utcnow(),
            not_after=issued.not_after,
        )
    )
    server.certificate_serial = issued.serial
    server.certificate_not_after = issued.not_after
    await session.flush()


async def enroll(
    session: AsyncSession,
    pki: AgentPki,
    *,
    token: str,
    csr_pem: bytes,
    claimed_server_id: str,
    agent_version: str,
    hostname: str,
    certificate_ttl: timedelta,
) -> Enrolled:
    """Redeem ``token`` for a certificate. The token is spent only if signing succeeds."""
    csr = validate_csr(csr_pem)
    now = utcnow()
    record = await session.scalar(
        select(JoinToken).where(JoinToken.token_hash == hash_token(token))
    )
    reason = None
    if record is None:
        reason = "unknown token"
    elif record.used_at is not None:
        reason = f"token {record.id} already used at {record.used_at.isoformat()}"
    elif record.expires_at <= now:
        reason = f"token {record.id} expired at {record.expires_at.isoformat()}"
    if reason or record is None:
        log.warning("enrollment refused: %s", reason)
        raise Unauthorized("the join token is invalid, expired or already used")
    if claimed_server_id and claimed_server_id != str(record.server_id):
        log.warning(
            "enrollment refused: agent of server %s presented token %s of server %s",
            claimed_server_id,
            record.id,
            record.server_id,
        )
        raise Forbidden("this join token belongs to another server")
    spent = await session.execute(
        update(JoinToken)
        .where(JoinToken.id == record.id, JoinToken.used_at.is_(None))
        .values(used_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        log.warning("enrollment refused: token %s raced with another use", record.id)
        raise Unauthorized("the join token is invalid, expired or already used")
    server = await session.scalar(select(Server).where(Server.id == record.server_id))
    assert server is not None  # join tokens cascade with their server
    issued = await pki.sign_agent_csr(csr, str(server.id), int(certificate_ttl.total_seconds()))
    await record_certificate(session, server, issued)
    server.agent_state = "enrolled"
    server.revoked_at = None
    server.enrolled_at = now
    server.agent_version = agent_version[:64] or None
    server.hostname = hostname[:255] or None
    log.info(
        "server %s enrolled (certificate %s until %s)", server.id, issued.serial, issued.not_after
    )
    return Enrolled(server_id=server.id, certificate=issued)


async def renew(
    session: AsyncSession,
    pki: AgentPki,
    *,
    server_id: uuid.UUID,
    csr_pem: bytes,
    certificate_ttl: timedelta,
) -> IssuedCertificate:
    """A new certificate for an agent that proved itself with its current one."""
    csr = validate_csr(csr_pem)
    server = await session.scalar(select(Server).where(Server.id == server_id))
    if server is None or server.agent_state == "revoked":
        raise Unauthorized("this agent is revoked")
    issued = await pki.sign_agent_csr(csr, str(server.id), int(certificate_ttl.total_seconds()))
    await record_certificate(session, server, issued)
    log.info(
        "server %s renewed its certificate (%s until %s)",
        server.id,
        issued.serial,
        issued.not_after,
    )
    return issued


async def revoke_agent(session: AsyncSession, server: Server) -> list[str]:
    """Mark the agent and all its certificates revoked; returns the serials to revoke in Vault."""
    now = utcnow()
    server.agent_state = "revoked"
    server.revoked_at = now
    serials = list(
        (
            await session.scalars(
                select(AgentCertificate.serial).where(
                    AgentCertificate.server_id == server.id, AgentCertificate.revoked_at.is_(None)
                )
            )
        ).all()
    )
    await session.execute(
        update(AgentCertificate)
        .where(AgentCertificate.server_id == server.id, AgentCertificate.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    # Outstanding join tokens die with the revocation; re-enrolling needs a new one.
    await session.execute(
        update(JoinToken)
        .where(JoinToken.server_id == server.id, JoinToken.used_at.is_(None))
        .values(expires_at=now)
    )
    await session.flush()
    log.info("server %s agent revoked (%d certificates)", server.id, len(serials))
    return serials


async def revoke_in_vault(pki: AgentPki, serials: list[str]) -> None:
    """Put revoked serials on Vault's CRL too. The database is what the gateway checks, so a
    Vault outage here delays only the CRL, never the revocation itself."""
    for serial in serials:
        try:
            await pki.revoke(serial)
        except VaultError as exc:
            log.warning("could not revoke %s in Vault: %s", serial, exc.detail)


async def admitted(
    session: AsyncSession, server_id: uuid.UUID, serial: str, now: datetime
) -> Server | None:
    """The server, if ``serial`` is a live certificate of its (unrevoked) agent."""
    row = (
        await session.execute(
            select(Server, AgentCertificate)
            .join(AgentCertificate, AgentCertificate.server_id == Server.id)
            .where(Server.id == server_id, AgentCertificate.serial == serial)
        )
    ).first()
    if row is None:
        return None
    server, certificate = row
    if server.agent_state == "revoked" or certificate.revoked_at is not None:
        return None
    if certificate.not_after <= now:
        return None
    return server
