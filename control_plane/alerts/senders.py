"""One sender per channel kind: render the message for that service and send it once.

Each returns an ``Outcome``; retries and backoff are the delivery job's. ``retry`` says
whether trying again could help (a timeout, a 5xx) or not (a 4xx, a refused target).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from control_plane.alerts.targets import TargetRefused, post, tls_context
from control_plane.settings import Settings

SIGNATURE_HEADER = "X-MailFleet-Signature"
PAGERDUTY_ACTIONS = {"acknowledge": "acknowledge", "resolve": "resolve"}  # others: trigger


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry: bool = False


@dataclass(frozen=True)
class Target:
    """A channel as the sender needs it: non-secret config plus its secrets from Vault."""

    kind: str
    name: str
    config: dict[str, Any]
    secret: dict[str, str]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The webhook signature header value: ``t=<unix seconds>,v1=<hex HMAC-SHA256>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _lines(payload: dict[str, Any]) -> list[str]:
    return [
        f"[{item['severity']}] {item['subject_name'] or item['subject_id']} {item['check']}: "
        f"{item['state']} — {item['summary']}"
        for item in payload["items"]
    ]


def _headline(payload: dict[str, Any]) -> str:
    who = f" by {payload['actor']}" if payload.get("actor") else ""
    return f"[MailFleet {payload['event']}{who}] {payload['title']}"


async def _http(url: str, body: dict[str, Any], headers: dict[str, str], s: Settings) -> Outcome:
    raw = json.dumps(body, separators=(",", ":")).encode()
    return await _post(url, raw, headers, s)


async def _post(url: str, raw: bytes, headers: dict[str, str], s: Settings) -> Outcome:
    import httpx  # on first use: not with serve (it brings click, rich, pygments)

    headers = {"Content-Type": "application/json", "User-Agent": "MailFleet-Alerts", **headers}
    try:
        answer = await post(url, raw, headers, s)
    except TargetRefused as exc:
        return Outcome(ok=False, error=str(exc), retry=False)
    except (httpx.TimeoutException, TimeoutError):
        return Outcome(ok=False, error="timed out", retry=True)
    except (httpx.HTTPError, OSError) as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:300], retry=True)
    code = answer.status_code
    if 200 <= code < 300:
        return Outcome(ok=True, status_code=code)
    if 300 <= code < 400:
        return Outcome(ok=False, status_code=code, error=f"redirect ({code}) not followed")
    retry = code >= 500 or code in (408, 429)
    return Outcome(ok=False, status_code=code, error=f"HTTP {code}: {answer.text}", retry=retry)


async def send_webhook(target: Target, payload: dict[str, Any], s: Settings) -> Outcome:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        SIGNATURE_HEADER: sign(target.secret["secret"], int(time.time()), raw),
        "X-MailFleet-Event": payload["event"],
        "X-MailFleet-Delivery": payload["delivery_id"],
    }
    return await _post(target.secret["url"], raw, headers, s)


async def send_slack(target: Target, payload: dict[str, Any], s: Settings) -> Outcome:
    """Slack's incoming-webhook JSON: ``text`` (also the notification fallback) and blocks."""
    headline, lines = _headline(payload), _lines(payload)
    body = {
        "text": "\n".join([headline, *lines]),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
            *(
                [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}}]
                if lines
                else []
            ),
        ],
    }
    return await _http(target.secret["url"], body, {}, s)


async def send_pagerduty(target: Target, payload: dict[str, Any], s: Settings) -> Outcome:
    """Events API v2: trigger (also for repeats and tests), acknowledge or resolve, all under
    the incident's stable ``dedup_key``."""
    action = PAGERDUTY_ACTIONS.get(payload["event"], "trigger")
    body: dict[str, Any] = {
        "routing_key": target.secret["routing_key"],
        "event_action": action,
        "dedup_key": payload["dedup_key"],
    }
    if action == "trigger":
        first = payload["items"][0] if payload["items"] else {}
        body["client"] = "MailFleet"
        body["payload"] = {
            "summary": payload["title"][:1024],
            "source": first.get("subject_name") or first.get("subject_id") or "mailfleet",
            "severity": payload["severity"],
            "timestamp": payload["at"],
            "component": first.get("subject_kind"),
            "class": first.get("check"),
            "custom_details": {"event": payload["event"], "items": payload["items"]},
        }
    return await _http(s.pagerduty_events_url, body, {}, s)


def email_message(to: list[str], payload: dict[str, Any], s: Settings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = s.smtp_relay_from
    message["To"] = ", ".join(to)
    message["Subject"] = _headline(payload)[:250]
    message["Date"] = format_datetime(datetime.fromisoformat(payload["at"]))
    message["Message-ID"] = make_msgid(domain=s.smtp_relay_from.rpartition("@")[2] or None)
    message["X-MailFleet-Event"] = payload["event"]
    message["X-MailFleet-Dedup-Key"] = payload["dedup_key"]
    message["Auto-Submitted"] = "auto-generated"
    lines = [payload["title"], "", *_lines(payload), "", f"Severity: {payload['severity']}"]
    message.set_content("\n".join(lines) + "\n")
    return message


async def send_email(
    target: Target, payload: dict[str, Any], s: Settings, relay_password: str | None
) -> Outcome:
    """Through the configured relay, never through a server MailFleet watches."""
    import aiosmtplib  # on first use, not with serve

    if not s.smtp_relay_host:
        return Outcome(ok=False, error="no SMTP relay configured (MAILFLEET_SMTP_RELAY_HOST)")
    to = list(target.config.get("to", []))
    try:
        await aiosmtplib.send(
            email_message(to, payload, s),
            hostname=s.smtp_relay_host,
            port=s.smtp_relay_port,
            username=s.smtp_relay_username,
            password=relay_password if s.smtp_relay_username else None,
            use_tls=s.smtp_relay_security == "tls",
            start_tls=s.smtp_relay_security == "starttls",
            tls_context=tls_context(s) if s.smtp_relay_security != "none" else None,
            timeout=s.alert_send_timeout_seconds,
        )
    except aiosmtplib.SMTPResponseException as exc:
        error = f"SMTP {exc.code}: {exc.message}"[:300]
        return Outcome(ok=False, status_code=exc.code, error=error, retry=exc.code < 500)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return Outcome(ok=False, error=f"recipients refused: {exc}"[:300])
    except (aiosmtplib.SMTPException, OSError) as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:300], retry=True)
    return Outcome(ok=True, status_code=250)


async def send(
    target: Target, payload: dict[str, Any], s: Settings, relay_password: str | None = None
) -> Outcome:
    if target.kind == "webhook":
        return await send_webhook(target, payload, s)
    if target.kind == "slack":
        return await send_slack(target, payload, s)
    if target.kind == "pagerduty":
        return await send_pagerduty(target, payload, s)
    if target.kind == "email":
        return await send_email(target, payload, s, relay_password)
    if target.kind == "in_app":
        return Outcome(ok=True)
    return Outcome(ok=False, error=f"unknown channel kind {target.kind!r}")
