"""A server page's DNS, IPs & reputation and resize sections in a real browser, on a mail
server made through the services: records published to a real Knot (and a zone Knot
refuses, which must read unknown, never ok), "Test DNS" streamed per server answer, DNSBL
lists on the same Knot, pause/resume, and a resize previewed and confirmed against the
Hostwinds contract double; another tenant's key gets 404 everywhere, a POST without the
CSRF token 403."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, expect

from tests.web.console import ConsoleServer
from tests.web.helpers import serious_violations, sign_in, snap
from tests.web.server_sections_setup import BIGGER_PLAN, MailServer, section_world

pytestmark = pytest.mark.postgres_only
Form = dict[str, str | float | bool]


@pytest.fixture(scope="module")
def world(console_server: ConsoleServer) -> Iterator[MailServer]:
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        section_world(console_server, monkeypatch) as made,
    ):
        yield made


def card(page: Page, address: str) -> Locator:
    return page.locator(f"#ip-{address.replace('.', '-')}")


def posts(world: MailServer) -> list[str]:
    base = f"/ui/servers/{world.server_id}"
    return [
        f"{base}/dns/{world.served[0]}/check",
        f"{base}/ips/{world.sending}/reputation/check",
        f"{base}/ips/{world.sending}/pause",
        f"{base}/ips/{world.sending}/resume",
        f"{base}/resize",
    ]


async def test_dns_ips_and_resize_sections_show_and_act(
    page: Page, world: MailServer, screenshots: Path
) -> None:
    await sign_in(page, world.key)
    await page.goto(f"/ui/servers/{world.server_id}")

    # DNS: the applied zone is all published; the refused one is unknown, never published.
    served = page.locator(f"#dns-{world.served[0]}")
    refused = page.locator(f"#dns-{world.refused[0]}")
    await expect(served.locator("h3 .badge")).to_contain_text("published")
    await expect(served.locator("h3 .badge")).not_to_contain_text("not")
    assert await served.locator(".dns-records tbody tr").count() >= 5
    await expect(refused.locator("h3 .badge")).to_have_text("published: unknown")
    states = await refused.locator(".dns-records td[data-label=State]").all_inner_texts()
    assert states and set(states) == {"unknown"}

    # Test DNS streams each answer, then the verdict: Knot serves every record...
    await served.locator("button", has_text="Test DNS").click()
    await expect(served.locator("[data-verdict]")).to_have_text("ok")
    answers = await served.locator(".dns-result td[data-label=State]").all_inner_texts()
    assert answers and set(answers) == {"matching"}
    # ...and refuses the other zone: the check could not ask, so it is unknown.
    await refused.locator("button", has_text="Test DNS").click()
    await expect(refused.locator("[data-verdict]")).to_have_text("unknown")
    answers = await refused.locator(".dns-result td[data-label=State]").all_inner_texts()
    assert answers and set(answers) == {"unknown"}
    await expect(refused.locator(".dns-result").first).to_contain_text("REFUSED")

    # IPs: check the listed address now; pause and resume the sending one.
    listed = card(page, world.listed)
    await expect(listed.locator("h3")).to_contain_text("unchecked")
    await listed.locator("button", has_text="Check reputation now").click()
    listed = card(page, world.listed)  # the page came back with the new results
    await expect(listed.locator("h3")).to_contain_text("listed")
    rows = listed.locator(".dnsbl-results tbody tr")
    await expect(rows.filter(has_text="Web BL")).to_contain_text("seen on spam traps")
    await expect(rows.filter(has_text="Web BL").locator(".badge")).to_have_text("listed")
    await expect(rows.filter(has_text="Refusing BL").locator(".badge")).to_have_text("unknown")
    sending = card(page, world.sending)
    await sending.locator("input[name=reason]").fill("complaints spike")
    await sending.locator("button", has_text="Pause sending").click()
    sending = card(page, world.sending)
    await expect(sending.locator("h3")).to_contain_text("paused")
    await expect(sending).to_contain_text("held: complaints spike")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "server-sections")
    await sending.locator("button", has_text="Resume sending").click()
    await expect(card(page, world.sending).locator("h3")).not_to_contain_text("paused")

    # Resize: no usage yet (unknown advice), preview the bigger plan, confirm it.
    section = page.locator("#section-resize")
    await expect(section.locator("#resize-advice")).to_have_text("unknown")
    await section.locator("#resize-plan").select_option(BIGGER_PLAN)
    await section.locator("button", has_text="Preview").click()
    await expect(page.locator("#resize-difference")).to_contain_text("+17.00 USD/month")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "resize-preview")
    await page.locator("input[name=confirm]").check()
    await page.locator("button", has_text="Resize").click()
    await page.wait_for_url(f"**/ui/servers/{world.server_id}#section-resize")
    await expect(page.locator("#resizes tbody tr")).to_have_count(1)
    await expect(page.locator("#resizes tbody tr")).to_contain_text("running")


async def test_another_tenants_sections_and_actions_are_not_found(
    page: Page, world: MailServer, console_server: ConsoleServer
) -> None:
    _, other_key, _ = console_server.tenant("nosy")
    await sign_in(page, other_key)
    csrf = await page.locator("input[name=csrf_token]").first.get_attribute("value")
    base = f"/ui/servers/{world.server_id}"
    for path in (
        f"{base}/dns",
        f"{base}/ips",
        f"{base}/resize",
        f"{base}/resize/preview?plan={BIGGER_PLAN}",
        f"{base}/dns/{world.served[0]}/check?ticket=0.x",
    ):
        response = await page.request.get(path)
        assert response.status == 404, path
        assert world.served[1] not in await response.text()
    form: Form = {"csrf_token": csrf or "", "reason": "x", "plan": BIGGER_PLAN, "confirm": "yes"}
    for path in posts(world):
        response = await page.request.post(path, form=form, max_redirects=0)
        assert response.status == 404, path


async def test_a_section_post_without_the_csrf_token_is_refused(
    page: Page, world: MailServer
) -> None:
    await sign_in(page, world.key)
    for path in posts(world):
        forged: Form = {"csrf_token": "forged", "reason": "x", "plan": BIGGER_PLAN}
        for form in (forged, {}):
            response = await page.request.post(path, form=form, max_redirects=0)
            assert response.status == 403, path
