"""A failing check to signed webhook and PagerDuty deliveries on loopback receivers, end to
end through the API and the real delivery job: trigger, escalation to step 2, acknowledge
through the API, automatic resolve, and the timeline that shows it all."""

from __future__ import annotations

from datetime import timedelta

import pytest

from control_plane.alerts.delivery import deliver_due
from control_plane.db.base import utcnow
from control_plane.incidents import escalation
from control_plane.settings import Settings
from tests.alerts.helpers import SECRET, Alerting
from tests.alerts.receivers import HttpReceiver, verify_signature
from tests.conftest import MakeTenant
from tests.incidents.helpers import a_server, observe, open_incident, signal


@pytest.fixture
def alert_settings(alert_settings: Settings) -> Settings:
    """The alerts tests' settings (loopback receivers allowed), with a one-second group
    window."""
    return alert_settings.model_copy(update={"incident_group_seconds": 1.0})


async def test_trigger_escalate_acknowledge_resolve(
    alerting: Alerting, make_tenant: MakeTenant, pagerduty: HttpReceiver
) -> None:
    client, settings = alerting.client, alerting.settings
    db, vault, hook = alerting.db, alerting.vault, alerting.receiver
    tenant = await make_tenant()
    headers = tenant.headers
    server = await a_server(db, tenant.id)
    webhook_id = (await alerting.webhook(headers, "ops", "/hook"))["id"]
    pagerduty_id = (
        await alerting.channel(headers, name="oncall", kind="pagerduty",
                               routing_key="R0UT1NGK3Y0000000000")
    )["id"]  # fmt: skip
    response = await client.post(
        "/api/v1/escalation-policies",
        json={
            "name": "default",
            "steps": [
                {"channel_ids": [webhook_id], "wait_minutes": 0.02},
                {"channel_ids": [pagerduty_id], "wait_minutes": 5},
            ],
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text

    async def engine(at: timedelta) -> None:
        async with db.session() as session:
            await escalation.escalate_due(
                session, t0 + at, group_seconds=settings.incident_group_seconds
            )
        await deliver_due(db, vault, settings, now=t0 + at)

    t0 = utcnow() - timedelta(minutes=1)  # the engine's steps, before the API's real now
    await observe(db, t0, signal(tenant.id, server, "smtp.25", summary="connection refused"))
    incident = await open_incident(db, server, "smtp.25")
    await engine(timedelta(seconds=0.5))
    assert hook.requests == []  # the group window is still open
    await engine(timedelta(seconds=1))
    [trigger] = hook.requests
    assert verify_signature(SECRET, trigger.headers["x-mailfleet-signature"], trigger.body)
    sent = trigger.json()
    assert (sent["event"], sent["dedup_key"]) == ("trigger", str(incident.id))
    assert [i["check"] for i in sent["items"]] == ["smtp.25"]
    assert pagerduty.requests == []

    await engine(timedelta(seconds=1 + 1.2))  # step 1 waited 0.02 min: step 2
    [page] = pagerduty.requests
    assert page.json()["event_action"] == "trigger"
    assert page.json()["dedup_key"] == str(incident.id)

    acked = await client.post(f"/api/v1/incidents/{incident.id}/acknowledge", headers=headers)
    assert acked.status_code == 200
    await deliver_due(db, vault, settings)
    assert pagerduty.requests[-1].json()["event_action"] == "acknowledge"
    assert hook.requests[-1].json()["event"] == "acknowledge"
    assert hook.requests[-1].json()["actor"] == acked.json()["acknowledged_by"]
    await engine(timedelta(minutes=30))  # acknowledged: no more steps (it is in the future)
    assert len(pagerduty.requests) == 2

    await observe(db, utcnow(), signal(tenant.id, server, "smtp.25", "ok", "info"))
    await deliver_due(db, vault, settings)
    assert pagerduty.requests[-1].json()["event_action"] == "resolve"
    assert pagerduty.requests[-1].json()["dedup_key"] == str(incident.id)
    assert hook.requests[-1].json()["event"] == "resolve"

    detail = (await client.get(f"/api/v1/incidents/{incident.id}", headers=headers)).json()
    assert detail["state"] == "resolved" and detail["resolved_by"] == "auto"
    timeline = detail["timeline"]
    assert [e["kind"] for e in timeline if e["kind"] != "notified"] == [
        "triggered",
        "escalated",
        "escalated",
        "acknowledged",
        "resolved",
    ]
    delivered = [
        (e["channel_name"], e["event"], e["status"]) for e in timeline if e["kind"] == "notified"
    ]
    assert delivered == [
        ("ops", "trigger", "sent"),
        ("oncall", "trigger", "sent"),
        ("ops", "acknowledge", "sent"),
        ("oncall", "acknowledge", "sent"),
        ("ops", "resolve", "sent"),
        ("oncall", "resolve", "sent"),
    ]
    other = await make_tenant()
    hidden = await client.get(f"/api/v1/incidents/{incident.id}", headers=other.headers)
    assert hidden.status_code == 404
