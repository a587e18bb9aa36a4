"""End to end: a real ``mailfleet serve`` and agent. When the agent's stream drops, the
server's checks run at once: ``agent.link`` reads down in about a second (the flap guard's
re-check one second later confirms it), long before its heartbeats would have expired, and
an incident opens; when it is back, the link is ok again at once."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from control_plane.db.engine import Database
from control_plane.servers.models import Server
from tests.support.openbao import DevOpenBao
from tests.support.stack import AgentProcess, ControlPlane, agents, control_plane

pytestmark = pytest.mark.e2e


def link_of(plane: ControlPlane, server_id: str) -> dict[str, Any] | None:
    health = plane.api("GET", f"/api/v1/servers/{server_id}/health")
    return next((c for c in health["checks"] if c["check"] == "agent.link"), None)


def wait_link(plane: ControlPlane, server_id: str, done: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        link = link_of(plane, server_id)
        if link is not None and done(link):
            return link
        assert time.monotonic() < deadline, f"agent.link is {link}"
        time.sleep(0.1)


async def test_a_dropped_stream_reads_down_at_once(
    tmp_path: Path, openbao: DevOpenBao, database_url: str, db: Database
) -> None:
    with control_plane(
        tmp_path,
        openbao,
        database_url,
        MAILFLEET_AGENT_UNKNOWN_AFTER_SECONDS="120",  # the heartbeats would take this long
        MAILFLEET_HEALTH_INTERVAL_SECONDS="3600",  # and the next slot this long
        MAILFLEET_HEALTH_FLAP_SECONDS="1",
        MAILFLEET_HEALTH_TICK_SECONDS="0.2",
    ) as plane:
        server_id, toml = plane.new_server(f"drop-{uuid.uuid4().hex[:6]}")
        agent = AgentProcess(tmp_path / "agent", toml)
        with agents(agent):
            plane.wait_status(server_id, "online")
            async with db.session() as session:
                await session.execute(
                    update(Server).where(Server.id == uuid.UUID(server_id)).values(state="ready")
                )
            # Just ready: the sweep checks it at once (not at its slot, an hour away here).
            wait_link(plane, server_id, lambda c: c["state"] == "ok", 10)

            agent.stop()
            dropped = time.monotonic()
            # About a second on a quiet machine; the bound is load's (a suite at load 10+ has
            # taken 5 s), still an order under the 120 s the heartbeats would take.
            link = wait_link(plane, server_id, lambda c: c["pending"] or c["state"] != "ok", 15)
            seen = time.monotonic() - dropped
            assert seen < 12, f"agent.link read down after {seen:.1f} s"
            assert "dropped" in ((link["pending"] or {}).get("detail") or link["detail"])
            link = wait_link(plane, server_id, lambda c: c["state"] == "failing", 10)
            assert link["severity"] == "critical"
            assert time.monotonic() - dropped < 20
            incidents = plane.api("GET", "/api/v1/incidents", params={"server_id": server_id})
            assert any(i["check"] == "agent.link" for i in incidents["items"])

            agent.start()
            plane.wait_status(server_id, "online")
            wait_link(plane, server_id, lambda c: c["state"] == "ok", 10)
