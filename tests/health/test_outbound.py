"""Outbound SMTP: the observer (real sockets), the verdicts, and the command round trip
(queued on both databases, run by the agent's probe against a real observer, recorded)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiosmtplib
import pytest
import pytest_asyncio
from sqlalchemy import select

from agent.smtp_probe import probe_out
from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.health.models import HealthCheck
from control_plane.health.observer import SmtpObserver
from control_plane.health.outbound import CHECK, KIND, judge, queue_outbound_probe
from control_plane.health.results import Result
from control_plane.listeners import AddressInUse
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.tenants.models import Tenant

OBSERVER = "203.0.113.25:25"


async def start_observer(idle: float = 2.0, max_connections: int = 10) -> SmtpObserver:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    observer = SmtpObserver("127.0.0.1:0", timeout=idle, max_connections=max_connections)
    await observer.start(sock)
    return observer


@pytest_asyncio.fixture
async def observer() -> AsyncIterator[SmtpObserver]:
    running = await start_observer()
    try:
        yield running
    finally:
        await running.stop()


async def talk(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def say(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str) -> list[str]:
    writer.write(f"{line}\r\n".encode())
    await writer.drain()
    return await reply(reader)


async def reply(reader: asyncio.StreamReader) -> list[str]:
    lines = []
    while True:
        line = (await asyncio.wait_for(reader.readline(), 5)).decode().rstrip("\r\n")
        assert line, "connection closed"
        lines.append(line)
        if line[3:4] != "-":
            return lines


# -- the observer -------------------------------------------------------------------------


async def test_the_observer_names_the_peer_and_takes_no_mail(observer: SmtpObserver) -> None:
    reader, writer = await talk(observer.port)
    try:
        assert (await reply(reader))[0].startswith("220 mailfleet-observer")
        assert await say(reader, writer, "EHLO vps.test") == [
            "250-mailfleet-observer sees 127.0.0.1",
            "250 HELP",
        ]
        assert await say(reader, writer, "HELO vps.test") == [
            "250 mailfleet-observer sees 127.0.0.1"
        ]
        assert (await say(reader, writer, "NOOP"))[0].startswith("250 ")
        assert (await say(reader, writer, "MAIL FROM:<a@example.com>"))[0].startswith("550 ")
        assert (await say(reader, writer, "DATA"))[0].startswith("550 ")
        assert (await say(reader, writer, "STARTTLS"))[0].startswith("502 ")
        assert (await say(reader, writer, "QUIT"))[0].startswith("221 ")
        assert await reader.read() == b""  # closed after QUIT
    finally:
        writer.close()


async def test_an_smtp_client_library_cannot_send_through_it(observer: SmtpObserver) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=observer.port, timeout=5)
    await client.connect()
    try:
        code, message = await client.ehlo(hostname="vps.test")
        assert code == 250
        assert "mailfleet-observer sees 127.0.0.1" in message
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await client.sendmail("a@example.com", ["b@example.com"], "Subject: x\r\n\r\nx")
        assert refused.value.code == 550
    finally:
        await client.quit()


async def test_connections_are_bounded_in_number_commands_and_idle_time() -> None:
    observer = await start_observer(idle=0.3, max_connections=2)
    held = []
    try:
        for _ in range(2):
            reader, writer = await talk(observer.port)
            assert (await reply(reader))[0].startswith("220 ")
            held.append(writer)
        reader, writer = await talk(observer.port)  # the third one
        held.append(writer)
        assert (await reply(reader))[0].startswith("421 ")
        assert await reader.read() == b""

        await asyncio.sleep(0.5)  # the first two said nothing: dropped
        deadline = asyncio.get_running_loop().time() + 5
        while observer.connections and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        assert observer.connections == 0

        reader, writer = await talk(observer.port)
        held.append(writer)
        await reply(reader)
        for _ in range(20):
            writer.write(b"NOOP\r\n")
        await writer.drain()
        answers = [await reply(reader) for _ in range(21)]
        assert answers[-1][0].startswith("421 ")  # too many commands
    finally:
        for writer in held:
            writer.close()
        await observer.stop()


async def test_stop_closes_live_connections() -> None:
    observer = await start_observer(idle=30)
    reader, writer = await talk(observer.port)
    await reply(reader)
    await observer.stop()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert observer.connections == 0


async def test_a_taken_address_names_the_setting() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(AddressInUse, match="MAILFLEET_SMTP_OBSERVER_ADDR"):
            await SmtpObserver(addr, timeout=1, max_connections=1).start()


def test_serve_registers_the_result_handler() -> None:
    check = (
        "import control_plane.server\n"
        "from control_plane.commands import handlers\n"
        "assert handlers.handles_results('smtp.probe_out')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]


# -- verdicts -----------------------------------------------------------------------------


def probe_result(**fields: object) -> str:
    result: dict[str, object] = {
        "connected": True,
        "banner": "mailfleet-observer ESMTP",
        "ehlo": ["mailfleet-observer sees 198.18.3.7", "HELP"],
        "error_kind": None,
        "error": None,
        "observed_source": "198.18.3.7",
        "elapsed_ms": 12,
    }
    return json.dumps({**result, **fields})


def test_the_sending_address_seen_is_ok() -> None:
    result = probed()
    assert (result.check, result.state, result.observed) == (CHECK, "ok", "198.18.3.7")


def test_another_source_address_is_failing_naming_both() -> None:
    result = judge("succeeded", probe_result(), None, "198.18.9.9", OBSERVER)
    assert (result.state, result.severity) == ("failing", "warning")
    assert "198.18.3.7" in result.detail and "198.18.9.9" in result.detail
    assert (result.observed, result.threshold) == ("198.18.3.7", "198.18.9.9")


def probed(**fields: object) -> Result:
    """The verdict on a probe that ran, from the server whose sending address is 198.18.3.7."""
    return judge("succeeded", probe_result(**fields), None, "198.18.3.7", OBSERVER)


def test_a_refusal_is_critical_and_a_timeout_is_unknown() -> None:
    refused = probed(connected=False, error_kind="refused", observed_source=None)
    assert (refused.state, refused.severity) == ("failing", "critical")
    assert "refuses outbound port 25" in refused.detail

    timeout = probed(connected=False, error_kind="timeout", observed_source=None)
    assert timeout.state == "unknown"
    assert "port 25 may be blocked" in timeout.detail

    unreachable = probed(connected=False, error_kind="unreachable", error="no route")
    assert unreachable.state == "unknown"


def test_an_answer_that_is_not_the_observer_is_failing() -> None:
    foreign = probed(error_kind="protocol", error="banner: 554 go away", observed_source=None)
    assert (foreign.state, foreign.severity) == ("failing", "warning")
    silent = judge("succeeded", probe_result(observed_source=None), None, None, OBSERVER)
    assert silent.state == "failing"


def test_a_probe_that_did_not_run_is_unknown() -> None:
    for state, error in (
        ("timed_out", "not delivered in time"),
        ("failed", "unknown command kind 'smtp.probe_out'"),
        ("cancelled", None),
    ):
        result = judge(state, None, error, "198.18.3.7", OBSERVER)
        assert result.state == "unknown", state
    assert judge("succeeded", "not json", None, None, OBSERVER).state == "unknown"
    # no sending address on record: the port is still known to be open
    assert judge("succeeded", probe_result(), None, None, OBSERVER).state == "ok"


# -- the round trip, on both databases ----------------------------------------------------


async def a_server(db: Database, *, enrolled: bool = True, ipv4: str | None = None) -> Server:
    async with db.session() as session:
        tenant = Tenant(name=f"o-{uuid.uuid4()}")
        session.add(tenant)
        await session.flush()
        server = Server(
            tenant_id=tenant.id,
            name="o",
            provider="manual",
            agent_state="enrolled" if enrolled else "pending",
            ipv4=ipv4,
            mail_hostname="mail.example.test",
        )
        session.add(server)
        await session.flush()
        return server


def observer_settings(tmp_path: Path, port: int | None) -> Settings:
    if port is None:
        return Settings(home=tmp_path)
    return Settings(
        home=tmp_path,
        smtp_observer_addr="0.0.0.0:2525",
        smtp_observer_advertise=f"127.0.0.1:{port}",
        health_outbound_timeout_seconds=2,
        health_outbound_expire_seconds=30,
    )


async def probes_of(db: Database, server: Server) -> list[Command]:
    async with db.session() as session:
        return list(
            (
                await session.scalars(
                    select(Command).where(Command.server_id == server.id, Command.kind == KIND)
                )
            ).all()
        )


async def check_of(db: Database, server: Server) -> HealthCheck:
    async with db.session() as session:
        row = await session.scalar(
            select(HealthCheck).where(
                HealthCheck.server_id == server.id, HealthCheck.check == CHECK
            )
        )
    assert row is not None
    return row


async def test_probes_are_queued_only_with_an_observer_and_an_agent(
    db: Database, tmp_path: Path
) -> None:
    enrolled, pending = await a_server(db), await a_server(db, enrolled=False)
    async with db.session() as session:
        assert not await queue_outbound_probe(session, enrolled, observer_settings(tmp_path, None))
        assert not await queue_outbound_probe(session, pending, observer_settings(tmp_path, 2525))
    assert await probes_of(db, enrolled) == [] and await probes_of(db, pending) == []

    settings = observer_settings(tmp_path, 2525)
    for _ in range(2):  # the second finds the first still on its way
        async with db.session() as session:
            assert await queue_outbound_probe(session, enrolled, settings)
    (command,) = await probes_of(db, enrolled)
    assert json.loads(command.payload) == {
        "host": "127.0.0.1",  # the advertised address, not the listen address
        "port": 2525,
        "timeout_seconds": 2.0,
        "helo": "mail.example.test",
    }
    assert command.expires_at is not None
    assert command.expires_at - command.created_at <= timedelta(seconds=31)


async def run_probe(db: Database, server: Server, settings: Settings) -> None:
    """What the agent does with the queued command, and the gateway with its result."""
    async with db.session() as session:
        assert await queue_outbound_probe(session, server, settings)
    (command,) = [c for c in await probes_of(db, server) if c.state == "queued"]
    found = await probe_out(json.loads(command.payload), lambda p, m: None)
    async with db.session() as session:
        await commands.record_result(
            session, server.id, command.id, "succeeded", json.dumps(found), None
        )


async def test_a_probe_through_the_observer_is_recorded(
    db: Database, tmp_path: Path, observer: SmtpObserver
) -> None:
    settings = observer_settings(tmp_path, observer.port)
    good, switched = await a_server(db, ipv4="127.0.0.1"), await a_server(db, ipv4="198.18.3.7")

    await run_probe(db, good, settings)
    await run_probe(db, switched, settings)

    row = await check_of(db, good)
    assert (row.state, row.observed) == ("ok", "127.0.0.1")
    row = await check_of(db, switched)  # failing: pending until the flap guard's re-check
    assert (row.pending_state, row.pending_severity) == ("failing", "warning")
    assert "127.0.0.1" in (row.pending_detail or "") and "198.18.3.7" in (row.pending_detail or "")


async def test_a_refused_probe_and_an_undelivered_one_are_recorded(
    db: Database, tmp_path: Path
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        settings = observer_settings(tmp_path, closed.getsockname()[1])
        refused = await a_server(db, ipv4="127.0.0.1")
        await run_probe(db, refused, settings)
    row = await check_of(db, refused)
    assert (row.pending_state, row.pending_severity) == ("failing", "critical")

    offline = await a_server(db, ipv4="127.0.0.1")
    async with db.session() as session:
        assert await queue_outbound_probe(session, offline, settings)
    async with db.session() as session:  # the agent never picked it up
        await commands.expire_overdue(session, utcnow() + timedelta(seconds=31))
    row = await check_of(db, offline)
    assert row.state == "unknown"
    assert "did not run" in row.detail
