"""Sending for real: signed webhooks, Slack, PagerDuty Events v2 and email to loopback
receivers; the SSRF guard; quiet hours; retries with backoff; everyone failing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from control_plane.alerts import senders
from control_plane.alerts.delivery import Claimed, delivery_job, send_claimed
from control_plane.alerts.models import AlertNotification
from control_plane.alerts.service import DeliveryRecord, deliveries_for_incident
from control_plane.db.engine import Database
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from tests.alerts.helpers import SECRET, Alerting, message
from tests.alerts.receivers import HttpReceiver, SmtpSink, verify_signature
from tests.conftest import MakeTenant

CHANNELS = "/api/v1/alert-channels"


async def test_webhook_test_message_is_signed(
    alerting: Alerting, make_tenant: MakeTenant, receiver: HttpReceiver
) -> None:
    tenant = await make_tenant()
    url = f"http://localhost:{receiver.port}/hook"
    hook = await alerting.channel(tenant.headers, name="hook", kind="webhook", url=url,
                                  secret=SECRET)  # fmt: skip
    response = await alerting.client.post(f"{CHANNELS}/{hook['id']}/test", headers=tenant.headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "sent" and result["last_status_code"] == 200
    assert result["attempts"] == 1 and result["attempt_log"][0]["ok"] is True

    [request] = receiver.requests
    assert request.path == "/hook"
    # sent to the checked address, with the name kept in Host
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert verify_signature(SECRET, request.headers["x-mailfleet-signature"], request.body)
    signature = request.headers["x-mailfleet-signature"]
    assert not verify_signature("wrong-secret-000000", signature, request.body)
    assert not verify_signature(SECRET, signature, request.body + b" ")
    stamp = int(signature.split(",")[0][2:])
    assert not verify_signature(SECRET, signature, request.body, now=stamp + 301), "replayed"
    body = request.json()
    assert body["event"] == "test" and body["delivery_id"] == result["id"]
    assert body["tenant_id"] == tenant.id and request.headers["x-mailfleet-event"] == "test"


async def test_slack_gets_text_and_blocks(alerting: Alerting, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant()
    url = f"{alerting.receiver.url}/services/T/B/x"
    slack = await alerting.channel(tenant.headers, name="chat", kind="slack", url=url)
    sent = await alerting.notify(message(tenant.id), [slack["id"]])
    [delivery] = await alerting.deliver(sent)
    assert delivery.status == "sent"
    body = alerting.receiver.requests[0].json()
    assert "mx1: smtp.25 failing" in body["text"] and "connection refused" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    assert "smtp.25" in body["blocks"][1]["text"]["text"]


async def test_pagerduty_trigger_acknowledge_resolve_share_a_dedup_key(
    alerting: Alerting, make_tenant: MakeTenant, pagerduty: HttpReceiver
) -> None:
    tenant = await make_tenant()
    key = "R0UTINGKEY0123456789abcdefABCDEF"
    pd = await alerting.channel(tenant.headers, name="pd", kind="pagerduty", routing_key=key)
    incident = uuid.uuid4()
    for event in ("trigger", "acknowledge", "resolve"):
        msg = message(tenant.id, event=event, dedup_key=f"mailfleet-{incident}",
                      incident_id=incident)  # fmt: skip
        sent = await alerting.notify(msg, [pd["id"]], step=None)
        [delivery] = await alerting.deliver(sent)
        assert delivery.status == "sent" and delivery.last_status_code == 202
    bodies = [r.json() for r in pagerduty.requests]
    assert [r.path for r in pagerduty.requests] == ["/v2/enqueue"] * 3
    assert [b["event_action"] for b in bodies] == ["trigger", "acknowledge", "resolve"]
    assert {b["dedup_key"] for b in bodies} == {f"mailfleet-{incident}"}
    assert {b["routing_key"] for b in bodies} == {key}
    trigger = bodies[0]["payload"]
    assert trigger["severity"] == "critical" and trigger["source"] == "mx1"
    assert trigger["summary"] == "mx1: smtp.25 failing" and trigger["class"] == "smtp.25"
    assert "payload" not in bodies[1]
    timeline = await _timeline(alerting.db, incident)
    assert [(r.event, r.status, r.kind) for r in timeline] == [
        ("trigger", "sent", "pagerduty"),
        ("acknowledge", "sent", "pagerduty"),
        ("resolve", "sent", "pagerduty"),
    ]


async def _timeline(db: Database, incident: uuid.UUID) -> list[DeliveryRecord]:
    async with db.session() as session:
        return await deliveries_for_incident(session, incident)


async def test_email_goes_through_the_relay(
    alerting: Alerting,
    make_tenant: MakeTenant,
    smtp_sink: SmtpSink,
    admin_headers: dict[str, str],
    vault: Vault,
) -> None:
    tenant, client = await make_tenant(), alerting.client
    mail = await alerting.channel(tenant.headers, name="team", kind="email",
                                  to=["Ops@Example.com", "oncall@example.org"])  # fmt: skip
    assert mail["to"] == ["ops@example.com", "oncall@example.org"]
    response = await client.post(f"{CHANNELS}/{mail['id']}/test", headers=tenant.headers)
    assert response.json()["status"] == "sent", response.text
    [(sender, recipients, sent)] = smtp_sink.messages
    assert sender == "alerts@mailfleet.test"
    assert recipients == ["ops@example.com", "oncall@example.org"]
    assert sent["From"] == "alerts@mailfleet.test"
    assert sent["To"] == "ops@example.com, oncall@example.org"
    assert sent["Subject"].startswith("[MailFleet test")
    assert sent["X-MailFleet-Event"] == "test" and sent["Message-ID"]
    assert sent["Auto-Submitted"] == "auto-generated"

    # the relay's password: set by an admin into Vault, never shown
    relay = await client.get("/api/v1/alert-relay", headers=admin_headers)
    assert relay.json()["port"] == smtp_sink.port
    put = await client.put(
        "/api/v1/alert-relay/password", json={"password": "relay-pw-1"}, headers=admin_headers
    )
    assert put.status_code == 204
    relay = await client.get("/api/v1/alert-relay", headers=admin_headers)
    assert relay.json()["has_password"] is True and "relay-pw-1" not in relay.text
    assert await vault.get("alerts/smtp-relay") == {"password": "relay-pw-1"}
    forbidden = await client.put(
        "/api/v1/alert-relay/password", json={"password": "x"}, headers=tenant.headers
    )
    assert forbidden.status_code == 403
    await client.delete("/api/v1/alert-relay/password", headers=admin_headers)
    assert await vault.get("alerts/smtp-relay") is None


async def test_private_targets_are_refused_at_send_time_without_the_setting(
    alerting: Alerting, make_tenant: MakeTenant, receiver: HttpReceiver
) -> None:
    """A name that resolves to loopback passes the creation check (it is a name), and is
    refused when sending, on the address it resolved to."""
    tenant = await make_tenant()
    hook = await alerting.channel(
        tenant.headers, name="sneaky", kind="webhook",
        url=f"https://localhost:{receiver.port}/hook", secret=SECRET,
    )  # fmt: skip
    strict = alerting.settings.model_copy(update={"alert_allow_private_targets": False})
    sent = await alerting.notify(message(tenant.id), [hook["id"]])
    [delivery] = await alerting.deliver(sent, settings=strict)
    assert delivery.status == "failed", "a refusal is final, not retried"
    assert delivery.last_error is not None
    assert "localhost resolves to" in delivery.last_error and "loopback" in delivery.last_error
    assert "MAILFLEET_ALERT_ALLOW_PRIVATE_TARGETS" in delivery.last_error
    assert receiver.requests == []


async def test_redirects_are_not_followed(
    alerting: Alerting, make_tenant: MakeTenant, receiver: HttpReceiver
) -> None:
    tenant = await make_tenant()
    receiver.script = [302]
    hook = await alerting.webhook(tenant.headers, "moved", "/old")
    sent = await alerting.notify(message(tenant.id), [hook["id"]])
    [delivery] = await alerting.deliver(sent)
    assert delivery.status == "failed" and "redirect (302) not followed" in str(delivery.last_error)
    assert len(receiver.requests) == 1


async def test_retries_back_off_then_succeed(
    alerting: Alerting, make_tenant: MakeTenant, receiver: HttpReceiver
) -> None:
    tenant = await make_tenant()
    receiver.script = [500]
    hook = await alerting.webhook(tenant.headers, "flaky", "/h")
    t0 = datetime.now(UTC)
    sent = await alerting.notify(message(tenant.id), [hook["id"]], now=t0)
    [first] = await alerting.deliver(sent, now=t0)
    assert first.status == "retrying" and first.last_status_code == 500
    retry_base = timedelta(seconds=alerting.settings.alert_retry_base_seconds)
    assert first.next_attempt_at == t0 + retry_base
    assert await alerting.deliver(sent, now=t0) == [], "not due yet"
    [second] = await alerting.deliver(sent, now=first.next_attempt_at)
    assert second.status == "sent" and second.attempts == 2
    assert len(receiver.requests) == 2
    assert receiver.requests[0].headers["x-mailfleet-delivery"] == str(second.id)

    log = await alerting.client.get(f"/api/v1/notifications/{sent}", headers=tenant.headers)
    [entry] = log.json()["deliveries"]
    tries = [(a["ok"], a["status_code"]) for a in entry["attempt_log"]]
    assert tries == [(False, 500), (True, 200)]
    assert "HTTP 500" in entry["attempt_log"][0]["error"]


async def test_every_channel_failing_tells_the_admins(
    alerting: Alerting,
    make_tenant: MakeTenant,
    receiver: HttpReceiver,
    admin_headers: dict[str, str],
) -> None:
    tenant, client = await make_tenant(), alerting.client
    receiver.default = 503
    ids = [(await alerting.webhook(tenant.headers, f"down-{n}", f"/{n}"))["id"] for n in range(2)]
    t0 = datetime.now(UTC)
    sent = await alerting.notify(message(tenant.id), ids, step=2, now=t0)
    await alerting.deliver(sent, now=t0)
    assert {d.status for d in await alerting.statuses(sent)} == {"retrying"}
    later = t0 + timedelta(seconds=alerting.settings.alert_retry_base_seconds)
    await alerting.deliver(sent, now=later)
    assert {d.status for d in await alerting.statuses(sent)} == {"failed"}
    assert len(receiver.requests) == 4  # two channels, alert_max_attempts = 2

    async with alerting.db.session() as session:
        notices = (
            await session.scalars(
                select(AlertNotification).where(
                    AlertNotification.dedup_key == f"delivery-failed:{sent}"
                )
            )
        ).all()
        failed_at = (await session.get(AlertNotification, sent)).failed_at  # type: ignore[union-attr]
    assert len(notices) == 1 and failed_at == later
    feed = await client.get("/api/v1/notifications", headers=admin_headers)
    [notice] = [n for n in feed.json()["items"] if n["id"] == str(notices[0].id)]
    assert notice["event"] == "delivery_failed" and notice["tenant_id"] is None
    assert notice["title"].startswith("Every channel failed (step 2)")
    assert {f["channel_name"] for f in notice["body"]["failures"]} == {"down-0", "down-1"}
    tenant_feed = await client.get("/api/v1/notifications", headers=tenant.headers)
    assert str(notices[0].id) not in tenant_feed.text

    metrics = await client.get("/metrics", headers=admin_headers)
    lines = metrics.text.splitlines()
    failed_steps = next(line for line in lines if line.startswith("mailfleet_alert_failed_steps "))
    assert float(failed_steps.split()[1]) >= 1
    assert any(line.startswith('mailfleet_alert_deliveries{status="failed"}') for line in lines)
    assert any(line.startswith("mailfleet_alert_delivery_lag_seconds") for line in lines)


async def test_quiet_hours_hold_back_all_but_critical(
    alerting: Alerting, make_tenant: MakeTenant, receiver: HttpReceiver
) -> None:
    tenant = await make_tenant()
    quiet = {"start": "22:00", "end": "07:00", "time_zone": "Europe/Paris", "critical_passes": True}
    hook = await alerting.webhook(tenant.headers, "night", "/n", quiet_hours=quiet)
    night = datetime(2026, 1, 15, 22, 30, tzinfo=UTC)  # 23:30 in Paris (UTC+1)
    morning = datetime(2026, 1, 16, 6, 30, tzinfo=UTC)  # 07:30 in Paris
    summer_night = datetime(2026, 7, 15, 20, 30, tzinfo=UTC)  # 22:30 in Paris (UTC+2)
    cases = [
        (night, "warning", "quiet"),
        (night, "critical", "queued"),
        (summer_night, "info", "quiet"),
        (morning, "warning", "queued"),
    ]
    for now, severity, expected in cases:
        sent = await alerting.notify(message(tenant.id, severity=severity, at=now), [hook["id"]],
                                     now=now)  # fmt: skip
        [delivery] = await alerting.statuses(sent)
        assert delivery.status == expected, (now, severity)
        if expected == "quiet":
            assert await alerting.deliver(sent) == []
    assert receiver.requests == []

    # The in-app feed wakes nobody: quiet hours do not keep a notification out of it.
    feed = await alerting.channel(
        tenant.headers, name="night feed", kind="in_app", quiet_hours=quiet
    )
    sent = await alerting.notify(message(tenant.id, severity="warning", at=night), [feed["id"]],
                                 now=night)  # fmt: skip
    [delivery] = await alerting.statuses(sent)
    assert delivery.status == "sent"


async def test_in_app_feed_and_read_marks(alerting: Alerting, make_tenant: MakeTenant) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    client = alerting.client
    feed_channel = await alerting.channel(tenant.headers, name="feed", kind="in_app")
    first = await alerting.notify(message(tenant.id), [feed_channel["id"]])
    second = await alerting.notify(message(tenant.id, event="resolve"), [feed_channel["id"]])
    [delivery] = await alerting.statuses(first)
    assert delivery.status == "sent" and delivery.delivered_at is not None

    listed = await client.get("/api/v1/notifications", headers=tenant.headers)
    assert [n["id"] for n in listed.json()["items"]] == [str(first), str(second)]
    assert listed.json()["items"][0]["body"]["items"][0]["check"] == "smtp.25"
    read = await client.post(f"/api/v1/notifications/{first}/read", headers=tenant.headers)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    unread = await client.get(
        "/api/v1/notifications", params={"unread": True}, headers=tenant.headers
    )
    assert [n["id"] for n in unread.json()["items"]] == [str(second)]

    for method, path in (
        ("GET", f"/api/v1/notifications/{second}"),
        ("POST", f"/api/v1/notifications/{second}/read"),
    ):
        response = await client.request(method, path, headers=other.headers)
        assert response.status_code == 404, (method, path)
    marked = await client.post(
        "/api/v1/notifications/read", json={"ids": [str(second)]}, headers=other.headers
    )
    assert marked.json() == {"marked": 0}
    assert (await client.get("/api/v1/notifications", headers=other.headers)).json()["items"] == []
    marked = await client.post(
        "/api/v1/notifications/read", json={"all": True}, headers=tenant.headers
    )
    assert marked.json() == {"marked": 1}
    bad = await client.post(
        "/api/v1/notifications/read", json={"ids": ["nope"]}, headers=tenant.headers
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.ids.0"


async def test_the_periodic_job_sends_after_its_claim_commits(
    alerting: Alerting, make_tenant: MakeTenant, receiver: HttpReceiver
) -> None:
    tenant = await make_tenant()
    hook = await alerting.webhook(tenant.headers, "job", "/j")
    sent = await alerting.notify(message(tenant.id), [hook["id"]])
    job = delivery_job(alerting.db, alerting.vault, alerting.settings)
    claimed = await alerting.db.transact(job)
    assert claimed >= 1
    await job.wait()
    [delivery] = await alerting.statuses(sent)
    assert delivery.status == "sent" and delivery.lease_until is None
    assert any(r.path == "/j" for r in receiver.requests)


async def test_a_senders_words_never_carry_the_channels_secret_url(
    vault: Vault, alert_settings: Settings, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A Slack or webhook URL is itself a credential: an error quoting it is blanked in the
    delivery log (which the API shows) and in the control plane's log."""
    url = f"https://hooks.example/services/T0/B0/{uuid.uuid4().hex}"
    path = f"alerts/test-redaction/{uuid.uuid4()}"
    await vault.put(path, {"url": url})
    item = Claimed(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "slack", "ops", {}, path, {})

    async def quoting(*args: object) -> senders.Outcome:
        return senders.Outcome(ok=False, error=f"HTTP 404: no such hook {url}")

    async def crashing(*args: object) -> senders.Outcome:
        raise RuntimeError(f"bug while posting to {url}")

    for sender in (quoting, crashing):
        monkeypatch.setattr(senders, "send", sender)
        outcome, _ = await send_claimed(item, vault, alert_settings)
        assert outcome.error is not None and url not in outcome.error
    assert "[secret]" in caplog.text and url not in caplog.text
    await vault.delete(path)
