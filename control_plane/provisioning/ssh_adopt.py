"""Adopting a machine a customer already has: ``POST /api/v1/servers`` with ``"provider":
"ssh"``, its ``address`` and one SSH credential for root (``ssh_private_key`` or
``ssh_password``).

Everything is checked before anything is written (a 422 names the field): the address is an
IPv4 address a machine can have (not loopback, link-local, multicast, reserved, unspecified
or a documentation range: the control plane would connect there), the key one asyncssh reads
without a passphrase, exactly one of key and password. The credential then goes to Vault at
the server's ``ssh_login`` secret in the request that makes the row (a Vault failure leaves
no row); no answer, log or event carries it afterwards (the answer shows a key's public half,
its identity). The server starts at ``installing_agent``: no provider rents or boots anything
(``providers/adopted.py``), and the same workflow follows to ``ready``.

A wrong credential fails the install at once (waiting does not fix it, unlike a rented VPS
whose key may not be authorized yet): ``PUT …/ssh-credential`` replaces it and, if the
install had failed, runs it again (``service.replace_ssh_credential``).
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import timedelta

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.errors import Conflict, InvalidInput
from control_plane.provisioning import events, ssh
from control_plane.provisioning.workflow import enter
from control_plane.servers.models import Server
from control_plane.servers.status import agent_status
from control_plane.settings import Settings
from control_plane.vault.client import Vault

# Besides ipaddress' own classes, no machine is adopted at a documentation example (RFC 5737).
# Private ranges stay allowed: a machine on the control plane's private network is common.
_DOCUMENTATION = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
KEY_FIELD = "body.ssh_private_key"


@dataclass(frozen=True)
class Login:
    """A checked credential: the ``ssh_login`` secret, and a key's public half (shown)."""

    secret: dict[str, str]
    public_key: str | None


@dataclass(frozen=True)
class Adoption:
    address: str
    login: Login


def refuse_fields(
    provider: str,
    address: object,
    key: object,
    password: object,
    purpose: str = "adopting a machine",
) -> None:
    """Another provider's order (or recovery) carries no address or SSH credential (nothing
    half-used)."""
    for name, value in (("address", address), ("ssh_private_key", key), ("ssh_password", password)):
        if value is not None:
            raise InvalidInput(
                f"{name} is only for {purpose} (provider ssh), not provider {provider}",
                field=f"body.{name}",
            )


def checked(address: str | None, key: SecretStr | None, password: SecretStr | None) -> Adoption:
    """The order's address and credential, or a 422 naming the field."""
    return Adoption(machine_address(address), login(key, password))


def machine_address(value: str | None) -> str:
    if value is None:
        raise InvalidInput(
            "address is required to adopt a machine: its IPv4 address", field="body.address"
        )
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        raise InvalidInput(f"not an IP address: {value!r}", field="body.address") from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is None:
            raise InvalidInput(
                "give the machine's IPv4 address (its mail host's A record points there)",
                field="body.address",
            )
        ip = ip.ipv4_mapped
    unfit = (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or ip.packed[:1] == b"\x00"  # 0.0.0.0/8: "this network"
        or any(ip in net for net in _DOCUMENTATION)
    )
    if unfit:
        raise InvalidInput(
            f"{ip} is not an address a machine is adopted at (loopback, link-local, multicast, "
            "reserved, unspecified or a documentation range)",
            field="body.address",
        )
    return str(ip)


def login(key: SecretStr | None, password: SecretStr | None) -> Login:
    if (key is None) == (password is None):
        raise InvalidInput("give exactly one of ssh_private_key or ssh_password", field=KEY_FIELD)
    if password is not None:
        return Login({"password": password.get_secret_value()}, None)
    assert key is not None
    # asyncssh loads when a key is adopted, not with every API start.
    import asyncssh

    from control_plane.provisioning.ssh_install import host_key_line

    text = key.get_secret_value()
    try:
        parsed = asyncssh.import_private_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        # asyncssh's words name no key material; an encrypted key gets its own advice.
        reason = (
            "it is encrypted: give it without its passphrase"
            if "assphrase" in str(exc)
            else "not a private key in OpenSSH or PEM form"
        )
        raise InvalidInput(f"ssh_private_key: {reason}", field=KEY_FIELD) from None
    public = host_key_line(parsed)
    return Login({"private_key": text, "public_key": public}, public)


async def address_free(
    session: AsyncSession,
    settings: Settings,
    tenant_id: uuid.UUID,
    address: str,
    replacing: Server | None = None,
) -> None:
    """One server per machine in a tenant: adopting it twice would run two agents there.
    A recovery may go back onto the machine of the server it replaces (``replacing``) once
    that machine is reinstalled, never while the old agent is online there."""
    query = select(Server.name).where(Server.tenant_id == tenant_id, Server.ipv4 == address)
    if replacing is not None:
        query = query.where(Server.id != replacing.id)
    taken = await session.scalar(query.limit(1))
    if taken is not None:
        raise Conflict(f"server {taken!r} of this tenant is at {address}", field="body.address")
    if replacing is None or replacing.ipv4 != address:
        return
    unknown_after = timedelta(seconds=settings.agent_unknown_after_seconds)
    if agent_status(replacing, utcnow(), unknown_after) == "online":
        raise Conflict(
            f"server {replacing.name!r} is at {address} and its agent is online there: recover "
            "onto another machine, or onto this one once it is reinstalled (its agent gone)",
            field="body.address",
        )


async def start(
    session: AsyncSession, vault: Vault, settings: Settings, server: Server, adoption: Adoption
) -> None:
    """The new row at ``installing_agent`` and its credential in Vault (same request)."""
    server.ipv4, server.ssh_public_key = adoption.address, adoption.login.public_key
    enter(server, "installing_agent", settings)
    how = "key" if adoption.login.public_key else "password"
    events.record(
        session,
        server,
        "state",
        f"adopted: the machine at {adoption.address}; installing its agent over SSH "
        f"(root, {how} kept in Vault)",
    )
    await session.flush()
    await keep_login(vault, server, adoption.login)


async def keep_login(vault: Vault, server: Server, checked_login: Login) -> None:
    await vault.put(ssh.login_path(server.tenant_id, server.id), checked_login.secret)
