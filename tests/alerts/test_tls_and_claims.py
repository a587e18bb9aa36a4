"""HTTPS to the checked address with the name kept for SNI and verification; the relay's
login from Vault; claims that never double-send and that a dead sender gives back."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from control_plane.alerts.delivery import claim, deliver_due, next_due
from tests.alerts.helpers import SECRET, Alerting, message
from tests.alerts.receivers import HttpReceiver, SmtpSink, verify_signature
from tests.conftest import MakeTenant
from tests.support.mail_ports import TestCA


async def test_https_keeps_the_name_for_sni_and_certificate_checks(
    alerting: Alerting, make_tenant: MakeTenant, tmp_path: Path
) -> None:
    tenant = await make_tenant()
    good_ca, wrong_ca = TestCA(tmp_path / "good"), TestCA(tmp_path / "wrong")
    good = good_ca.issue("localhost", "127.0.0.1").server_context()
    wrong = wrong_ca.issue("elsewhere.example", "127.0.0.1").server_context()
    async with HttpReceiver(tls=good).running() as right, HttpReceiver(tls=wrong).running() as bad:
        for receiver, ca, expected in (
            (right, good_ca.ca_file, "sent"),
            (bad, wrong_ca.ca_file, "retrying"),
        ):
            hook = await alerting.channel(
                tenant.headers, name=f"tls-{uuid.uuid4().hex[:6]}", kind="webhook",
                url=f"https://localhost:{receiver.port}/tls", secret=SECRET,
            )  # fmt: skip
            trusting = alerting.settings.model_copy(update={"alert_ca_file": ca})
            sent = await alerting.notify(message(tenant.id), [hook["id"]])
            [delivery] = await alerting.deliver(sent, settings=trusting)
            assert delivery.status == expected, delivery.last_error
        [request] = right.requests
        assert right.server_names == ["localhost"], "SNI carries the name, not the address"
        assert request.headers["host"] == f"localhost:{right.port}"
        assert verify_signature(SECRET, request.headers["x-mailfleet-signature"], request.body)
        assert bad.requests == [], "a certificate for another name is refused"
        [refused] = await alerting.statuses(sent)
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.last_error), refused.last_error


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_relay_login_comes_from_vault(
    alerting: Alerting, make_tenant: MakeTenant, admin_headers: dict[str, str]
) -> None:
    tenant, client = await make_tenant(), alerting.client
    mail = await alerting.channel(tenant.headers, name="mail", kind="email",
                                  to=["ops@example.com"])  # fmt: skip
    with SmtpSink(logins={"relay-user": "relay-pw-7"}).running() as relay:
        settings = alerting.settings.model_copy(
            update={"smtp_relay_port": relay.port, "smtp_relay_username": "relay-user"}
        )
        without = await alerting.notify(message(tenant.id), [mail["id"]])
        [failed] = await alerting.deliver(without, settings=settings)
        assert failed.status in ("retrying", "failed") and relay.messages == []
        put = await client.put(
            "/api/v1/alert-relay/password", json={"password": "relay-pw-7"}, headers=admin_headers
        )
        assert put.status_code == 204
        try:
            sent = await alerting.notify(message(tenant.id), [mail["id"]])
            [delivery] = await alerting.deliver(sent, settings=settings)
        finally:
            await client.delete("/api/v1/alert-relay/password", headers=admin_headers)
        assert delivery.status == "sent", delivery.last_error
        assert relay.authenticated == ["relay-user"] and len(relay.messages) == 1


async def test_email_without_a_relay_says_so(alerting: Alerting, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant()
    mail = await alerting.channel(tenant.headers, name="mail", kind="email",
                                  to=["ops@example.com"])  # fmt: skip
    sent = await alerting.notify(message(tenant.id), [mail["id"]])
    unset = alerting.settings.model_copy(update={"smtp_relay_host": None})
    [delivery] = await alerting.deliver(sent, settings=unset)
    assert delivery.status == "failed"
    assert delivery.last_error == "no SMTP relay configured (MAILFLEET_SMTP_RELAY_HOST)"


async def test_a_claim_is_taken_once_and_given_back_when_its_lease_lapses(
    alerting: Alerting, make_tenant: MakeTenant, receiver: HttpReceiver
) -> None:
    tenant = await make_tenant()
    db, vault, settings = alerting.db, alerting.vault, alerting.settings
    hook = await alerting.webhook(tenant.headers, "lease", "/l")
    t0 = datetime.now(UTC)
    sent = await alerting.notify(message(tenant.id), [hook["id"]], now=t0)
    [delivery] = await alerting.statuses(sent)

    # A claims and holds its transaction open; B, meanwhile, must not get the same row.
    a_claimed = asyncio.Event()
    release = asyncio.Event()

    async def claim_a() -> list[uuid.UUID]:
        async with db.session() as session:
            mine = await claim(session, settings, t0, delivery_ids=[delivery.id])
            a_claimed.set()
            await release.wait()
            return [c.delivery_id for c in mine]

    task_a = asyncio.create_task(claim_a())
    await a_claimed.wait()

    async def claim_b() -> list[uuid.UUID]:
        async with db.session() as session:
            theirs = await claim(session, settings, t0, delivery_ids=[delivery.id])
            return [c.delivery_id for c in theirs]

    task_b = asyncio.create_task(claim_b())
    await asyncio.sleep(0.2)  # B is blocked (SQLite's one writer) or skipped the row (PG)
    release.set()
    assert await task_a == [delivery.id]
    assert await task_b == [], "the lease (or the row lock) kept B off it"

    # A "died" without sending: nothing until the lease lapses, then another sender takes it
    assert await deliver_due(db, vault, settings, now=t0, delivery_ids=[delivery.id]) == []
    lapsed = t0 + timedelta(seconds=settings.alert_lease_seconds + 1)
    [taken] = await deliver_due(db, vault, settings, now=lapsed, delivery_ids=[delivery.id])
    assert taken.status == "sent" and taken.attempts == 2 and len(receiver.requests) == 1


async def test_next_due_is_the_earliest_retry(
    alerting: Alerting, make_tenant: MakeTenant, receiver: HttpReceiver
) -> None:
    """The periodic runner wakes for a retry instead of waiting out its interval."""
    tenant = await make_tenant()
    receiver.script = [500]
    hook = await alerting.webhook(tenant.headers, "soon", "/s")
    sent = await alerting.notify(message(tenant.id), [hook["id"]])
    [retrying] = await alerting.deliver(sent)
    assert retrying.status == "retrying" and retrying.next_attempt_at is not None
    due = await alerting.db.transact(next_due)
    assert due is not None and due <= retrying.next_attempt_at
