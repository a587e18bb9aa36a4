"""The mail ports, probed from the control plane: does each answer as a mail server should,
with a certificate valid for the mail host and not about to expire.

One call probes the four ports at once and returns one result per port plus ``tls.expiry``.
A port that answered "no" (refused, a wrong banner, no STARTTLS, a certificate not valid for
the host) is ``failing``; one that could not be checked (a timeout, no route) is ``unknown``.
A certificate that fails verification is looked at once more without verifying, so its expiry
is measured even then. Kept CPU-cheap (one handshake per port when all is well): a fleet of
10,000 servers is probed every five minutes (benchmarks/health_sweep.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from control_plane.health.results import CheckState, Result, Severity
from control_plane.settings import Settings

HELO_NAME = "health.mailfleet.invalid"  # never looked up; says who is knocking
BANNER = "the banner"
BANNER_IMPLICIT = "the TLS handshake and banner"
EXPIRY_THRESHOLDS: tuple[tuple[float, Severity], ...] = (
    (1, "critical"),
    (7, "critical"),
    (30, "warning"),
)
# Port 25 takes the world's mail, 587 the users' outgoing mail and 993 their mailboxes;
# 465 does 587's job for the clients that use it.
SEVERITY: dict[str, Severity] = {
    "smtp.25": "critical",
    "smtp.465": "warning",
    "smtp.587": "critical",
    "imap.993": "critical",
}
_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
_VERIFY_REASONS = {
    9: "not yet valid",
    10: "expired",
    62: "not valid for {host}",
    2: "untrusted (issuer unknown)",
    18: "untrusted (self-signed)",
    19: "untrusted (self-signed issuer in the chain)",
    20: "untrusted (issuer unknown)",
    21: "untrusted (issuer unknown)",
}


@dataclass(frozen=True)
class MailPorts:
    """Where each service listens (other ports only in tests and benchmarks)."""

    smtp: int = 25
    submissions: int = 465
    submission: int = 587
    imaps: int = 993


class _Failed(Exception):
    """The port answered, wrongly."""


@dataclass
class _Stage:
    """Where a probe is, so a failure or timeout says what it was waiting for."""

    name: str = "the connection"


@dataclass(frozen=True)
class _Seen:
    result: Result
    certificate: bytes | None  # the peer's leaf, DER


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The verifying context the probes use: the system's trust plus
    ``MAILFLEET_HEALTH_CA_FILE`` (a private CA's servers, or the tests')."""
    context = ssl.create_default_context()
    if settings.health_ca_file is not None:
        context.load_verify_locations(cafile=str(settings.health_ca_file))
    return context


@functools.cache
def _unverified() -> ssl.SSLContext:
    """For the second look at a certificate that failed verification (and for a server
    without a mail host name, whose certificate cannot be checked)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def probe_mail_ports(
    address: str,
    mail_host: str | None,
    *,
    timeout: float,  # noqa: ASYNC109 - each step's own limit, not one for the whole call
    tls_context: ssl.SSLContext,
    now: datetime,
    ports: MailPorts = MailPorts(),
) -> list[Result]:
    """``smtp.25``, ``smtp.465``, ``smtp.587``, ``imap.993`` and ``tls.expiry`` for the server
    at ``address``; every connect, handshake and read waits at most ``timeout`` seconds.

    ``mail_host`` is the name certificates must be valid for; without one, certificates are
    only read for their expiry (the results say so)."""
    context = tls_context if mail_host is not None else _unverified()
    probe = functools.partial(
        _probe, address=address, mail_host=mail_host, limit=timeout, context=context
    )
    seen = await asyncio.gather(
        probe("smtp.25", ports.smtp, functools.partial(_smtp, implicit=False)),
        probe("smtp.465", ports.submissions, functools.partial(_smtp, implicit=True)),
        probe("smtp.587", ports.submission, functools.partial(_smtp, implicit=False)),
        probe("imap.993", ports.imaps, _imap),
    )
    return [*(one.result for one in seen), _expiry(seen, now)]


Session = Callable[[socket.socket, str | None, ssl.SSLContext, float, _Stage], Awaitable[bytes]]


async def _probe(
    check: str,
    port: int,
    session: Session,
    *,
    address: str,
    mail_host: str | None,
    limit: float,
    context: ssl.SSLContext,
) -> _Seen:
    severity = SEVERITY[check]
    where = f"{address}:{port}"
    stage = _Stage()
    try:
        certificate = await _session(session, address, port, mail_host, context, limit, stage)
    except Exception as exc:  # classified below; nothing escapes a probe
        verify = _verify_error(exc)
        if verify is None:
            failing, detail = _classify(exc, stage, limit)
            state: CheckState = "failing" if failing else "unknown"
            return _Seen(Result(check, state, severity, f"{where}: {detail}"), None)
        second = _Stage()
        try:  # the second look: the same session, not verifying, to read the certificate
            seen = await _session(session, address, port, mail_host, _unverified(), limit, second)
        except Exception:
            seen = None
        detail = f"{where}: certificate {_verify_reason(verify, mail_host, seen)}"
        return _Seen(Result(check, "failing", severity, detail, verify.verify_message), seen)
    detail = f"{where}: answers" + ("" if mail_host else "; certificate name not checked")
    return _Seen(Result(check, "ok", "info", detail), certificate)


async def _session(
    session: Session,
    address: str,
    port: int,
    mail_host: str | None,
    context: ssl.SSLContext,
    limit: float,
    stage: _Stage,
) -> bytes:
    """Connect (bounded), then run one protocol session; the certificate seen, as DER."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, (address, port)), limit
        )
    except BaseException:
        sock.close()
        raise
    return await session(sock, mail_host, context, limit, stage)


async def _smtp(
    sock: socket.socket,
    mail_host: str | None,
    context: ssl.SSLContext,
    limit: float,
    stage: _Stage,
    *,
    implicit: bool,
) -> bytes:
    """Banner, EHLO, STARTTLS (unless ``implicit``: TLS from the start), EHLO again, QUIT."""
    import aiosmtplib  # on first use, not with serve

    name = mail_host or sock.getpeername()[0]
    client = aiosmtplib.SMTP(
        hostname=name,
        sock=sock,
        use_tls=implicit,
        start_tls=False,
        tls_context=context,
        timeout=limit,
        local_hostname=HELO_NAME,
    )
    try:
        stage.name = BANNER_IMPLICIT if implicit else BANNER
        await client.connect()
        stage.name = "the EHLO reply"
        await client.ehlo()
        if not implicit:
            if not client.supports_extension("starttls"):
                raise _Failed("STARTTLS is not offered")
            stage.name = "STARTTLS"
            await client.starttls(server_hostname=name, tls_context=context)
            stage.name = "the EHLO reply after STARTTLS"
            await client.ehlo()
        certificate = _peer_certificate(client.get_transport_info("ssl_object"))
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):  # checked; goodbye
            await client.quit()
        return certificate
    finally:
        client.close()


async def _imap(
    sock: socket.socket,
    mail_host: str | None,
    context: ssl.SSLContext,
    limit: float,
    stage: _Stage,
) -> bytes:
    """TLS from the start, then the ``* OK`` greeting; a LOGOUT says goodbye."""
    stage.name = "the TLS handshake"
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            sock=sock,
            ssl=context,
            server_hostname=mail_host or sock.getpeername()[0],
            ssl_handshake_timeout=limit,
        ),
        limit,
    )
    try:
        stage.name = "the greeting"
        greeting = await asyncio.wait_for(reader.readline(), limit)
        if not greeting:
            raise ConnectionResetError("closed the connection before its greeting")
        if not greeting.startswith((b"* OK", b"* PREAUTH")):
            raise _Failed(f"not an IMAP greeting: {_printable(greeting)}")
        certificate = _peer_certificate(writer.get_extra_info("ssl_object"))
        writer.write(b"a LOGOUT\r\n")
        return certificate
    finally:
        writer.close()


def _peer_certificate(ssl_object: ssl.SSLObject | None) -> bytes:
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise _Failed("no certificate presented")
    return der


def _verify_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
    return None


def _verify_reason(
    error: ssl.SSLCertVerificationError, mail_host: str | None, der: bytes | None
) -> str:
    """expired / not valid for the host (naming the names it is valid for) / untrusted."""
    template = _VERIFY_REASONS.get(error.verify_code)
    reason = template.format(host=mail_host) if template else f"rejected: {error.verify_message}"
    if error.verify_code == 62 and der is not None:
        reason += f" (it names {', '.join(_names(der)) or 'no DNS names'})"
    elif error.verify_code in (9, 10) and der is not None:
        not_after = x509.load_der_x509_certificate(der).not_valid_after_utc
        reason += f" (not after {not_after:%Y-%m-%d %H:%M} UTC)"
    return reason


def _classify(exc: BaseException, stage: _Stage, limit: float) -> tuple[bool, str]:
    """(failing?, why): a timeout or no route is unknown (could not check); anything the
    port said is failing. The most telling exception in the chain decides."""
    import aiosmtplib

    chain = _chain(exc)

    def find(kind: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
        return next((cause for cause in chain if isinstance(cause, kind)), None)

    if find((TimeoutError, ConnectionAbortedError)):  # asyncio's handshake timeout aborts
        return False, f"timed out after {limit:g} s waiting for {stage.name}"
    if failed := find(_Failed):
        return True, str(failed)
    if find(ConnectionRefusedError):
        return True, "connection refused"
    if isinstance(
        answer := find(aiosmtplib.SMTPResponseException), aiosmtplib.SMTPResponseException
    ):
        what = "wrong banner" if stage.name in (BANNER, BANNER_IMPLICIT) else stage.name
        return True, f"{what}: {answer.code} {_printable(answer.message)}"
    if isinstance(tls := find(ssl.SSLError), ssl.SSLError):
        return True, f"TLS failed during {stage.name}: {tls.reason or tls}"
    unreachable = [c for c in chain if isinstance(c, OSError) and c.errno in _UNREACHABLE]
    if unreachable:
        return False, f"could not reach it: {unreachable[0].strerror}"
    if find(ConnectionError):
        return True, f"closed the connection during {stage.name}"
    return False, f"could not check ({type(exc).__name__}: {exc}) during {stage.name}"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _expiry(seen: tuple[_Seen, ...] | list[_Seen], now: datetime) -> Result:
    """The soonest-expiring certificate any port showed, against 30/7/1 days."""
    certificates: dict[bytes, list[str]] = {}
    for one in seen:
        if one.certificate is not None:
            certificates.setdefault(one.certificate, []).append(one.result.check)
    if not certificates:
        return Result("tls.expiry", "unknown", "warning", "no port showed a certificate")
    soonest, checks = min(
        ((x509.load_der_x509_certificate(der), checks) for der, checks in certificates.items()),
        key=lambda pair: pair[0].not_valid_after_utc,
    )
    not_after = soonest.not_valid_after_utc
    days = (not_after - now).total_seconds() / 86_400
    observed = f"{days:.1f} days"
    where = f"certificate on {', '.join(checks)} (not after {not_after:%Y-%m-%d %H:%M} UTC)"
    for limit, severity in EXPIRY_THRESHOLDS:
        if days < limit:
            threshold = _days(limit)
            when = "has expired" if days < 0 else f"expires in under {threshold}"
            return Result("tls.expiry", "failing", severity, f"{where} {when}", observed, threshold)
    last = _days(EXPIRY_THRESHOLDS[-1][0])
    return Result("tls.expiry", "ok", "info", f"{where}: {days:.0f} days left", observed, last)


def _days(limit: float) -> str:
    return "1 day" if limit == 1 else f"{limit:g} days"


def _names(der: bytes) -> list[str]:
    try:
        extension = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [str(name) for name in extension.value.get_values_for_type(x509.DNSName)]


def _printable(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.strip().replace("\r", " ").replace("\n", " ")[:120]
