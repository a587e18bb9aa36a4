"""Two ``mailfleet serve`` replicas on one PostgreSQL database behind a real HAProxy (the
packaged configuration) on loopback, real agents enrolled and connected through it. The
replica holding the streams (and a provisioning step's lease) is killed with SIGKILL while
commands are queued and running: the agents reconnect through HAProxy to the other replica
within their backoff, every command ends exactly once, every metric batch is stored once,
the other replica takes the step over when the lease lapses, and, brought back, the killed
replica carries load again (an agent's stream; commands through either replica's API)."""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from control_plane.provisioning.registry import HOSTWINDS_SECRET
from control_plane.vault.client import Vault
from tests.e2e.test_agent_resilience import starts
from tests.fakes.hostwinds import HostwindsDouble, hostwinds_double
from tests.support.haproxy import Replica, haproxy_binary, loopback_binds, running_haproxy
from tests.support.openbao import DevOpenBao
from tests.support.stack import AgentProcess, ControlPlane, control_plane_env

pytestmark = pytest.mark.e2e
AGENTS = 4
LEASE_SECONDS = 2.0
# The agents' reconnect backoff (tests.support.stack: 0.2 s doubling to 2 s), a few rounds.
RECONNECT_WITHIN = 8.0
HOSTWINDS_KEY = "hw-failover-key"


@pytest.fixture
def hostwinds() -> Iterator[HostwindsDouble]:
    # Loopback "VPSs": the agent's install over SSH after booting connects there, not out.
    with hostwinds_double(
        api_key=HOSTWINDS_KEY, create_delay=0.2, addresses="127.0.53.0/24"
    ) as double:
        yield double


@pytest.fixture
def kv_mount(openbao: DevOpenBao, hostwinds: HostwindsDouble) -> Iterator[str]:
    """A KV mount of this test's own, with the Hostwinds double configured in it (other
    tests on this OpenBao keep theirs)."""
    mount = f"failover-{secrets.token_hex(3)}"
    vault = Vault(openbao.url, token=openbao.token, kv_mount=mount)

    async def configure() -> None:
        await vault.ensure_kv_mount()
        await vault.put(
            HOSTWINDS_SECRET,
            {"api_key": HOSTWINDS_KEY, "template": "debian-12", "base_url": hostwinds.url},
        )

    asyncio.run(configure())
    try:
        yield mount
    finally:
        vault._client.sys.disable_secrets_engine(mount)
        vault.close()


def replica_of(plane: ControlPlane) -> Replica:
    env = plane.env
    return Replica(
        env["MAILFLEET_API_ADDR"], env["MAILFLEET_GRPC_ADDR"], env["MAILFLEET_ENROLL_ADDR"]
    )


def streams(plane: ControlPlane) -> int:
    text = plane.http.get("/metrics").text
    found = re.search(r"^mailfleet_agents_connected (\S+)$", text, re.MULTILINE)
    assert found is not None, text[:400]
    return int(float(found.group(1)))


def wait_for(what: str, check: Callable[[], bool], within: float) -> float:
    """Seconds until ``check()`` holds (it must within ``within``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"{what}: not within {within} s"
        time.sleep(0.05)
    return time.monotonic() - started


async def _lease(database_url: str, server_id: str) -> tuple[str, str | None]:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        row = await conn.fetchrow("SELECT state, lease_owner FROM servers WHERE id = $1", server_id)
    finally:
        await conn.close()
    assert row is not None
    return str(row["state"]), row["lease_owner"]


def lease(database_url: str, server_id: str) -> tuple[str, str | None]:
    """The server's provisioning state and lease holder (host:pid:random)."""
    return asyncio.run(_lease(database_url, server_id))


def spooled(agent: AgentProcess) -> tuple[int, set[int]]:
    """The agent's newest batch sequence and the batches still unacknowledged on disk."""
    spool = agent.state_dir / "metrics"
    left = {int(p.name.split(".")[0]) for p in spool.glob("*.batch")}
    counter = spool / "sequence"
    after = int(counter.read_text()) if counter.exists() else 1
    return max(after - 1, *left, 0), left


@pytest.mark.skipif(haproxy_binary() is None, reason="haproxy is not installed (make system-deps)")
def test_losing_a_replica_loses_nothing(
    tmp_path: Path,
    openbao: DevOpenBao,
    database_url: str,
    hostwinds: HostwindsDouble,
    kv_mount: str,
) -> None:
    binds = loopback_binds()
    shared = {
        "MAILFLEET_GATEWAY_ADVERTISE_ADDR": binds.link,
        "MAILFLEET_ENROLL_ADVERTISE_ADDR": binds.enroll,
        "MAILFLEET_VAULT_KV_MOUNT": kv_mount,
        "MAILFLEET_PROVISION_LEASE_SECONDS": str(LEASE_SECONDS),
        "MAILFLEET_PROVISION_POLL_SECONDS": "0.2",
    }
    planes: list[ControlPlane] = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        planes.append(
            ControlPlane(control_plane_env(tmp_path / name, openbao, database_url, **shared))
        )
    a, b = planes
    lb = ControlPlane({"MAILFLEET_API_ADDR": binds.api})  # the API through HAProxy
    agents: list[AgentProcess] = []
    try:
        a.start(bootstrap=True)  # first and alone: it migrates, and takes every stream below
        for plane in (b, lb):
            plane.admin_key = a.admin_key
            plane.http.headers["Authorization"] = f"Bearer {a.admin_key}"
        with running_haproxy(binds, [replica_of(a), replica_of(b)], tmp_path / "haproxy.log"):
            tenant = lb.api("POST", "/api/v1/tenants", 201, json={"name": f"t-fo-{time.time_ns()}"})
            # A provisioning step in flight on A: Hostwinds' add_instance hangs under A's lease.
            hostwinds.fail_next(kind="hang", actions={"add_instance"}, hang=20)
            ordered = lb.api(
                "POST",
                "/api/v1/servers",
                201,
                json={"name": "hw-fo", "provider": "hostwinds", "tenant_id": tenant["id"],
                      "region": "2", "plan": "12", "mail_stack": "none"},
            )  # fmt: skip
            wait_for("add_instance called", lambda: bool(hostwinds.calls_of("add_instance")), 15)
            servers = []
            for index in range(AGENTS):
                server_id, toml = lb.new_server(f"fo-{index}")
                servers.append(server_id)
                agents.append(AgentProcess(tmp_path / f"agent{index}", toml))
                agents[-1].start()
            for server_id in servers:
                lb.wait_status(server_id, "online")
            b.start()
            assert (streams(a), streams(b)) == (AGENTS, 0)
            assert a.process is not None
            a_pid = a.process.process.pid
            state, owner = lease(database_url, ordered["id"])
            assert state == "creating" and owner is not None and f":{a_pid}:" in owner

            running = [(s, lb.command(s, "ping", delay_seconds=3)["id"]) for s in servers]
            for server_id, command_id in running:
                path = f"/api/v1/servers/{server_id}/commands/{command_id}"
                lb.wait_until(path, lambda c: c["state"] == "running", 10)
            # Queued as A dies (sent or not), and queued while its agents have no stream.
            issued = [*running, *((s, lb.command(s, "ping", echo="1")["id"]) for s in servers)]
            a.stop(signal.SIGKILL)
            killed = time.monotonic()
            issued += [(s, lb.command(s, "ping", echo="2")["id"]) for s in servers]
            moved = wait_for("streams moved to B", lambda: streams(b) == AGENTS, RECONNECT_WITHIN)
            for server_id, command_id in issued:
                done = lb.wait_command(server_id, command_id, timeout=20)
                assert done["state"] == "succeeded", done
            begun: dict[str, int] = {}
            for agent in agents:
                begun.update(starts(agent))
            assert {c: begun.get(c, 0) for _, c in issued} == {c: 1 for _, c in issued}

            settled = time.monotonic() - killed
            # The step A held is run again by B once A's lease lapses, and moves on.
            wait_for(
                "B took over the provisioning step",
                lambda: lease(database_url, ordered["id"])[0] != "creating",
                LEASE_SECONDS + 10,
            )
            took = time.monotonic() - killed
            assert lease(database_url, ordered["id"])[0] in {"booting", "installing_agent"}
            assert len(hostwinds.calls_of("add_instance")) == 2
            print(
                f"after the kill: streams on B in {moved:.2f} s, {len(issued)} commands settled "
                f"in {settled:.2f} s, provisioning step taken over in {took:.2f} s"
            )

            lb.api("DELETE", f"/api/v1/servers/{ordered['id']}", 202)  # gone by the end

            a.start()  # back: both carry load
            wait_for("HAProxy sees A up", lambda: all(
                status == "UP" for (_, server), status in binds.backend_status().items()
                if server == "replica1"), 10)  # fmt: skip
            extra_id, extra_toml = lb.new_server("fo-back")
            agents.append(AgentProcess(tmp_path / "agent-back", extra_toml))
            agents[-1].start()
            lb.wait_status(extra_id, "online")
            assert (streams(a), streams(b)) == (1, AGENTS)  # leastconn: the new one on A
            for via, server_id in ((a, servers[0]), (b, extra_id), (a, extra_id), (b, servers[1])):
                command = via.command(server_id, "ping", echo="back")
                assert via.wait_command(server_id, command["id"])["state"] == "succeeded"

            for agent in agents:
                agent.stop()
            for server_id, agent in zip(servers, agents, strict=False):
                samples = lb.api("GET", f"/api/v1/servers/{server_id}/metrics",
                                 params={"step": "raw"})["samples"]  # fmt: skip
                times = [s["t"] for s in samples]
                stored = {int(s["batch_sequence"]) for s in samples}
                assert len(times) == len(set(times)), "a batch stored twice"
                newest, unacknowledged = spooled(agent)
                assert newest >= 10
                assert stored | unacknowledged == set(range(1, newest + 1)), "a batch lost"
            gone = f"/api/v1/servers/{ordered['id']}"
            wait_for("deprovisioned", lambda: lb.http.get(gone).status_code == 404, 15)
    finally:
        for agent in agents:
            agent.stop()
        next((p for p in (a, b) if p.process is not None), a).revoke_admin_key()
        for plane in (b, a):
            plane.stop()
            plane.http.close()
        lb.http.close()
