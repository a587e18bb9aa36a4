"""Watch → judge → notify, end to end: a local VPS running MailU (its stand-in images) on its
own Docker engine, a real ``mailfleet serve`` sweeping it, and webhook receivers on loopback.

The stand-in front speaks no TLS, so once MailU is installed the test stops that container
through the VPS's engine and puts real TLS listeners on its ports (MailU's status then says
the front is not running: silenced, that is told to no one), and only then gives the tenant
its channels and policy. Then: the ports go down → an incident opens and a
signed webhook gets the trigger → after the step's wait the second step's channel is told →
an acknowledgement through the API stops the third step → the ports come back → the incident
resolves itself, every channel told gets the resolve, and the timeline holds all of it.
Another tenant's key sees none of it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.provisioning.providers.local_docker import Engine
from tests.e2e.conftest import PlaneFactory
from tests.e2e.local import LocalNet, order, wait_gone, wait_state
from tests.support.docker_engine import DOCKER, engine_unavailable
from tests.support.mail_ports import TestCA
from tests.support.mailu_images import stand_in_archive
from tests.support.stack import ControlPlane
from tests.support.webhooks import Arrival, webhook_receiver

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-webhook-secret-0123456789"
HOST = "mx.watch.example"
PORT_CHECKS = ("smtp.25", "smtp.465", "smtp.587", "imap.993")
STEP_WAIT_MINUTES = (0.05, 0.15)  # 3 s to step 2, then 9 s to step 3: time to acknowledge


@contextlib.contextmanager
def mail_ports(namespace: str, address: str, ca: TestCA) -> Iterator[None]:
    """MailU's four ports, stood in for by real listeners inside the VPS's namespace."""
    leaf = ca.issue(HOST)
    command = ["ip", "netns", "exec", namespace, sys.executable, "-m", "tests.support.mail_ports"]
    process = subprocess.Popen(
        [*command, address, str(leaf.cert), str(leaf.key)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def tenant_client(plane: ControlPlane, name: str) -> tuple[str, httpx.Client]:
    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": f"{name}-{time.time_ns()}"})
    key = plane.api(
        "POST",
        "/api/v1/api-keys",
        201,
        json={"scope": "tenant", "tenant_id": tenant["id"], "name": "owner"},
    )["key"]
    http = httpx.Client(base_url=plane.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return tenant["id"], http


def call(http: httpx.Client, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
    response = http.request(method, path, **kwargs)
    assert response.status_code == expect, response.text
    return response.json() if response.content else None


def resolves_recorded(tenant: httpx.Client, incident_id: str, timeout: float) -> Any:
    """The incident once no resolve to a channel is still queued (or at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        detail = call(tenant, "GET", f"/api/v1/incidents/{incident_id}")
        queued = [
            e
            for e in detail["timeline"]
            if e.get("event") == "resolve" and e.get("status") == "queued"
        ]
        if not queued or time.monotonic() > deadline:
            return detail
        time.sleep(0.3)


def checks_of(plane: ControlPlane, server_id: str) -> dict[str, dict[str, Any]]:
    health = plane.api("GET", f"/api/v1/servers/{server_id}/health")
    return {c["check"]: c for c in health["checks"]}


def front_stopped(plane: ControlPlane, server_id: str, timeout: float) -> None:
    """Until ``mailu.services`` fails (or awaits its re-check) because the front is down."""
    deadline = time.monotonic() + timeout
    while True:
        found = checks_of(plane, server_id).get("mailu.services", {})
        seen = [found] + ([found["pending"]] if found.get("pending") else [])
        if any(
            s.get("state") == "failing"
            and s.get("severity") == "critical"
            and "not running: front" in (s.get("detail") or "")
            for s in seen
        ):
            return
        assert time.monotonic() < deadline, f"waiting for mailu.services to fail: {found}"
        time.sleep(0.2)


def wait_checks(plane: ControlPlane, server_id: str, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        checks = checks_of(plane, server_id)
        states = {name: checks.get(name, {}).get("state") for name in (*PORT_CHECKS, "tls.expiry")}
        if all(s == state for s in states.values()):
            return
        assert time.monotonic() < deadline, f"waiting for {state}: {states}"
        time.sleep(0.2)


def settled(http: httpx.Client, server_id: str, timeout: float) -> None:
    """No check of the server waits for its re-check, and every open incident is past its
    group window (notified, or found without a policy: then it is told to no one) or held
    back."""
    deadline = time.monotonic() + timeout
    while True:
        params = {"state": "open", "server_id": server_id}
        health = call(http, "GET", f"/api/v1/servers/{server_id}/health")
        waiting = [c["check"] for c in health["checks"] if c["pending"] is not None]
        waiting += [
            i["check"]
            for i in call(http, "GET", "/api/v1/incidents", params=params)["items"]
            if i["escalation"]["step"] is None
            and i["escalation"]["next_at"] is not None
            and i["escalation"]["held_back_by"] is None
        ]
        if not waiting:
            return
        assert time.monotonic() < deadline, f"not yet past the group window: {waiting}"
        time.sleep(0.2)


def mail_installed(server: dict[str, Any]) -> bool:
    assert server["state"] != "failed", server
    return server["state"] in ("dns", "tls", "ready")


def stop_front(local_net: LocalNet, instance_id: str, namespace: str) -> None:
    """Stop MailU's front on the VPS's own engine, freeing its ports for the test's TLS
    listeners. It stays stopped: ``restart: always`` spares a container stopped by hand."""
    engine = Engine(local_net.state_dir / instance_id, namespace)
    env = {"DOCKER_HOST": engine.host, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def docker(*args: str) -> str:
        done = subprocess.run(
            [DOCKER, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"docker {args[0]}: {done.stderr}"
        return done.stdout

    labels = ("com.docker.compose.project=mailu", "com.docker.compose.service=front")
    filters = [part for label in labels for part in ("--filter", f"label={label}")]
    (front,) = docker("ps", "--quiet", *filters).split()
    docker("stop", "--time", "5", front)


def namespace_of(local_net: LocalNet, instance_id: str) -> str:
    (record,) = [r for r in local_net.instances() if r["id"] == instance_id]
    return str(record["namespace"])


def about(check: str, event: str) -> Any:
    def match(arrival: Arrival) -> bool:
        payload = arrival.json()
        if "items" in payload:
            return payload["event"] == event and check in arrival.checks()
        return arrival.mentions(check) and arrival.mentions(event)  # Slack: text only

    return match


def test_a_port_down_is_escalated_until_acknowledged_and_resolves_itself(
    local_net: LocalNet, plane_factory: PlaneFactory, tmp_path: Path
) -> None:
    reason = engine_unavailable()
    if reason:
        pytest.skip(reason)
    ca = TestCA(tmp_path / "ca")
    plane = plane_factory(
        **local_net.settings(),
        MAILFLEET_LOCAL_PROVIDER_DOCKER="1",
        MAILFLEET_LOCAL_PROVIDER_DOCKER_IMAGES=str(stand_in_archive()),
        MAILFLEET_HEALTH_CA_FILE=str(ca.ca_file),
        MAILFLEET_HEALTH_INTERVAL_SECONDS="2",
        MAILFLEET_HEALTH_FLAP_SECONDS="1",
        MAILFLEET_HEALTH_TICK_SECONDS="0.2",
        MAILFLEET_HEALTH_PROBE_TIMEOUT_SECONDS="2",
        MAILFLEET_INCIDENT_GROUP_SECONDS="3",  # the four ports fail within it, loaded too
        MAILFLEET_ALERT_ALLOW_PRIVATE_TARGETS="true",
        MAILFLEET_ALERT_RETRY_BASE_SECONDS="0.5",
        # A step falling due while the sweep holds its incident's row (each run updates a
        # failing check's incident) is skipped that round; the next round comes this soon.
        MAILFLEET_PERIODIC_SECONDS="1",
    )
    tenant_id, tenant = tenant_client(plane, "watched")
    _, stranger = tenant_client(plane, "stranger")
    server = order(plane, tenant_id, "watched", mail_stack="mailu", mail_hostname=HOST)
    # MailU runs, healthy, on the VPS's engine once the server is past installing_mail (the
    # DNS and TLS steps leave it be: no provider serves the zone). Its stand-in front speaks
    # no TLS: the test's listeners take its ports, mostly before the sweep (from ready) looks.
    installed = plane.wait_until(f"/api/v1/servers/{server['id']}", mail_installed, 150)
    namespace, address = namespace_of(local_net, installed["instance_id"]), installed["ipv4"]
    stop_front(local_net, installed["instance_id"], namespace)
    # So MailU's status says until the test ends: silenced, it is told to no one. (Its flap
    # guard may take long to agree: a mailu.status unanswered for an interval, which Compose
    # v1's exec can be on a loaded machine, makes it unknown and the guard starts again.)
    far = "2099-01-01T00:00:00Z"
    comment = "the test's TLS listeners stand in for MailU's stopped front"
    silence = {"server_id": server["id"], "check": "mailu.services", "ends_at": far}
    call(tenant, "POST", "/api/v1/silences", 201, json=silence | {"comment": comment})
    with webhook_receiver() as first, webhook_receiver() as second, webhook_receiver() as third:
        with mail_ports(namespace, address, ca):
            wait_state(plane, server["id"], "ready", timeout=30)
            wait_checks(plane, server["id"], "ok", timeout=30)
            assert checks_of(plane, server["id"])["agent.link"]["state"] == "ok"
            # MailU's own status sees its front stopped (confirmed, or awaiting its re-check).
            front_stopped(plane, server["id"], timeout=60)
            # What fails now (no backup policy) is past its group window with no policy: told
            # to no one, and it joins no later notification (which resolves only when all it
            # named does). The stand-in's ports, if the sweep saw them, resolved.
            settled(tenant, server["id"], timeout=30)
            params = {"state": "open", "server_id": server["id"]}
            open_now = call(tenant, "GET", "/api/v1/incidents", params=params)["items"]
            assert not {i["check"] for i in open_now} & {*PORT_CHECKS, "tls.expiry"}, open_now

            steps: list[dict[str, Any]] = []
            for receiver, kind, wait in zip(
                (first, second, third),
                ("webhook", "slack", "webhook"),
                (*STEP_WAIT_MINUTES, 1),
                strict=True,
            ):
                body: dict[str, Any] = {"name": f"step-{len(steps) + 1}", "kind": kind}
                body |= {"url": receiver.url} | ({"secret": SECRET} if kind == "webhook" else {})
                channel = call(tenant, "POST", "/api/v1/alert-channels", 201, json=body)
                assert "secret" not in channel and SECRET not in str(channel)
                steps.append({"channel_ids": [channel["id"]], "wait_minutes": wait})
            policy = call(
                tenant,
                "POST",
                "/api/v1/escalation-policies",
                201,
                json={"name": "default", "steps": steps, "repeat": 0},
            )
            assert policy["is_default"] is True  # a tenant's first policy
        down_at = time.monotonic()

        # Every port fails at once: one incident per check, all in one notification.
        trigger = first.wait_for(about("smtp.25", "trigger"), 30, "step 1's trigger")
        assert trigger.signed_by(SECRET)
        assert set(PORT_CHECKS) <= set(trigger.checks())
        assert "mailu.services" not in trigger.checks()  # failing since before the policy
        assert trigger.at - down_at < 15  # seen at the next check, confirmed, grouped, sent
        listed = call(
            tenant, "GET", "/api/v1/incidents", params={"state": "open", "server_id": server["id"]}
        )["items"]
        incident = next(i for i in listed if i["check"] == "smtp.25")
        grouped = {i["id"] for i in listed if i["check"] in PORT_CHECKS}
        assert {item["incident_id"] for item in trigger.json()["items"]} >= grouped

        step2 = second.wait_for(about("smtp.25", "trigger"), 30, "step 2's Slack message")
        # Step 2 waits its time after step 1's notification, as the control plane recorded
        # them (the arrivals add each delivery's own delay, seconds on a loaded machine).
        timeline = call(tenant, "GET", f"/api/v1/incidents/{incident['id']}")["timeline"]
        notified = {
            e["step"]: datetime.fromisoformat(e["at"])
            for e in timeline
            if e["kind"] == "notified" and e["event"] == "trigger"
        }
        waited = (notified[2] - notified[1]).total_seconds()
        assert waited >= STEP_WAIT_MINUTES[0] * 60, timeline
        acked = call(tenant, "POST", f"/api/v1/incidents/{incident['id']}/acknowledge")
        assert acked["state"] == "acknowledged"
        for other in grouped:  # taking a notification takes every incident it named
            assert call(tenant, "GET", f"/api/v1/incidents/{other}")["state"] == "acknowledged"
        first.wait_for(about("smtp.25", "acknowledge"), 15, "the acknowledge")
        # Until 2 s after step 3 would have been due (its wait runs from step 2's message).
        time.sleep(max(0.0, step2.at + STEP_WAIT_MINUTES[1] * 60 + 2 - time.monotonic()))
        assert not [a for a in third.snapshot() if about("smtp.25", "trigger")(a)]

        for path in (
            f"/api/v1/incidents/{incident['id']}",
            f"/api/v1/servers/{server['id']}/health",
            f"/api/v1/servers/{server['id']}/health/history",
        ):
            assert stranger.get(path).status_code == 404, path
        for path in ("acknowledge", "resolve"):
            assert stranger.post(f"/api/v1/incidents/{incident['id']}/{path}").status_code == 404
        assert call(stranger, "GET", "/api/v1/incidents")["items"] == []

        with mail_ports(namespace, address, ca):
            first.wait_for(about("smtp.25", "resolve"), 30, "the resolve to step 1's channel")
            second.wait_for(about("smtp.25", "resolve"), 30, "the resolve to step 2's channel")
            # A delivery is recorded as sent once its answer is back, a moment after the
            # receiver has the request: read the timeline once both are recorded (bounded).
            detail = resolves_recorded(tenant, incident["id"], timeout=15)
        assert (detail["state"], detail["resolved_by"]) == ("resolved", "auto")
        kinds = [entry["kind"] for entry in detail["timeline"]]
        for kind in ("triggered", "escalated", "acknowledged", "resolved"):
            assert kind in kinds, kinds
        escalations = [e["step"] for e in detail["timeline"] if e["kind"] == "escalated"]
        assert escalations == [1, 2]
        delivered = {
            (e["channel_name"], e["event"], e["status"])
            for e in detail["timeline"]
            if e.get("channel_name")
        }
        assert {("step-1", "trigger", "sent"), ("step-2", "trigger", "sent")} <= delivered
        assert ("step-1", "resolve", "sent") in delivered
        assert not any(name == "step-3" for name, _, _ in delivered)
        told = [a for r in (first, second, third) for a in r.snapshot()]
        assert not [a for a in told if a.mentions("mailu.services")]  # the front: no one

        plane.api("DELETE", f"/api/v1/servers/{server['id']}", 202)
        wait_gone(plane, server["id"])
    tenant.close()
    stranger.close()
