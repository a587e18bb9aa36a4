"""The mail-port probes against real listeners: aiosmtpd with STARTTLS and implicit TLS, an
IMAP greeter over TLS, certificates from a test CA, and ports that refuse, stay silent or
answer wrongly — on loopback, and once inside a network namespace on its own address."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from control_plane.health.probes import MailPorts, probe_mail_ports, tls_context
from control_plane.health.results import Result
from control_plane.settings import Settings
from tests.support.mail_ports import Leaf, TestCA, mail_stand_in
from tests.support.netns import ip, kill_namespace, netns_unavailable, pick_subnet
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
HOST = "mx.probe.test"
LOOPBACK = "127.0.0.1"
TIMEOUT = 2.0
PORT_CHECKS = ("smtp.25", "smtp.465", "smtp.587", "imap.993")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("probe-ca"))


@pytest.fixture(scope="module")
def context(ca: TestCA) -> ssl.SSLContext:
    return tls_context(Settings(health_ca_file=ca.ca_file))


def fresh_ports() -> MailPorts:
    return MailPorts(free_port(), free_port(), free_port(), free_port())


@contextlib.contextmanager
def stand_in(leaf: Leaf, **options: object) -> Iterator[MailPorts]:
    ports = fresh_ports()
    with mail_stand_in(LOOPBACK, ports, leaf, **options):  # type: ignore[arg-type]
        yield ports


async def probe(
    ports: MailPorts,
    context: ssl.SSLContext,
    mail_host: str | None = HOST,
    limit: float = TIMEOUT,
    address: str = LOOPBACK,
) -> dict[str, Result]:
    results = await probe_mail_ports(
        address,
        mail_host,
        timeout=limit,
        tls_context=context,
        now=dt.datetime.now(dt.UTC),
        ports=ports,
    )
    assert [r.check for r in results] == [*PORT_CHECKS, "tls.expiry"]
    return {r.check: r for r in results}


@contextlib.asynccontextmanager
async def raw_servers(handler: Handler, count: int = 4) -> AsyncIterator[MailPorts]:
    """``count`` plain TCP listeners on loopback running ``handler`` (the rest refuse)."""
    clients: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.append(writer)
        await handler(reader, writer)

    servers = [await asyncio.start_server(tracked, LOOPBACK, 0) for _ in range(count)]
    taken = [s.sockets[0].getsockname()[1] for s in servers]
    ports = [*taken, *(free_port() for _ in range(4 - count))]
    try:
        yield MailPorts(*ports)
    finally:
        for server in servers:
            server.close()
        for writer in clients:
            writer.close()
        for server in servers:
            await server.wait_closed()


async def test_a_healthy_server_is_ok_on_every_port_with_its_days_left(
    ca: TestCA, context: ssl.SSLContext
) -> None:
    leaf = ca.issue(HOST)
    with stand_in(leaf) as ports:
        results = await probe(ports, context)

    for check in PORT_CHECKS:
        assert results[check].state == "ok", results[check]
    expiry = results["tls.expiry"]
    assert expiry.state == "ok"
    assert expiry.threshold == "30 days"
    assert expiry.observed is not None and 89.9 < float(expiry.observed.split()[0]) <= 90.0
    assert "smtp.25, smtp.465, smtp.587, imap.993" in expiry.detail


async def test_a_certificate_for_another_name_fails_every_port_and_says_which_names(
    ca: TestCA, context: ssl.SSLContext
) -> None:
    leaf = ca.issue("mail.elsewhere.test")
    with stand_in(leaf) as ports:
        results = await probe(ports, context)

    for check in PORT_CHECKS:
        assert results[check].state == "failing"
        assert f"not valid for {HOST} (it names mail.elsewhere.test)" in results[check].detail
    assert results["smtp.25"].severity == "critical"
    assert results["tls.expiry"].state == "ok"  # still measured, from the second look


async def test_an_expired_certificate_is_named_expired_and_its_expiry_is_still_measured(
    ca: TestCA, context: ssl.SSLContext
) -> None:
    now = dt.datetime.now(dt.UTC)
    leaf = ca.issue(
        HOST, not_before=now - dt.timedelta(days=90), not_after=now - dt.timedelta(days=2)
    )
    with stand_in(leaf) as ports:
        results = await probe(ports, context)

    for check in PORT_CHECKS:
        assert results[check].state == "failing"
        assert "certificate expired (not after" in results[check].detail
    expiry = results["tls.expiry"]
    assert (expiry.state, expiry.severity, expiry.threshold) == ("failing", "critical", "1 day")
    assert expiry.observed == "-2.0 days"
    assert "has expired" in expiry.detail


async def test_a_certificate_from_an_unknown_ca_is_untrusted(
    ca: TestCA, context: ssl.SSLContext, tmp_path: Path
) -> None:
    stranger = TestCA(tmp_path / "stranger", name="Someone else's CA")
    with stand_in(stranger.issue(HOST)) as ports:
        results = await probe(ports, context)

    for check in PORT_CHECKS:
        assert results[check].state == "failing"
        assert "certificate untrusted" in results[check].detail
    assert results["tls.expiry"].state == "ok"


async def test_without_the_ca_file_only_the_system_trust_counts(ca: TestCA) -> None:
    system_only = tls_context(Settings())
    assert system_only.verify_mode == ssl.CERT_REQUIRED and system_only.check_hostname
    with stand_in(ca.issue(HOST)) as ports:
        results = await probe(ports, system_only)

    assert results["smtp.25"].state == "failing"
    assert "untrusted" in results["smtp.25"].detail


@pytest.mark.parametrize(
    ("left", "severity", "threshold"),
    [
        (dt.timedelta(days=20), "warning", "30 days"),
        (dt.timedelta(days=3), "critical", "7 days"),
        (dt.timedelta(hours=12), "critical", "1 day"),
    ],
)
async def test_a_short_lived_certificate_fails_tls_expiry_at_its_threshold(
    ca: TestCA, context: ssl.SSLContext, left: dt.timedelta, severity: str, threshold: str
) -> None:
    leaf = ca.issue(HOST, not_after=dt.datetime.now(dt.UTC) + left)
    with stand_in(leaf) as ports:
        results = await probe(ports, context)

    for check in PORT_CHECKS:
        assert results[check].state == "ok"  # still valid: only the expiry check speaks
    expiry = results["tls.expiry"]
    assert (expiry.state, expiry.severity, expiry.threshold) == ("failing", severity, threshold)
    days = left.total_seconds() / 86_400
    assert expiry.observed is not None
    assert abs(float(expiry.observed.split()[0]) - days) < 0.1
    assert f"expires in under {threshold}" in expiry.detail


async def test_smtp_without_starttls_fails_ports_25_and_587(
    ca: TestCA, context: ssl.SSLContext
) -> None:
    with stand_in(ca.issue(HOST), starttls=False) as ports:
        results = await probe(ports, context)

    for check in ("smtp.25", "smtp.587"):
        assert results[check].state == "failing"
        assert "STARTTLS is not offered" in results[check].detail
    assert results["smtp.25"].severity == "critical"
    assert results["smtp.465"].state == results["imap.993"].state == "ok"


async def test_refused_ports_are_failing_and_port_25_down_is_critical(
    context: ssl.SSLContext,
) -> None:
    results = await probe(fresh_ports(), context)

    for check in PORT_CHECKS:
        assert results[check].state == "failing"
        assert results[check].detail.endswith("connection refused")
    assert results["smtp.25"].severity == "critical"
    assert results["smtp.465"].severity == "warning"
    assert results["tls.expiry"].state == "unknown"  # no certificate seen: not checked


async def test_silent_ports_are_unknown_after_one_timeout_not_four(
    context: ssl.SSLContext,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()  # accepts, never speaks, until the prober hangs up
        writer.close()

    async with raw_servers(silent) as ports:
        started = time.monotonic()
        results = await probe(ports, context, limit=0.5)
        elapsed = time.monotonic() - started

    for check in PORT_CHECKS:
        assert results[check].state == "unknown", results[check]
        assert "timed out after 0.5 s" in results[check].detail
    assert "waiting for the banner" in results["smtp.25"].detail
    assert "the TLS handshake" in results["imap.993"].detail
    assert results["tls.expiry"].state == "unknown"
    assert 0.5 <= elapsed < 1.5  # the four ports were probed at once


@pytest.mark.parametrize(
    ("banner", "expected"),
    [
        (b"554 5.3.2 not accepting mail\r\n", "wrong banner: 554 5.3.2 not accepting mail"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "wrong banner: "),
    ],
)
async def test_a_wrong_banner_is_failing(
    context: ssl.SSLContext, banner: bytes, expected: str
) -> None:
    async def wrong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await reader.read()
        writer.close()

    async with raw_servers(wrong, count=1) as ports:  # port 25 answers; the rest refuse
        results = await probe(ports, context)

    assert results["smtp.25"].state == "failing"
    assert expected in results["smtp.25"].detail
    assert results["smtp.25"].severity == "critical"


async def test_a_tls_port_speaking_plain_text_is_failing(context: ssl.SSLContext) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.probe.test ESMTP plain\r\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await reader.read()
        writer.close()

    async with raw_servers(plain) as ports:
        results = await probe(ports, context)

    for check in ("smtp.465", "imap.993"):
        assert results[check].state == "failing"
        assert "TLS failed during the" in results[check].detail, results[check]


async def test_an_imap_port_that_says_bye_is_failing(ca: TestCA, context: ssl.SSLContext) -> None:
    with stand_in(ca.issue(HOST), imap_greeting=b"* BYE too many connections\r\n") as ports:
        results = await probe(ports, context)

    assert results["imap.993"].state == "failing"
    assert "not an IMAP greeting: * BYE too many connections" in results["imap.993"].detail
    assert results["smtp.25"].state == "ok"


async def test_without_a_mail_host_the_ports_are_checked_but_not_the_name(
    ca: TestCA, context: ssl.SSLContext
) -> None:
    with stand_in(ca.issue("anything.test")) as ports:
        results = await probe(ports, context, mail_host=None)

    for check in PORT_CHECKS:
        assert results[check].state == "ok"
        assert "certificate name not checked" in results[check].detail
    assert results["tls.expiry"].state == "ok"


@pytest.fixture
def namespace() -> Iterator[tuple[str, str]]:
    """A network namespace joined to this one by a veth pair: (its name, its address)."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    name, outside, inside = f"mfp{tag}", f"mfp{tag}h", f"mfp{tag}n"
    hosts = list(pick_subnet().hosts())
    made = False
    try:
        ip("netns", "add", name)
        made = True
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", name)
        ip("addr", "add", f"{hosts[0]}/24", "dev", outside)
        ip("link", "set", outside, "up")
        ip("-n", name, "addr", "add", f"{hosts[1]}/24", "dev", inside)
        ip("-n", name, "link", "set", inside, "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield name, str(hosts[1])
    finally:
        if made:
            kill_namespace(name)
        ip("link", "del", outside, check=False)


async def test_a_server_in_its_own_namespace_on_the_standard_ports(
    namespace: tuple[str, str], ca: TestCA, context: ssl.SSLContext
) -> None:
    name, address = namespace
    leaf = ca.issue(HOST)
    command = ["ip", "netns", "exec", name, sys.executable, "-m", "tests.support.mail_ports"]
    server = await asyncio.create_subprocess_exec(
        *command, address, str(leaf.cert), str(leaf.key), cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), 30)
        assert line.strip() == b"ready"
        up = await probe(MailPorts(), context, address=address)
        server.kill()
        await asyncio.wait_for(server.wait(), 10)
        down = await probe(MailPorts(), context, address=address)
        nobody = str(ipaddress.ip_address(address) + 1)  # in the subnet, no host behind it
        unreachable = await probe(MailPorts(), context, address=nobody, limit=1.0)
    finally:
        if server.returncode is None:
            server.kill()
            await asyncio.wait_for(server.wait(), 10)

    assert all(up[check].state == "ok" for check in PORT_CHECKS), up
    assert up["tls.expiry"].state == "ok"
    assert up["smtp.25"].detail == f"{address}:25: answers"
    assert down["smtp.25"].state == "failing" and down["smtp.25"].severity == "critical"
    assert down["smtp.25"].detail == f"{address}:25: connection refused"
    for check in PORT_CHECKS:  # no answer at all: could not check
        assert unreachable[check].state == "unknown", unreachable[check]
        assert "waiting for the connection" in unreachable[check].detail
