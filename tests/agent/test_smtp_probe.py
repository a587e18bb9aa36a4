"""``smtp.probe_out`` against the control plane's observer and other listeners on loopback."""

from __future__ import annotations

import asyncio
import errno
import json
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent.commands import CommandRunner, handlers_for
from agent.errors import CommandError
from agent.journal import CommandJournal
from agent.smtp_probe import classify, probe_out
from control_plane.health.observer import SmtpObserver
from mailfleet.agent.v1 import agent_pb2
from tests.support.netns import ip, kill_namespace, netns_unavailable, pick_subnet


def no_progress(percent: int, message: str) -> None:
    pass


async def probe(port: int, **extra: Any) -> dict[str, Any]:
    payload = {"host": "127.0.0.1", "port": port, "timeout_seconds": 1.0, "helo": "vps.test"}
    return await probe_out({**payload, **extra}, no_progress)


@pytest_asyncio.fixture
async def observer() -> AsyncIterator[SmtpObserver]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    running = SmtpObserver("127.0.0.1:0", timeout=2.0, max_connections=10)
    await running.start(sock)
    try:
        yield running
    finally:
        await running.stop()


Responder = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest_asyncio.fixture
async def listener() -> AsyncIterator[Callable[[Responder], Awaitable[int]]]:
    """Start a TCP server on loopback running ``respond`` per connection; gives its port."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(respond: Responder) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await respond(reader, writer)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_the_observer_tells_the_address_it_sees(observer: SmtpObserver) -> None:
    result = await probe(observer.port)

    assert result["connected"] is True
    assert result["error_kind"] is None and result["error"] is None
    assert "mailfleet-observer" in result["banner"]
    assert result["ehlo"][0] == "mailfleet-observer sees 127.0.0.1"
    assert result["observed_source"] == "127.0.0.1"
    assert result["local_address"] == "127.0.0.1"
    assert 0 <= result["elapsed_ms"] < 1000


async def test_the_agent_runs_it_as_a_command(observer: SmtpObserver, tmp_path: Path) -> None:
    sent: list[agent_pb2.AgentMessage] = []
    with CommandJournal(tmp_path / "commands.journal") as journal:
        runner = CommandRunner(journal, sent.append, handlers_for(tmp_path))
        payload = {"host": "127.0.0.1", "port": observer.port, "timeout_seconds": 2}
        runner.receive(
            agent_pb2.Command(
                id="probe-1",
                kind="smtp.probe_out",
                payload_json=json.dumps(payload).encode(),
                timeout_ms=10_000,
                attempt=1,
            )
        )
        for _ in range(200):
            final = [m.command_update for m in sent if m.command_update.progress_percent == 100]
            if final:
                break
            await asyncio.sleep(0.02)
        await runner.shutdown(1.0)
    assert final, sent
    assert final[0].state == agent_pb2.COMMAND_STATE_SUCCEEDED
    assert json.loads(final[0].result_json)["observed_source"] == "127.0.0.1"


async def test_a_closed_port_is_refused() -> None:
    with socket.socket() as sock:  # a port nothing listens on (bound, never listening)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = await probe(port)

    assert (result["connected"], result["error_kind"]) == (False, "refused")
    assert result["observed_source"] is None


async def test_a_dropped_syn_is_a_timeout_not_a_refusal() -> None:
    """A listener whose accept queue is full drops new SYNs, as a silent firewall does."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):  # fill the queue (never accepted)
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            await asyncio.sleep(0.1)
            result = await probe(port, timeout_seconds=0.5)
        finally:
            for filler in fillers:
                filler.close()

    assert (result["connected"], result["error_kind"]) == (False, "timeout")
    assert 400 <= result["elapsed_ms"] < 2000


async def test_a_silent_server_times_out_after_connecting(
    listener: Callable[[Responder], Awaitable[int]],
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    result = await probe(await listener(silent), timeout_seconds=0.3)

    assert (result["connected"], result["error_kind"]) == (True, "timeout")
    assert result["error"] == "banner: no answer in time"


async def test_a_refusing_banner_is_a_protocol_error(
    listener: Callable[[Responder], Awaitable[int]],
) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.7.1 no service for you\r\n")
        await writer.drain()

    result = await probe(await listener(refuse))

    assert (result["connected"], result["error_kind"]) == (True, "protocol")
    assert "554 5.7.1 no service for you" in result["error"]


async def test_not_smtp_at_all_is_a_protocol_error(
    listener: Callable[[Responder], Awaitable[int]],
) -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    result = await probe(await listener(http))

    assert result["error_kind"] == "protocol"
    assert "not an SMTP reply" in result["error"]


async def test_a_plain_smtp_server_answers_without_a_source(
    listener: Callable[[Responder], Awaitable[int]],
) -> None:
    async def smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.example ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        await reader.readline()
        writer.write(b"221 bye\r\n")
        await writer.drain()

    result = await probe(await listener(smtp))

    assert result["error_kind"] is None
    assert result["ehlo"] == ["mx.example", "PIPELINING", "8BITMIME"]
    assert result["observed_source"] is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"port": 25}, "host"),
        ({"host": "a b", "port": 25}, "host"),
        ({"host": "127.0.0.1", "port": 70000}, "port"),
        ({"host": "127.0.0.1", "port": "25"}, "port"),
        ({"host": "127.0.0.1", "timeout_seconds": 0}, "timeout_seconds"),
        ({"host": "127.0.0.1", "helo": "x\r\nMAIL FROM:<a@b>"}, "helo"),
    ],
)
async def test_bad_payloads_fail_naming_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(CommandError, match=f"payload.{field}"):
        await probe_out(payload, no_progress)


def test_errors_are_classified() -> None:
    assert classify(OSError(errno.ENETUNREACH, "Network is unreachable"))[0] == "unreachable"
    assert classify(socket.gaierror(-2, "Name or service not known"))[0] == "unreachable"
    assert classify(ConnectionRefusedError())[0] == "refused"
    assert classify(ConnectionResetError())[0] == "protocol"
    assert classify(TimeoutError())[0] == "timeout"


ROOT = Path(__file__).resolve().parents[2]
# Runs inside a VPS-like network namespace: the agent's probe, printed as JSON.
PROBE = """
import asyncio, json, sys
from agent.smtp_probe import probe_out
payload = {"host": sys.argv[1], "port": int(sys.argv[2]), "timeout_seconds": 5}
print(json.dumps(asyncio.run(probe_out(payload, lambda p, m: None))))
"""


@pytest.fixture
def vps_namespace() -> Iterator[tuple[str, str, str]]:
    """A namespace joined to the host by a veth pair: (namespace, host address, its address)."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    ns, host_end = f"mfo{tag}", f"mfo{tag}h"
    hosts = list(pick_subnet().hosts())
    ip("netns", "add", ns)
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", f"{ns}v")
        ip("link", "set", f"{ns}v", "netns", ns)
        ip("addr", "add", f"{hosts[0]}/24", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("-n", ns, "addr", "add", f"{hosts[1]}/24", "dev", f"{ns}v")
        ip("-n", ns, "link", "set", f"{ns}v", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        yield ns, str(hosts[0]), str(hosts[1])
    finally:
        kill_namespace(ns)
        ip("link", "del", host_end, check=False)


async def test_the_observer_sees_the_vps_address_across_a_real_link(
    vps_namespace: tuple[str, str, str],
) -> None:
    ns, host_address, vps_address = vps_namespace
    sock = socket.socket()
    sock.bind((host_address, 0))
    observer = SmtpObserver(f"{host_address}:0", timeout=5, max_connections=5)
    await observer.start(sock)
    try:
        run = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, sys.executable, "-c", PROBE, host_address,
            str(observer.port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )  # fmt: skip
        out, err = await asyncio.wait_for(run.communicate(), 60)
    finally:
        await observer.stop()
    assert run.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["error_kind"] is None, result
    assert result["observed_source"] == result["local_address"] == vps_address
