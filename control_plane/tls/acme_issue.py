"""Issuing a certificate with ACME DNS-01 (certbot's ``acme`` library).

The account key is made once and kept in Vault (``acme/account``, with the account URL), as
are the certificates. The challenge TXT goes out through the same octoDNS provider as the
domain's records (value-level ownership: it is added to, then taken out of, whatever the
name holds), and the CA is asked to validate only once the zone's primary serves it.
The ``acme`` client is synchronous: its calls run in threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from control_plane.errors import MailFleetError
from control_plane.settings import Settings
from control_plane.vault.client import Vault

# acme and josepy load when a certificate is issued, not with every serve start.
if TYPE_CHECKING:
    from acme import client

ACCOUNT_PATH = "acme/account"
ORDER_ATTEMPTS = 2
USER_AGENT = "mailfleet"

log = logging.getLogger(__name__)
PublishTxt = Callable[[str, str | None], Awaitable[None]]  # (name, value or None to remove)


class AcmeError(MailFleetError):
    status = 502
    title = "ACME error"


@dataclass(frozen=True)
class Issued:
    names: list[str]
    fullchain_pem: str
    key_pem: str
    serial: str
    not_before: datetime
    not_after: datetime


def _account_key() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {"key_pem": pem.decode()}


async def _client(settings: Settings, vault: Vault) -> client.ClientV2:
    """An ACME client with MailFleet's account, registered on first use."""
    from acme import client, errors, messages
    from josepy.jwk import JWKRSA

    stored = dict(await vault.ensure(ACCOUNT_PATH, _account_key))
    key = JWKRSA.load(stored["key_pem"].encode())
    verify: Any = str(settings.acme_ca_file) if settings.acme_ca_file else True

    def connect() -> tuple[client.ClientV2, str | None]:
        net = client.ClientNetwork(key, user_agent=USER_AGENT, verify_ssl=verify)
        directory = client.ClientV2.get_directory(settings.acme_directory_url, net)
        acme = client.ClientV2(directory, net)
        if stored.get("uri") and stored.get("directory") == settings.acme_directory_url:
            account = messages.RegistrationResource(uri=stored["uri"], body=messages.Registration())
            net.account = acme.query_registration(account)
            return acme, None
        contact = (f"mailto:{settings.acme_email}",) if settings.acme_email else ()
        registered = acme.new_account(
            messages.NewRegistration.from_data(terms_of_service_agreed=True, contact=contact)
            if contact
            else messages.NewRegistration(terms_of_service_agreed=True)
        )
        net.account = registered
        return acme, registered.uri

    try:
        acme, new_uri = await asyncio.to_thread(connect)
    except (errors.Error, messages.Error, OSError) as exc:
        raise AcmeError(f"ACME server {settings.acme_directory_url}: {exc}") from None
    if new_uri:
        await vault.put(
            ACCOUNT_PATH, {**stored, "uri": new_uri, "directory": settings.acme_directory_url}
        )
    return acme


async def wait_visible(server: tuple[str, int], name: str, value: str, limit: float) -> None:
    """Until ``server`` answers ``value`` among the TXT of ``name`` (bounded). A server that
    never answered usably (timeout, REFUSED, SERVFAIL) is said to be that, not to lack it."""
    import dns.asyncquery  # dnspython loads with the first lookup, not with serve
    import dns.exception
    import dns.message
    import dns.rcode
    import dns.rdatatype

    deadline = time.monotonic() + limit
    while True:
        query = dns.message.make_query(name, dns.rdatatype.TXT)
        problem: str | None = None
        try:
            response = await dns.asyncquery.udp(query, server[0], port=server[1], timeout=2.0)
            rcode = response.rcode()
            if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                problem = f"it answered {dns.rcode.to_text(rcode)}"
            texts = {b"".join(r.strings).decode() for rrset in response.answer for r in rrset}
            if value in texts:
                return
        except (TimeoutError, OSError, dns.exception.DNSException) as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if time.monotonic() > deadline:
            if problem is not None:
                raise AcmeError(
                    f"whether {server[0]}:{server[1]} shows the challenge at {name} could not "
                    f"be seen within {limit:g} s: {problem}"
                )
            raise AcmeError(f"{name} did not show the challenge at {server[0]} within {limit:g} s")
        await asyncio.sleep(0.5)


async def issue(
    settings: Settings,
    vault: Vault,
    names: list[str],
    publish_txt: PublishTxt,
    authoritative: Callable[[str], Awaitable[list[tuple[str, int]]]],
) -> Issued:
    """A certificate for ``names`` (the first is the subject), by DNS-01. A failed order is
    tried once more with a fresh one after a pause (a CA's resolver may have been early)."""
    attempt = 1
    while True:
        try:
            return await _issue_once(settings, vault, names, publish_txt, authoritative)
        except AcmeError as exc:
            if attempt >= ORDER_ATTEMPTS:
                raise
            log.warning("ACME order for %s failed (%s); trying a fresh order", names, exc.detail)
            await asyncio.sleep(settings.acme_retry_pause_seconds)
            attempt += 1


async def _issue_once(
    settings: Settings,
    vault: Vault,
    names: list[str],
    publish_txt: PublishTxt,
    authoritative: Callable[[str], Awaitable[list[tuple[str, int]]]],
) -> Issued:
    from acme import challenges, errors, messages
    from acme.crypto_util import make_csr

    acme = await _client(settings, vault)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    csr = make_csr(key_pem, names)
    deadline = datetime.now() + timedelta(seconds=settings.acme_order_seconds)
    published: list[str] = []
    try:
        order = await asyncio.to_thread(acme.new_order, csr)
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # the CA still trusts an earlier validation (Let's Encrypt: 30 days)
            challenge = next(
                (c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01)), None
            )
            if challenge is None:
                raise AcmeError(
                    f"the CA offers no dns-01 challenge for {authz.body.identifier.value}"
                )
            response, validation = challenge.response_and_validation(acme.net.key)
            record = challenge.chall.validation_domain_name(authz.body.identifier.value)
            # The CA may ask any of the zone's servers: every one must serve the answer
            # (found first: a zone whose servers cannot be found gets no record).
            servers = await authoritative(record)
            await publish_txt(record, validation)
            published.append(record)
            limit = settings.acme_visible_seconds
            await asyncio.gather(*(wait_visible(s, record, validation, limit) for s in servers))
            await asyncio.to_thread(acme.answer_challenge, challenge, response)
        order = await asyncio.to_thread(acme.poll_and_finalize, order, deadline)
    except (errors.Error, messages.Error) as exc:
        raise AcmeError(f"certificate for {', '.join(names)}: {exc}") from None
    finally:
        for record in published:
            await publish_txt(record, None)
    fullchain = str(order.fullchain_pem)
    leaf = x509.load_pem_x509_certificate(fullchain.encode())
    return Issued(
        names=names,
        fullchain_pem=fullchain,
        key_pem=key_pem.decode(),
        serial=format(leaf.serial_number, "x"),
        not_before=leaf.not_valid_before_utc.astimezone(UTC),
        not_after=leaf.not_valid_after_utc.astimezone(UTC),
    )
