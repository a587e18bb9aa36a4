"""The listeners' TLS certificate, renewed before it expires without restarting the server.

Every listener gets its own ``grpc.dynamic_ssl_server_credentials``: gRPC calls the
fetcher at each TLS handshake (on a core thread, with the GIL), and a returned
configuration replaces that port's certificate for the handshakes after it; ``None`` keeps
the current one. So the fetcher only compares a generation number and hands over a
configuration built beforehand. Open streams keep their connection: TLS checks the
certificate only at the handshake.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
from cryptography import x509

from control_plane.vault.pki import AgentPki, IssuedCertificate

log = logging.getLogger(__name__)
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})  # noqa: S104 - listen-on-all, not a name


def certificate_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """DNS names and IP addresses (each sorted, once), without wildcard listen hosts."""
    dns, ips = set(), set()
    for name in (n.strip().strip("[]") for n in names):
        if not name or name in WILDCARD_HOSTS:
            continue
        try:
            ips.add(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.add(name)
    return sorted(dns), sorted(ips - WILDCARD_HOSTS)


def renewal_time(not_before: datetime, not_after: datetime, rng: random.Random) -> datetime:
    """A random point between 70 % and 90 % of the lifetime, the rule agents follow too."""
    return not_before + (not_after - not_before) * rng.uniform(0.7, 0.9)


@dataclass(frozen=True)
class _Current:
    generation: int
    issued: IssuedCertificate
    mutual: grpc.ServerCertificateConfiguration
    server_only: grpc.ServerCertificateConfiguration


class GatewayCertificate:
    """Issues the certificate, hands out credentials that follow it, and renews it."""

    def __init__(
        self,
        pki: AgentPki,
        names: Iterable[str],
        ttl_seconds: int,
        on_issued: Callable[[IssuedCertificate], None] = lambda _: None,
    ) -> None:
        self.pki, self.ttl_seconds, self.on_issued = pki, ttl_seconds, on_issued
        self.dns_names, self.ip_sans = certificate_names(names)
        self._current: _Current | None = None
        self._rng = random.Random()  # noqa: S311 - spreading renewals, not cryptography

    @property
    def issued(self) -> IssuedCertificate:
        assert self._current is not None, "issue() first"
        return self._current.issued

    async def issue(self) -> IssuedCertificate:
        """A fresh certificate from Vault; the listeners present it from their next handshake."""
        issued = await self.pki.issue_gateway_certificate(
            common_name=(self.dns_names or self.ip_sans)[0],
            dns_names=self.dns_names,
            ip_sans=self.ip_sans,
            ttl_seconds=self.ttl_seconds,
        )
        assert issued.private_key_pem is not None
        pair = (
            issued.private_key_pem.encode(),
            (issued.certificate_pem + issued.ca_chain_pem).encode(),
        )
        ca = issued.ca_chain_pem.encode()
        generation = self._current.generation + 1 if self._current is not None else 0
        self._current = _Current(
            generation,
            issued,
            grpc.ssl_server_certificate_configuration([pair], root_certificates=ca),
            grpc.ssl_server_certificate_configuration([pair]),
        )
        self.on_issued(issued)
        log.info(
            "gateway certificate %s issued for %s, valid until %s",
            issued.serial,
            ", ".join(self.dns_names + self.ip_sans),
            issued.not_after.isoformat(),
        )
        return issued

    def credentials(self, *, mutual: bool) -> grpc.ServerCredentials:
        """Credentials for one port (each port tracks which certificate it last took)."""
        current = self._current
        assert current is not None, "issue() first"
        seen = current.generation

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            nonlocal seen
            latest = self._current
            if latest is None or latest.generation == seen:
                return None
            seen = latest.generation
            return latest.mutual if mutual else latest.server_only

        return grpc.dynamic_ssl_server_credentials(
            current.mutual if mutual else current.server_only,
            fetch,  # type: ignore[arg-type]  # the stub omits None, which grpc documents
            require_client_authentication=mutual,
        )

    async def renew_forever(self) -> None:
        """Renew at 70–90 % of each certificate's lifetime; after a failure, try again soon."""
        while True:
            issued = self.issued
            not_before = x509.load_pem_x509_certificate(
                issued.certificate_pem.encode()
            ).not_valid_before_utc
            due = renewal_time(not_before, issued.not_after, self._rng)
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            while True:
                try:
                    await self.issue()
                    break
                except Exception:
                    left = issued.not_after - datetime.now(UTC)
                    pause = min(timedelta(minutes=1), max(timedelta(seconds=1), left / 10))
                    log.exception(
                        "renewing the gateway certificate failed (it expires in %s); "
                        "trying again in %.0f s",
                        left,
                        pause.total_seconds(),
                    )
                    await asyncio.sleep(pause.total_seconds())
