"""What a MailU install is made of, checked before anything is written.

The control plane sends the spec as the ``mailu.install`` payload; its secrets (the Flask
``secret_key``, the REST ``api_token``, the first admin's password) come out of Vault on
the way and end up only in ``mailu.env`` (mode 0600), which MailU itself must read.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Literal

from agent.errors import CommandError

MAILU_VERSION = "2024.06"
IMAGE_REGISTRY = "ghcr.io/mailu"
REDIS_IMAGE = "redis:7.2-alpine"  # Mailu's template says redis:alpine; pinned here
CLAMAV_IMAGE = "clamav/clamav-debian:1.4"
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_RATE = re.compile(r"^\d{1,9}/(second|minute|hour|day)$")
_LOCAL = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,63}$")
_REGISTRY = re.compile(
    r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?(/[a-z0-9._-]{1,128}){0,4}$"
)
_SECRET = re.compile(r"^[A-Za-z0-9._~+/=-]{16,512}$")
TlsFlavor = Literal["cert", "letsencrypt"]
Webmail = Literal["none", "roundcube", "snappymail"]


@dataclass(frozen=True)
class MailuSpec:
    domain: str  # the main mail domain (IDNA, lower case)
    hostnames: tuple[str, ...]  # mail host names; the first is the main one
    postmaster: str  # local part at ``domain``
    tls_flavor: TlsFlavor
    bind_address: str  # the VPS address the mail ports are published on
    secret_key: str
    api_token: str
    admin_password: str
    subnet: str = "192.168.203.0/24"
    webmail: Webmail = "none"
    antivirus: bool = False
    message_size_limit: int = 50_000_000
    message_ratelimit: str = "200/day"
    auth_ratelimit_ip: str = "5/hour"
    auth_ratelimit_user: str = "50/day"
    version: str = MAILU_VERSION
    api_port: int = 8080  # admin's REST API, published on the VPS's loopback only
    dkim_selector: str = "dkim"  # Mailu signs every domain with this one selector
    registry: str = IMAGE_REGISTRY  # where MailU's images come from (a mirror, say)

    @property
    def resolver_address(self) -> str:
        """Unbound's fixed address: the last host of the subnet, as Mailu's setup uses."""
        network = ipaddress.IPv4Network(self.subnet)
        return str(network.broadcast_address - 1)

    def image(self, name: str) -> str:
        return f"{self.registry}/{name}:{self.version}"


def parse_spec(payload: dict[str, Any]) -> MailuSpec:
    """The spec from a command payload; a ``CommandError`` names the first bad field."""

    def text(key: str, default: str | None = None) -> str:
        value = payload.get(key, default)
        if not isinstance(value, str) or not value:
            raise CommandError(f"payload.{key}: required, a non-empty string")
        if "\n" in value or "\r" in value or "\0" in value:
            raise CommandError(f"payload.{key}: must be one line")
        return value

    domain = text("domain").lower()
    if not _HOST.match(domain):
        raise CommandError(f"payload.domain: {domain!r} is not a domain name (IDNA form)")
    raw_hosts = payload.get("hostnames")
    if not isinstance(raw_hosts, list) or not raw_hosts:
        raise CommandError("payload.hostnames: required, a non-empty list")
    hostnames = tuple(str(h).lower() for h in raw_hosts)
    for host in hostnames:
        if not _HOST.match(host):
            raise CommandError(f"payload.hostnames: {host!r} is not a host name (IDNA form)")
    postmaster = text("postmaster", "postmaster").lower()
    if not _LOCAL.match(postmaster):
        raise CommandError("payload.postmaster: a local part such as 'postmaster'")
    tls = text("tls_flavor", "cert")
    if tls not in ("cert", "letsencrypt"):
        raise CommandError("payload.tls_flavor: 'cert' or 'letsencrypt'")
    try:
        bind = str(ipaddress.IPv4Address(text("bind_address")))
        subnet = str(ipaddress.IPv4Network(text("subnet", "192.168.203.0/24")))
    except ValueError as exc:
        raise CommandError(f"payload: {exc}") from None
    for key in ("secret_key", "api_token", "admin_password"):
        if not _SECRET.match(text(key)):
            raise CommandError(f"payload.{key}: 16-512 characters of [A-Za-z0-9._~+/=-]")
    webmail = text("webmail", "none")
    if webmail not in ("none", "roundcube", "snappymail"):
        raise CommandError("payload.webmail: 'none', 'roundcube' or 'snappymail'")
    for key, default in (
        ("message_ratelimit", "200/day"),
        ("auth_ratelimit_ip", "5/hour"),
        ("auth_ratelimit_user", "50/day"),
    ):
        if not _RATE.match(text(key, default)):
            raise CommandError(f"payload.{key}: a rate such as '200/day'")
    size = payload.get("message_size_limit", 50_000_000)
    if not isinstance(size, int) or not 1_000_000 <= size <= 1_000_000_000:
        raise CommandError("payload.message_size_limit: bytes, 1000000 to 1000000000")
    antivirus = payload.get("antivirus", False)
    if not isinstance(antivirus, bool):
        raise CommandError("payload.antivirus: true or false")
    return MailuSpec(
        domain=domain,
        hostnames=hostnames,
        postmaster=postmaster,
        tls_flavor=tls,  # type: ignore[arg-type]
        bind_address=bind,
        secret_key=text("secret_key"),
        api_token=text("api_token"),
        admin_password=text("admin_password"),
        subnet=subnet,
        webmail=webmail,  # type: ignore[arg-type]
        antivirus=antivirus,
        message_size_limit=size,
        message_ratelimit=text("message_ratelimit", "200/day"),
        auth_ratelimit_ip=text("auth_ratelimit_ip", "5/hour"),
        auth_ratelimit_user=text("auth_ratelimit_user", "50/day"),
        version=_version(text("version", MAILU_VERSION)),
        api_port=_port(payload.get("api_port", 8080)),
        dkim_selector=_selector(text("dkim_selector", "dkim")),
        registry=_registry(text("registry", IMAGE_REGISTRY)),
    )


def _registry(value: str) -> str:
    if not _REGISTRY.match(value):
        raise CommandError("payload.registry: an image repository prefix such as ghcr.io/mailu")
    return value


def _selector(value: str) -> str:
    if not re.match(r"^[a-z0-9][a-z0-9-]{0,62}$", value):
        raise CommandError("payload.dkim_selector: a DNS label such as 'mf202611'")
    return value


def _port(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1024 <= value <= 65535:
        raise CommandError("payload.api_port: a port number from 1024 to 65535")
    return value


def _version(value: str) -> str:
    if not re.match(r"^\d{4}\.\d{2}(\.\d{1,3})?$", value):
        raise CommandError("payload.version: a MailU release such as '2024.06'")
    return value
