"""HTTP delivery to a tenant's URL without letting that URL reach inside the control plane.

A tenant names the URL, so it is an SSRF risk (OpenBao and the database listen on
loopback). The host is resolved at send time, every address it resolves to must be public,
and the request goes to that checked address (Host header and TLS SNI keep the name), so a
second DNS answer cannot switch it. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass

from control_plane.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_SETTING = "MAILFLEET_ALERT_ALLOW_PRIVATE_TARGETS"


class TargetRefused(Exception):
    """The URL may not be sent to; the message says why (no secret in it)."""


@dataclass(frozen=True)
class HttpAnswer:
    status_code: int
    text: str  # the start of the body, for the delivery log


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The system's CAs, plus ``MAILFLEET_ALERT_CA_FILE`` when set; names are verified."""
    context = ssl.create_default_context()
    if settings.alert_ca_file is not None:
        context.load_verify_locations(cafile=str(settings.alert_ca_file))
    return context


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for reason, flag in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if flag:
            return reason
    return None if address.is_global else "not globally routable"


def url_problem(url: str, settings: Settings) -> str | None:
    """What is wrong with a channel URL before anything is sent (None: acceptable)."""
    import httpx  # on first use: not with serve (it brings click, rich, pygments)

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"not a valid URL: {exc}"
    allow = settings.alert_allow_private_targets
    if parsed.scheme not in ("https", "http") or (parsed.scheme == "http" and not allow):
        return f"must be an https:// URL (http:// only with {ALLOW_SETTING})"
    if not parsed.host:
        return "needs a host"
    if parsed.userinfo:
        return "must not carry a user or password; put credentials in the secret"
    try:
        literal = ipaddress.ip_address(parsed.host)
    except ValueError:
        return None
    reason = non_public_reason(literal)
    if reason is not None and not allow:
        return f"{parsed.host} is a {reason} address (allowed only with {ALLOW_SETTING})"
    return None


async def resolve_public(host: str, port: int, settings: Settings) -> IPAddress:
    """The address to connect to; refused unless every address of ``host`` is public."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise TargetRefused(f"{host} has no address")
    if not settings.alert_allow_private_targets:
        for address in addresses:
            if (reason := non_public_reason(address)) is not None:
                raise TargetRefused(
                    f"refused: {host} resolves to {address}, a {reason} address "
                    f"(set {ALLOW_SETTING} to allow)"
                )
    return addresses[0]


async def post(url: str, content: bytes, headers: dict[str, str], settings: Settings) -> HttpAnswer:
    """POST to ``url`` through its checked address. Raises TargetRefused, TimeoutError
    or httpx errors."""
    import httpx

    if (problem := url_problem(url, settings)) is not None:
        raise TargetRefused(f"refused: the URL {problem}")
    parsed = httpx.URL(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    address = await asyncio.wait_for(
        resolve_public(host, port, settings), settings.alert_send_timeout_seconds
    )
    pinned = parsed.copy_with(host=str(address))
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    send_headers = {**headers, "Host": parsed.netloc.decode("ascii")}
    timeout = httpx.Timeout(settings.alert_send_timeout_seconds)
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False, verify=tls_context(settings)
    ) as client:
        response = await client.post(
            pinned, content=content, headers=send_headers, extensions=extensions
        )
    return HttpAnswer(status_code=response.status_code, text=response.text[:300])
