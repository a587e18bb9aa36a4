"""A server's Backups and TLS sections in a real browser: "Back up now" and a point-in-time
restore followed live to their end, as a real agent (enrolled through the console server's
gateway) runs real restic; a failed job shows its reason; tenancy and CSRF on every URL."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from control_plane.audit.models import AuditEvent
from control_plane.web.pages.backups import PAGE_SIZE
from tests.web.backups_setup import certificate, running_agent, set_policy, snapshots
from tests.web.console import ConsoleServer
from tests.web.helpers import serious_violations, sign_in, snap

pytestmark = pytest.mark.postgres_only

# Every state the job element showed, in order (the page's own updates, recorded in it).
RECORD_STATES = """
window.jobStates = [];
new MutationObserver(() => {
  const job = document.getElementById("backup-job");
  const state = job && job.dataset.state;
  if (state && window.jobStates[window.jobStates.length - 1] !== state) {
    window.jobStates.push(state);
  }
}).observe(document, { subtree: true, childList: true, attributes: true });
"""
SETTLED = re.compile("^(succeeded|failed|timed_out|cancelled)$")
TIMEOUT = 30_000  # ms: restic creating the repository on a loaded machine


async def follow_job(page: Page, server_id: uuid.UUID, button: str) -> list[str]:
    """Click ``button``, come back to the server's page and wait for the job to settle;
    the states the page showed on its way."""
    await page.click(button)
    await page.wait_for_url(f"**/ui/servers/{server_id}#backups-title")
    job = page.locator("#backup-job")
    await expect(job.locator("progress")).to_have_count(1)
    await expect(job).to_have_attribute("data-state", SETTLED, timeout=TIMEOUT)
    states: list[str] = await page.evaluate("window.jobStates")
    return states


async def test_back_up_now_and_restore_follow_the_agent_live(
    page: Page,
    browser: Browser,
    console_server: ConsoleServer,
    screenshots: Path,
    tmp_path: Path,
) -> None:
    tenant_id, key, _ = console_server.tenant("backups")
    server_id = console_server.server(tenant_id, "bk1")
    (tmp_path / "blocked").write_text("a file where the repository's directory should be")
    set_policy(console_server, server_id, tmp_path / "blocked" / "repo")
    await page.add_init_script(RECORD_STATES)
    base = f"/ui/servers/{server_id}"

    with running_agent(console_server, server_id, tmp_path) as inbox:
        await sign_in(page, key)
        await page.goto(base)
        section = page.locator("#section-backups")
        await expect(section.locator("h2")).to_have_text("Backups")
        await expect(section).to_contain_text("No snapshot yet")

        # A repository restic cannot create: the job fails, and the page says why.
        states = await follow_job(page, server_id, "#back-up-now")
        job = page.locator("#backup-job")
        assert states[-1] == "failed", states
        await expect(job.locator(".error")).to_contain_text("Backup failed: ")
        await expect(job.locator(".error")).to_contain_text("not a directory")

        set_policy(console_server, server_id, tmp_path / "repo")
        await page.reload()
        states = await follow_job(page, server_id, "#back-up-now")
        assert states[-1] == "succeeded" and len(states) >= 2, states  # it changed by itself
        assert set(states[:-1]) <= {"queued", "sent", "running"}, states
        await expect(job.locator(".job-message")).to_contain_text("100 % · snapshot ")
        rows = section.locator("#snapshots tbody tr")
        await expect(rows).to_have_count(1)  # the list refreshed itself when the job ended
        short_id = (await rows.locator("code").inner_text()).strip()
        await expect(rows).to_contain_text("20")  # files
        await expect(section.locator("#back-up-now")).to_be_enabled()

        # A point in time: the newest snapshot at or before it, confirmed, restored in place.
        (inbox / "7.eml").write_text("Subject: 7\n\nedited after the backup\n")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        await page.fill("#restore-at", now)
        await page.click("text=Choose and confirm…")
        await expect(page.locator("#restore-snapshot-id")).to_have_text(short_id)
        assert await serious_violations(page) == []
        await snap(page, screenshots, "restore-confirm")
        states = await follow_job(page, server_id, f"text=Restore snapshot {short_id}")
        assert states[-1] == "succeeded", states
        assert (inbox / "7.eml").read_text() == "Subject: 7\n\nbody 7\n"
        await follow_job(page, server_id, "text=Keep the restored data")
        await expect(page.locator("#backup-job")).to_contain_text("Finishing the restore")

        await expect(page.locator("#section-tls h2")).to_have_text("TLS")
        assert await serious_violations(page) == []
        await snap(page, screenshots, "server-backups")

        # Another tenant's session: every URL naming this server reads as missing.
        csrf = await page.locator("input[name=csrf_token]").first.get_attribute("value")
        refused = await page.request.post(f"{base}/backups", form={"csrf_token": ""})
        assert refused.status == 403  # no CSRF token: nothing queued
        _, other_key, _ = console_server.tenant("intruder")
        other = await browser.new_context(base_url=console_server.url)
        try:
            intruder = await other.new_page()
            await sign_in(intruder, other_key)
            token = await intruder.locator("input[name=csrf_token]").first.get_attribute("value")
            assert token and token != csrf
            job_id = await page.locator("#backup-job").get_attribute("data-job")
            for url in (
                f"{base}/backups",
                f"{base}/backups/jobs/{job_id}",
                f"{base}/restore?snapshot={short_id}",
                f"{base}/tls",
            ):
                assert (await intruder.request.get(url)).status == 404, url
            for url, form in (
                (f"{base}/backups", {}),
                (f"{base}/restore", {"snapshot": short_id}),
                (f"{base}/restore/finish", {"restore_id": "0" * 16, "keep": "previous"}),
            ):
                answer = await intruder.request.post(url, form={"csrf_token": token, **form})
                assert answer.status == 404, url
        finally:
            await other.close()
        await page.reload()
        await expect(page.locator("#backup-job")).to_contain_text("Finishing the restore")

    # Each change is audited as the API route that makes it, refusals too (with their status).
    assert audited(console_server, server_id) == [
        ("server.backups", 202, True),  # queued (the job itself failed)
        ("server.backups", 202, True),
        ("server.restore", 202, True),
        ("server.restore.finish", 202, True),
        ("server.backups", 403, False),  # no CSRF token
        ("server.backups", 404, False),  # the other tenant's three
        ("server.restore", 404, False),
        ("server.restore.finish", 404, False),
    ]


async def test_snapshots_page_and_the_certificate_shows_its_issuer_and_renewal(
    page: Page, console_server: ConsoleServer, screenshots: Path, tmp_path: Path
) -> None:
    tenant_id, key, _ = console_server.tenant("pages")
    server_id = console_server.server(tenant_id, "mx-pages")
    await sign_in(page, key)
    await page.goto(f"/ui/servers/{server_id}")
    await expect(page.locator("#section-backups")).to_contain_text("No backup policy")
    await expect(page.locator("#section-tls")).to_contain_text("No certificate yet")

    set_policy(console_server, server_id, tmp_path / "repo")
    snapshots(console_server, tenant_id, server_id, PAGE_SIZE + 1)
    names = ["mx1.shop.example", "mta-sts.shop.example"]
    issuer = certificate(console_server, tenant_id, server_id, names)
    await page.reload()
    rows = page.locator("#snapshots tbody tr")
    await expect(rows).to_have_count(PAGE_SIZE)
    await expect(rows.first).to_contain_text(f"{PAGE_SIZE:08x}")  # the newest first
    tls = page.locator("#certificates tbody tr")
    await expect(tls).to_contain_text(" ".join(names))
    await expect(tls.locator("td[data-label=Issuer]")).to_have_text(issuer)
    await expect(tls.locator("td[data-label='Days left']")).to_contain_text("20")
    await expect(tls.locator("td[data-label=Renewal]")).to_contain_text("due")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "server-sections-paged")

    await page.click("#section-backups >> text=Next page")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("00000000")  # the oldest, alone on the second page
    assert page.url.endswith(f"/ui/servers/{server_id}")  # swapped in place
    await page.click("#section-backups >> text=Newest snapshots")
    await expect(rows).to_have_count(PAGE_SIZE)

    # Refusals are pages naming the field; nothing is queued.
    base = f"/ui/servers/{server_id}/restore"
    for query, words in (
        ("at=2001-01-01T00:00", "at: this server has no snapshot at or before 2001-01-01"),
        ("at=yesterday", "at: yesterday is not a date and time"),
        ("mailbox=../etc", "mailbox: Value error, an address local@domain"),
        ("snapshot=zz", "snapshot: Value error, a snapshot id (hex)"),
    ):
        refused = await page.request.get(f"{base}?{query}")
        assert refused.status == 422 and words in await refused.text(), (query, refused.status)
    assert audited(console_server, server_id) == []


def audited(console: ConsoleServer, server_id: uuid.UUID) -> list[tuple[str, int | None, bool]]:
    """The server's audit records, oldest first: (action, status, succeeded)."""

    async def read() -> list[tuple[str, int | None, bool]]:
        async with console.db.session() as session:
            rows = await session.scalars(
                select(AuditEvent).where(AuditEvent.object_id == server_id).order_by(AuditEvent.at)
            )
            return [(r.action, r.status, r.succeeded) for r in rows]

    return console.run(read())
