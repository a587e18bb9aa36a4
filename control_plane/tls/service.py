"""Mail-host certificates: issue or renew by ACME DNS-01, keep in Vault, deliver to MailU.

The key pair lives at ``vps/<tenant>/<server>/tls`` (so it goes with the server's other
secrets, and the gateway may hand it to that server's agent). An issuance takes seconds
to minutes, so it never runs inside a database transaction: a claim (``renewing_until``)
is taken in a short one, the ACME exchange runs outside, the outcome is written in another.

A failed attempt backs off for that certificate alone (``tls_retry_base_seconds``, doubling per
failure in a row, at most ``tls_retry_max_seconds``), so one host that keeps failing cannot
take every round of the renewal job from the others; until it succeeds it is a
``tls.renewal_failed`` finding with the CA's (or the DNS provider's) words.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import service as commands
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.dns import checker, checks, desired, publish
from control_plane.dns import service as dns_service
from control_plane.dns.models import DnsProvider, DomainDns
from control_plane.dns.record import Record
from control_plane.errors import Conflict, MailFleetError, NotFound
from control_plane.schemas import Finding
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.tls import acme_issue
from control_plane.tls.models import Certificate
from control_plane.vault.client import Vault, VaultError, secret_path, server_secret_path

log = logging.getLogger(__name__)
CLAIM = timedelta(minutes=15)
INSTALL_SECONDS = 300.0
CRITICAL_WITHIN = timedelta(days=7)  # a failing renewal this close to expiry is critical


class NoZone(Conflict):
    """No DNS provider publishes the zone of the mail host: no DNS-01 is possible."""


def tls_path(server: Server) -> str:
    return server_secret_path(server.tenant_id, server.id, "tls")


async def zone_for(session: AsyncSession, tenant_id: uuid.UUID, name: str) -> DomainDns:
    """The published zone ``name`` lies in (the longest match), among the tenant's."""
    rows = (await session.scalars(select(DomainDns).where(DomainDns.tenant_id == tenant_id))).all()
    inside = [r for r in rows if name == r.zone or name.endswith("." + r.zone)]
    if not name or not inside:
        raise NoZone(
            f"no DNS provider publishes the zone of {name or 'the server (it has no mail host)'}:"
            " set one on a domain of that zone (PUT /api/v1/domains/{id}/dns) first"
        )
    return max(inside, key=lambda r: len(r.zone))


@dataclass
class _Zone:
    """Where one certificate name's challenge is published."""

    row: DomainDns
    provider: DnsProvider
    target: Any = None
    owned: publish.Owned = field(default_factory=dict)


async def _zones(session: AsyncSession, server: Server) -> dict[str, _Zone]:
    """Each name's zone: the mail host and, for domains with MTA-STS, ``mta-sts.<domain>``.
    Raises NoZone when one has none (then no certificate is possible: the ``tls`` step moves
    on, and the renewal job waits until one has)."""
    names = [
        server.mail_hostname or "",
        *sorted(await dns_service.mta_sts_policies(session, server)),
    ]
    zones = {}
    for name in names:
        row = await zone_for(session, server.tenant_id, name)
        provider = await session.get(DnsProvider, row.provider_id)
        assert provider is not None
        zones[name] = _Zone(row, provider)
    return zones


async def _claim(
    db: Database, settings: Settings, server_id: uuid.UUID
) -> tuple[Server, dict[str, _Zone]]:
    """Claim the server's certificate (one issuance at a time) and find each name's zone."""

    async def take(session: AsyncSession) -> tuple[Server, dict[str, _Zone]] | NoZone:
        server = await session.get(Server, server_id)
        if server is None:
            raise NotFound("server", server_id)
        cert = await session.scalar(
            select(Certificate).where(Certificate.server_id == server.id).with_for_update()
        )
        now = utcnow()
        if cert is not None and cert.renewing_until is not None and cert.renewing_until > now:
            raise Conflict(f"a certificate for {server.mail_hostname} is being issued already")
        try:
            zones = await _zones(session, server)
        except NoZone as exc:
            if cert is not None:  # a renewal that cannot start has failed: it backs off too
                _record_failure(cert, exc.detail, settings, now)
            return exc  # raised once the failure is committed
        if cert is None:
            cert = Certificate(tenant_id=server.tenant_id, server_id=server.id)
            session.add(cert)
        cert.renewing_until = now + CLAIM
        return server, zones

    taken = await db.transact(take)
    if isinstance(taken, NoZone):
        raise taken
    return taken


async def _authoritative(
    provider: DnsProvider, zone: str, config: Settings
) -> list[tuple[str, int]]:
    """The servers that must show a challenge before the CA is asked: those the provider's
    settings list (``nameservers``, host:port), else the zone's NS as the configured
    resolver finds them (an RFC 2136 primary without a list: the primary itself). A lookup
    that fails is an ``AcmeError`` with the resolver's words: the issuance is retried."""
    settings = json.loads(provider.settings)
    listed = settings.get("nameservers") or []
    if listed:
        return [
            (str(item).rpartition(":")[0], int(str(item).rpartition(":")[2])) for item in listed
        ]
    if provider.kind == "rfc2136":
        return [(str(settings["host"]), int(settings.get("port", 53)))]
    configured = checks.resolvers(config)
    try:
        servers = await checker.find_authoritative(
            zone, configured[0] if configured else None,
            timeout=config.dns_lookup_timeout_seconds,
        )  # fmt: skip
    except checker.AuthoritativeLookupError as exc:
        raise acme_issue.AcmeError(f"the nameservers of {zone} could not be found: {exc}") from None
    return [(ns.address, ns.port) for ns in servers]


async def issue_for_server(
    db: Database, vault: Vault, settings: Settings, server_id: uuid.UUID
) -> Certificate:
    """Issue (or renew) the server's certificate now; the agent gets it next."""
    server, zones = await _claim(db, settings, server_id)
    for zone in zones.values():
        secret = await vault.get(secret_path("dns", zone.provider.tenant_id, zone.provider.id))
        zone.target = publish.provider(
            str(zone.provider.id),
            zone.provider.kind,
            json.loads(zone.provider.settings),
            secret or {},
        )

    def zone_of(record: str) -> _Zone:
        return zones[record.removeprefix("_acme-challenge.")]

    async def publish_txt(record: str, value: str | None) -> None:
        zone = zone_of(record)
        records = [Record(record, "TXT", 60, (desired.txt_presentation(value),))] if value else []
        planned, _, zone.owned = await asyncio.to_thread(
            publish.plan, zone.target, zone.row.zone, records, zone.owned
        )
        await asyncio.to_thread(publish.apply, zone.target, zone.row.zone, planned)

    async def authoritative(record: str) -> list[tuple[str, int]]:
        zone = zone_of(record)
        return await _authoritative(zone.provider, zone.row.zone, settings)

    try:
        issued = await acme_issue.issue(settings, vault, list(zones), publish_txt, authoritative)
    except Exception as exc:
        reason = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
        await db.transact(
            functools.partial(_failed, server_id=server.id, reason=reason, settings=settings)
        )
        raise
    await vault.put(tls_path(server), {"cert_pem": issued.fullchain_pem, "key_pem": issued.key_pem})
    return await db.transact(lambda session: _issued(session, server.id, issued))


def backoff(failures: int, settings: Settings) -> timedelta:
    """The wait after ``failures`` failed attempts in a row: base, 2 × base, 4 × base, …"""
    seconds = settings.tls_retry_base_seconds * 2 ** min(failures - 1, 40)
    return timedelta(seconds=min(seconds, settings.tls_retry_max_seconds))


def _record_failure(cert: Certificate, reason: str, settings: Settings, now: datetime) -> None:
    if not cert.failures or cert.failing_since is None:
        cert.failing_since = now  # the first failure of this run
    cert.failures += 1
    cert.last_failure_at, cert.last_error = now, reason
    cert.next_attempt_at = now + backoff(cert.failures, settings)
    cert.renewing_until = None


async def _failed(
    session: AsyncSession, server_id: uuid.UUID, reason: str, settings: Settings
) -> None:
    cert = await session.scalar(select(Certificate).where(Certificate.server_id == server_id))
    if cert is not None:
        _record_failure(cert, reason, settings, utcnow())


async def _issued(
    session: AsyncSession, server_id: uuid.UUID, issued: acme_issue.Issued
) -> Certificate:
    server = await session.get(Server, server_id)
    cert = await session.scalar(select(Certificate).where(Certificate.server_id == server_id))
    if server is None or cert is None:
        raise NotFound("server", server_id)
    cert.names = "\n".join(issued.names)
    cert.serial, cert.issued_at, cert.not_after = issued.serial, utcnow(), issued.not_after
    cert.renewing_until, cert.last_error = None, None
    cert.failures, cert.next_attempt_at, cert.failing_since = 0, None, None
    if server.mail_stack == "mailu":
        cert.command_id = (await deliver(session, server)).id
    await session.flush()
    return cert


async def deliver(session: AsyncSession, server: Server) -> Any:
    """The ``mailu.certs.install`` command: the key pair by reference, resolved at delivery."""
    payload = {
        "secrets_from": {
            "path": tls_path(server),
            "fields": {"cert_pem": "cert_pem", "key_pem": "key_pem"},
        }
    }
    return await commands.queue_system_command(
        session, server, "mailu.certs.install", payload, INSTALL_SECONDS
    )


async def get_certificate(session: AsyncSession, server: Server) -> Certificate:
    cert = await session.scalar(select(Certificate).where(Certificate.server_id == server.id))
    if cert is None:
        raise NotFound("certificate of server", server.id)
    return cert


async def issuer(vault: Vault, cert: Certificate) -> str | None:
    """Who issued the certificate kept in Vault (its issuer's common name, else the whole
    name); None when there is none yet or it cannot be read now (unknown, not "none")."""
    try:
        stored = await vault.get(server_secret_path(cert.tenant_id, cert.server_id, "tls"))
    except VaultError as exc:
        log.warning("the certificate of server %s could not be read: %s", cert.server_id, exc)
        return None
    pem = (stored or {}).get("cert_pem")
    if not pem:
        return None
    try:
        leaf = x509.load_pem_x509_certificate(pem.encode())  # the first of the chain
    except ValueError:
        return None
    names = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else leaf.issuer.rfc4514_string()


def certificate_findings(cert: Certificate, now: datetime) -> list[Finding]:
    """What a health check should raise about a certificate: its issuance keeps failing."""
    if not cert.failures:
        return []
    left = cert.not_after - now if cert.not_after is not None else None
    if left is None or left <= timedelta(0):
        current = "there is no valid certificate"
    else:
        current = f"the current one expires {cert.not_after:%Y-%m-%d %H:%M} UTC"
    when = f"{cert.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC" if cert.next_attempt_at else "now"
    return [
        Finding(
            severity="critical" if left is None or left < CRITICAL_WITHIN else "warning",
            code="tls.renewal_failed",
            message=f"issuing the certificate failed {cert.failures} time(s) in a row "
            f"({current}; next attempt {when}): {cert.last_error}",
            since=cert.failing_since,
        )
    ]


async def findings(session: AsyncSession, server_id: uuid.UUID) -> list[Finding]:
    """The server's TLS findings (none without a certificate row)."""
    cert = await session.scalar(select(Certificate).where(Certificate.server_id == server_id))
    return certificate_findings(cert, utcnow()) if cert is not None else []


async def _uncertified(session: AsyncSession) -> uuid.UUID | None:
    """A ready MailU server without a certificate (it reached ``ready`` while no zone served
    its mail host) whose names a published zone now covers: the ``tls`` step's own test."""
    stmt = (
        select(Server)
        .outerjoin(Certificate, Certificate.server_id == Server.id)
        .where(
            Certificate.id.is_(None),
            Server.state == "ready",
            Server.mail_stack == "mailu",
            Server.mail_hostname.is_not(None),
            Server.tenant_id.in_(select(DomainDns.tenant_id)),
        )
        .order_by(Server.created_at)
    )
    for server in (await session.scalars(stmt)).all():
        try:
            await _zones(session, server)
        except NoZone:
            continue
        return server.id
    return None


class Renewals:
    """The periodic job: each round starts the most urgent renewal whose backoff has passed
    (certificates within ``tls_renew_days`` of expiry, and ready servers whose first issuance
    failed) and the first certificate of one ready server that has none but now can. They run
    in the background: an ACME exchange must not hold the transaction."""

    def __init__(self, db: Database, vault: Vault, settings: Settings) -> None:
        self.db, self.vault, self.settings = db, vault, settings
        self.running: set[asyncio.Task[None]] = set()

    async def __call__(self, session: AsyncSession) -> int:
        picked = [await self._due(session), await _uncertified(session)]
        started = [server_id for server_id in dict.fromkeys(picked) if server_id is not None]
        for server_id in started:
            task = asyncio.create_task(self._renew(server_id))
            self.running.add(task)
            task.add_done_callback(self.running.discard)
        return len(started)

    async def wait(self) -> None:
        """Until the renewals started so far have finished."""
        while self.running:
            await asyncio.gather(*self.running, return_exceptions=True)

    async def _due(self, session: AsyncSession) -> uuid.UUID | None:
        now = utcnow()
        due = await session.scalar(
            select(Certificate)
            .join(Server, Server.id == Certificate.server_id)
            .where(
                or_(
                    Certificate.not_after <= now + timedelta(days=self.settings.tls_renew_days),
                    and_(Certificate.not_after.is_(None), Server.state == "ready"),
                ),
                or_(Certificate.renewing_until.is_(None), Certificate.renewing_until < now),
                or_(Certificate.next_attempt_at.is_(None), Certificate.next_attempt_at <= now),
            )
            .order_by(Certificate.not_after.nulls_first())
            .limit(1)
            .with_for_update(skip_locked=True, of=Certificate)
        )
        return due.server_id if due is not None else None

    async def _renew(self, server_id: uuid.UUID) -> None:
        try:
            await issue_for_server(self.db, self.vault, self.settings, server_id)
        except MailFleetError as exc:
            log.warning("issuing the certificate of server %s failed: %s", server_id, exc.detail)
        except Exception:
            log.exception("issuing the certificate of server %s failed", server_id)


def renew_job(db: Database, vault: Vault, settings: Settings) -> Renewals:
    return Renewals(db, vault, settings)
