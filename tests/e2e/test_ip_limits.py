"""Pause, resume and today's cap end to end: the API → a ``network.limits.set`` command → the
real agent in a local VPS → nftables, seen by connections from inside the VPS to tcp/25 on
the host side of the local bridge (a sink that answers with the address it saw)."""

from __future__ import annotations

import json
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
import pytest

from control_plane.provisioning.providers.local import LocalSettings
from control_plane.provisioning.providers.local_cgroup import Cgroups
from tests.e2e.conftest import PlaneFactory
from tests.e2e.local import LocalNet, order, wait_gone, wait_state
from tests.e2e.test_health_alerts import call, namespace_of, tenant_client
from tests.support.stack import ControlPlane

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024

CONNECT = """
import json, socket, sys
seen = []
for _ in range(int(sys.argv[2])):
    try:
        with socket.create_connection((sys.argv[1], 25), timeout=5) as s:
            seen.append(s.makefile().readline().strip())
    except ConnectionRefusedError:
        seen.append("refused")
    except OSError as exc:
        seen.append(type(exc).__name__)
print(json.dumps(seen))
"""


class _Seen(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(f"{self.client_address[0]}\n".encode())


@pytest.fixture
def sink_at() -> Iterator[Any]:
    """Start a tcp/25 sink on an address of this host (stopped after the test)."""
    servers: list[socketserver.ThreadingTCPServer] = []

    def start(address: str) -> None:
        try:
            server = socketserver.ThreadingTCPServer((address, 25), _Seen)
        except OSError as exc:
            pytest.skip(f"cannot listen on {address}:25 here: {exc}")
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def attempts(namespace: str, host: str, count: int) -> list[str]:
    """From inside the VPS: where the sink saw each connection come from, or "refused"."""
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", CONNECT, host, str(count)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen: list[str] = json.loads(done.stdout)
    return seen


def enforced(plane: ControlPlane, server_id: str, address: str, **expected: Any) -> Any:
    """``address``'s entry in the result of the newest ``network.limits.set`` the agent carried
    out, once it says ``expected`` (pushes from before may finish first)."""
    deadline = time.monotonic() + 30
    while True:
        page = plane.api("GET", f"/api/v1/servers/{server_id}/commands?state=succeeded&limit=500")
        done = sorted(
            (c for c in page["items"] if c["kind"] == "network.limits.set"),
            key=lambda c: c["finished_at"],
        )
        entry = done[-1]["result"]["ips"].get(address, {}) if done else {}
        if all(entry.get(k) == v for k, v in expected.items()):
            return entry
        assert time.monotonic() < deadline, f"not enforced: {expected}, last {entry}"
        time.sleep(0.2)


def _wait_sending(plane: ControlPlane, address: str) -> None:
    """The inventory job has given the main address its row (sending)."""
    deadline = time.monotonic() + 30
    while (found := plane.http.get(f"/api/v1/ips/{address}")).status_code != 200 or (
        found.json()["role"] != "sending"
    ):
        assert time.monotonic() < deadline, found.text
        time.sleep(0.2)


def test_pause_resume_and_todays_cap_are_enforced_on_the_vps(
    local_net: LocalNet, plane_factory: PlaneFactory, sink_at: Any
) -> None:
    plane = plane_factory(
        **local_net.settings(),
        MAILFLEET_PERIODIC_SECONDS="0.5",
        MAILFLEET_METRICS_INTERVAL_SECONDS="1",
        MAILFLEET_RESIZE_TICK_SECONDS="0.2",
        MAILFLEET_LOCAL_PLAN_PRICES="local-small=5.00,local-medium=10.00",
    )
    tenant_id, tenant = tenant_client(plane, "limits")
    server = order(plane, tenant_id, "limits")
    ready = wait_state(plane, server["id"], "ready", timeout=90)
    namespace, ip1 = namespace_of(local_net, ready["instance_id"]), ready["ipv4"]
    gateway = str(local_net.subnet.network_address + 1)
    sink_at(gateway)
    _wait_sending(plane, ip1)
    assert attempts(namespace, gateway, 1) == [ip1]

    call(tenant, "POST", f"/api/v1/ips/{ip1}/pause", json={"reason": "complaints"})
    enforced(plane, server["id"], ip1, paused=True)
    assert attempts(namespace, gateway, 2) == ["refused", "refused"]  # reset: Postfix defers

    call(tenant, "POST", f"/api/v1/ips/{ip1}/resume")
    enforced(plane, server["id"], ip1, paused=False)
    assert attempts(namespace, gateway, 1) == [ip1]

    call(tenant, "PUT", f"/api/v1/ips/{ip1}/warmup", json={"today_cap": 3})
    today = enforced(plane, server["id"], ip1, cap=3, paused=False)
    left = 3 - today["used"]  # connections already made today count
    assert left >= 1, today
    assert attempts(namespace, gateway, left + 1) == [ip1] * left + ["refused"]

    resized(plane, tenant, local_net, ready)
    plane.api("DELETE", f"/api/v1/servers/{server['id']}", 202)
    wait_gone(plane, server["id"])
    tenant.close()


def resized(plane: ControlPlane, tenant: httpx.Client, net: LocalNet, server: Any) -> None:
    """Resize (issue 16), on the same VPS: local-small → local-medium rewrites its cgroup's
    memory and CPU limits, which the agent's facts (the verify step) and samples show."""
    base = f"/api/v1/servers/{server['id']}"
    (record,) = [r for r in net.instances() if r["id"] == server["instance_id"]]
    cgroups = Cgroups(LocalSettings().cgroup_parent)
    limit = cgroups.directories(record["cgroup"])[0] / (
        "memory.max" if cgroups.layout().version == 2 else "memory.limit_in_bytes"
    )
    assert int(limit.read_text()) == 1024 * MIB
    dry = call(tenant, "POST", f"{base}/resize", json={"plan": "local-medium", "dry_run": True})
    assert Decimal(dry["preview"]["monthly_price_difference"]) == Decimal("5.00"), dry
    assert dry["resize"] is None and int(limit.read_text()) == 1024 * MIB
    started = call(tenant, "POST", f"{base}/resize", 202, json={"plan": "local-medium"})
    deadline = time.monotonic() + 60
    while (done := call(tenant, "GET", f"{base}/resizes/{started['resize']['id']}"))[
        "finished_at"
    ] is None:
        assert time.monotonic() < deadline, done
        time.sleep(0.2)
    assert done["state"] == "succeeded", done
    verify = next(s for s in done["steps"] if s["name"] == "verify")
    memory = min(2048 * MIB, psutil.virtual_memory().total)
    assert verify["state"] == "done" and f"{memory // MIB} MiB" in verify["detail"], verify
    assert int(limit.read_text()) == 2048 * MIB
    assert call(tenant, "GET", base)["plan"] == "local-medium"
    deadline = time.monotonic() + 30
    while True:  # the agent's next samples report the new memory too
        samples = call(tenant, "GET", f"{base}/metrics?step=raw")["samples"]
        if samples and samples[-1]["memory_total_bytes"] == memory:
            break
        assert time.monotonic() < deadline, samples[-1:]
        time.sleep(0.5)
