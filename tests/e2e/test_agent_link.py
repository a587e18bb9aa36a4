"""Control plane, OpenBao and several real agent processes on loopback."""

from __future__ import annotations

import http.client
import re
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import PlaneFactory
from tests.support.stack import AgentProcess, ControlPlane, agents

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plane(shared_plane: ControlPlane) -> ControlPlane:
    """No test here stops the plane or changes its settings: they share one."""
    return shared_plane


def test_agents_enroll_answer_commands_and_stream_metrics(
    plane: ControlPlane, tmp_path: Path
) -> None:
    servers = [plane.new_server(f"mx{i}") for i in range(2)]
    processes = [AgentProcess(tmp_path / f"agent{i}", toml) for i, (_, toml) in enumerate(servers)]
    with agents(*processes):
        for server_id, _ in servers:
            server = plane.wait_status(server_id, "online")
            assert server["certificate_serial"]
            assert set(server["capabilities"]) == {
                "heartbeat",
                "metrics",
                "commands",
                "mail_counts",
            }

        for (server_id, _), process in zip(servers, processes, strict=True):
            ping = plane.command(server_id, "ping", echo=server_id)
            facts = plane.command(server_id, "collect-facts")
            done = plane.wait_command(server_id, ping["id"])
            assert done["state"] == "succeeded"
            assert done["result"]["echo"] == server_id
            facts = plane.wait_command(server_id, facts["id"])
            assert facts["state"] == "succeeded"
            assert facts["result"]["agent_version"]
            assert any(a["address"] == "127.0.0.1" for a in facts["result"]["addresses"]["lo"])
            key = process.state_dir / "identity" / "agent.key"
            assert key.stat().st_mode & 0o777 == 0o600

        deadline = time.monotonic() + 20
        for server_id, _ in servers:
            samples: list[dict[str, object]] = []
            while len(samples) < 3 and time.monotonic() < deadline:
                time.sleep(0.5)
                samples = plane.api(
                    "GET", f"/api/v1/servers/{server_id}/metrics", params={"step": "raw"}
                )["samples"]
            assert len(samples) >= 3
            series = plane.api("GET", f"/api/v1/servers/{server_id}/metrics")["series"]
            assert series["cpu_percent"][-1]["count"] >= 1
            assert series["memory_used_bytes"][-1]["max"] > 0

        # This replica holds the two streams (an earlier test's agent, stopped, may take a
        # moment to be let go); the fleet gauge counts the whole database, which other
        # tests' agents share meanwhile.
        deadline = time.monotonic() + 10
        exported = plane.http.get("/metrics").text
        while not re.search(r"^mailfleet_agents_connected 2\.0$", exported, re.M):
            assert time.monotonic() < deadline, exported[-3000:]
            time.sleep(0.2)
            exported = plane.http.get("/metrics").text
        online = re.search(r'^mailfleet_agents\{status="online"\} (\S+)$', exported, re.M)
        assert online is not None and float(online.group(1)) >= 2, exported[-3000:]
        # At least the four commands above: serve's own jobs may send more meanwhile.
        round_trips = re.search(
            r"^mailfleet_command_round_trip_seconds_count (\S+)$", exported, re.M
        )
        assert round_trips is not None and float(round_trips.group(1)) >= 4, exported[-2000:]
        # serve's first periodic round ran at start: each job's time is on show.
        for job in ("cost-metering", "incident-escalation", "tls-renewal"):
            timed = rf'^mailfleet_periodic_job_seconds_count{{name="{job}"}} ([1-9]\S*)$'
            assert re.search(timed, exported, re.M), job


def test_revocation_closes_the_stream_and_a_new_token_re_enrolls(
    plane: ControlPlane, tmp_path: Path
) -> None:
    server_id, toml = plane.new_server("revoked")
    agent = AgentProcess(tmp_path / "agent", toml)
    with agents(agent):
        first = plane.wait_status(server_id, "online")
        plane.api("POST", f"/api/v1/servers/{server_id}/revoke-agent")
        revoked_at = time.monotonic()
        assert agent.process is not None
        agent.process.wait_for_line_containing("UNAUTHENTICATED", timeout=5)
        assert time.monotonic() - revoked_at < 5
        assert plane.api("GET", f"/api/v1/servers/{server_id}")["status"] == "revoked"
        agent.process.wait_for_line_containing("no unused join token", timeout=5)
        assert plane.api("GET", f"/api/v1/servers/{server_id}")["status"] == "revoked"

        agent.write_config(
            plane.join_toml(server_id), backoff_initial_seconds=0.2, backoff_max_seconds=1
        )
        again = plane.wait_status(server_id, "online", timeout=20)
        assert again["certificate_serial"] != first["certificate_serial"]


def test_commands_wait_for_an_offline_agent_and_are_idempotent(
    plane: ControlPlane, tmp_path: Path
) -> None:
    server_id, toml = plane.new_server("offline")
    body = {"kind": "ping", "idempotency_key": "nightly-1", "payload": {"echo": "x"}}
    first = plane.api("POST", f"/api/v1/servers/{server_id}/commands", 201, json=body)
    repeat = plane.api("POST", f"/api/v1/servers/{server_id}/commands", 200, json=body)
    assert repeat["id"] == first["id"]
    changed = {**body, "payload": {"echo": "y"}}
    plane.api("POST", f"/api/v1/servers/{server_id}/commands", 409, json=changed)
    time.sleep(1)
    assert (
        plane.api("GET", f"/api/v1/servers/{server_id}/commands/{first['id']}")["state"] == "queued"
    )
    with agents(AgentProcess(tmp_path / "agent", toml)):
        done = plane.wait_command(server_id, first["id"])
    assert done["state"] == "succeeded"
    assert done["attempts"] == 1


def test_timeouts_and_cancellation(plane: ControlPlane, tmp_path: Path) -> None:
    server_id, toml = plane.new_server("slow")
    with agents(AgentProcess(tmp_path / "agent", toml)):
        plane.wait_status(server_id, "online")
        slow = plane.api(
            "POST",
            f"/api/v1/servers/{server_id}/commands",
            201,
            json={"kind": "ping", "payload": {"delay_seconds": 30}, "timeout_seconds": 1},
        )
        timed_out = plane.wait_command(server_id, slow["id"])
        assert timed_out["state"] == "timed_out"

        long = plane.command(server_id, "ping", delay_seconds=60)
        plane.wait_until(
            f"/api/v1/servers/{server_id}/commands/{long['id']}",
            lambda c: c["state"] == "running",
            10,
        )
        plane.api("POST", f"/api/v1/servers/{server_id}/commands/{long['id']}/cancel")
        cancelled = plane.wait_command(server_id, long["id"])
        assert cancelled["state"] == "cancelled"
        plane.api("POST", f"/api/v1/servers/{server_id}/commands/{long['id']}/cancel", 409)


def test_command_payloads_are_checked_per_kind(plane: ControlPlane) -> None:
    server_id, _ = plane.new_server("checked")
    bad = plane.http.post(
        f"/api/v1/servers/{server_id}/commands",
        json={"kind": "ping", "payload": {"delay_seconds": -1}},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.payload.delay_seconds"
    unknown = plane.http.post(f"/api/v1/servers/{server_id}/commands", json={"kind": "rm-rf"})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "body.kind"


def test_commands_are_answered_without_waiting_for_a_heartbeat(
    plane_factory: PlaneFactory, tmp_path: Path
) -> None:
    """Both sides wake on new work: neither the dispatcher nor the agent's writer idles it."""
    plane = plane_factory(MAILFLEET_HEARTBEAT_INTERVAL_SECONDS="5")
    server_id, toml = plane.new_server("prompt")
    with agents(AgentProcess(tmp_path / "agent", toml)):
        plane.wait_status(server_id, "online")
        for _ in range(5):
            started = time.monotonic()
            ping = plane.command(server_id, "ping")
            assert plane.wait_command(server_id, ping["id"], timeout=10)["state"] == "succeeded"
            assert time.monotonic() - started < 2.5, "waited for a heartbeat (5 s) to deliver"


def test_an_idle_api_connection_outlives_the_idle_timeouts_in_front(plane: ControlPlane) -> None:
    """The API keeps an idle connection longer (75 s) than HAProxy's pool and httpx keep
    theirs (5 s): they close first, so no request is sent into a connection the server is
    closing (seen as a failed POST in the fleet benchmark: ReadError, RemoteProtocolError)."""
    host, port = plane.env["MAILFLEET_API_ADDR"].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        assert first.status == 200 and first.read()
        opened = conn.sock
        time.sleep(5.5)  # past uvicorn's own default (5 s), which closed it meanwhile
        conn.request("GET", "/healthz")  # http.client raises if the server had closed it
        second = conn.getresponse()
        assert second.status == 200 and second.read()
        assert conn.sock is opened  # the same connection, not a new one
    finally:
        conn.close()
