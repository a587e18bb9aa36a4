"""Mail counts end to end: a local VPS (network namespace, real agent) whose Postfix log (at
MailU's path under the VPS's root) gains lines in Postfix's own format; the agent sends its
counts on its stream every second (capability ``mail_counts``, agreed by a real ``mailfleet
serve``, which then never queues a ``mail.stats`` command for it); the plane stores them,
shows them per address and per day, and pauses the address when today's bounce rate passes
5 % over at least 100 messages. Another tenant's key sees none of it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import PlaneFactory
from tests.e2e.local import LocalNet, order, wait_gone, wait_state
from tests.e2e.test_health_alerts import call, tenant_client

pytestmark = pytest.mark.e2e


def postfix_lines(count: int, bounced: int, start: int = 0) -> str:
    """``count`` messages from shop.example, one recipient each; the first ``bounced`` of
    them bounce, the rest are delivered after one deferral; local deliveries in between."""
    stamp = datetime.now(UTC).isoformat()
    lines = []
    for n in range(start, start + count):
        qid = f"4Bq{n:07d}"
        head = f"{stamp} vps postfix"
        rcpt = f"{qid}: to=<r{n}@example.net>, relay=mx.example.net[203.0.113.5]:25, delay=0.4"
        lines.append(f"{head}/qmgr[12]: {qid}: from=<news@shop.example>, size=900, nrcpt=1")
        if n - start < bounced:
            lines.append(f"{head}/smtp[13]: {rcpt}, dsn=5.1.1, status=bounced (550 5.1.1 no)")
        else:
            lines.append(f"{head}/smtp[13]: {rcpt}, dsn=4.7.1, status=deferred (450 try later)")
            lines.append(f"{head}/smtp[14]: {rcpt}, dsn=2.0.0, status=sent (250 2.0.0 Ok)")
        lines.append(f"{head}/lmtp[15]: {qid}: to=<a@shop.example>, relay=imap[10.0.0.6]:2525, "
                     "dsn=2.0.0, status=sent (250 2.0.0 Saved)")  # fmt: skip
        lines.append(f"{head}/qmgr[12]: {qid}: removed")
    return "\n".join(lines) + "\n"


def wait_for(read: Any, wanted: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if wanted(found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def test_counts_from_the_vps_log_and_a_bounce_pause(
    local_net: LocalNet, plane_factory: PlaneFactory
) -> None:
    plane = plane_factory(
        **local_net.settings(),
        MAILFLEET_PERIODIC_SECONDS="0.5",
        MAILFLEET_MAIL_STATS_INTERVAL_SECONDS="1",
        MAILFLEET_MAIL_STATS_TIMEOUT_SECONDS="30",
    )
    tenant_id, tenant = tenant_client(plane, "counting")
    _, stranger = tenant_client(plane, "stranger")
    server = order(plane, tenant_id, "counting")
    ready = wait_state(plane, server["id"], "ready", timeout=90)
    ip = ready["ipv4"]
    wait_for(lambda: tenant.get(f"/api/v1/ips/{ip}").status_code, lambda s: s == 200)
    log = local_net.state_dir / ready["instance_id"] / "rootfs" / "mailu" / "logs" / "mail.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    path = f"/api/v1/ips/{ip}/mail-stats"
    today = datetime.now(UTC).date().isoformat()

    def today_of() -> dict[str, Any] | None:
        days = call(tenant, "GET", path)["days"]
        return next((d for d in days if d["day"] == today), None)

    # A quiet start: 40 messages, 1 bounce (2.5 %): counted, nothing paused.
    _append(log, postfix_lines(40, bounced=1))
    first = wait_for(today_of, lambda d: d is not None and d["sent"] + d["bounced"] == 40)
    assert (first["sent"], first["deferred"], first["bounced"]) == (39, 39, 1)
    assert [p["sender_domain"] for p in first["by_sender_domain"]] == ["shop.example"]
    assert call(tenant, "GET", path)["reporting"]["state"] == "reporting"
    assert call(tenant, "GET", f"/api/v1/ips/{ip}")["pause"]["paused"] is False

    # 80 more, 11 bounced: 12 of 120 (10 %) passes 5 % over at least 100 → paused.
    _append(log, postfix_lines(80, bounced=11, start=40))
    later = wait_for(today_of, lambda d: d is not None and d["sent"] + d["bounced"] == 120)
    assert (later["sent"], later["bounced"], later["bounce_rate"]) == (108, 12, 0.1)
    pause = wait_for(
        lambda: call(tenant, "GET", f"/api/v1/ips/{ip}")["pause"], lambda p: p["paused"]
    )
    assert pause["by"] == "auto"
    assert pause["reason"] == f"bounce rate 10 % over 120 messages on {today}"

    assert stranger.get(path).status_code == 404
    asked = plane.api("GET", f"/api/v1/servers/{server['id']}/commands")["items"]
    assert [c for c in asked if c["kind"] == "mail.stats"] == []  # sent unasked, every one
    plane.api("DELETE", f"/api/v1/servers/{server['id']}", 202)
    wait_gone(plane, server["id"])
    tenant.close()
    stranger.close()


def _append(log: Path, text: str) -> None:
    with log.open("a") as handle:
        handle.write(text)
