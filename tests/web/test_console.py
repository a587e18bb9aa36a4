"""The web console in a real browser (Debian's Chromium through Playwright), against a
control plane served on 127.0.0.1 with PostgreSQL: sign-in, the fleet, a server's chart
from real agent samples, tenancy, CSRF, sign-out and the sign-in rate limit. Each page
is screenshotted (pytest's tmp dir) and checked with axe-core."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from control_plane.web.pages.fleet import PAGE_SIZE
from control_plane.web.sessions import COOKIE
from tests.web.conftest import MAX_FAILURES
from tests.web.console import ConsoleServer
from tests.web.helpers import serious_violations, session_cookie, sign_in, snap

pytestmark = pytest.mark.postgres_only


async def points(page: Page) -> int:
    return int(await page.locator("#usage .chart").get_attribute("data-points") or 0)


async def test_a_tenant_goes_from_the_fleet_to_a_server_chart_of_real_samples(
    page: Page, console_server: ConsoleServer, screenshots: Path
) -> None:
    tenant_id, key, _ = console_server.tenant("acme")
    server_id = console_server.server(tenant_id, "mx1")
    console_server.server(tenant_id, "mx2")
    assert console_server.agent_samples(tenant_id, server_id, 24) == 24

    await page.goto("/ui/login")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "login")
    await sign_in(page, key)
    await expect(page.locator("#servers tbody tr")).to_have_count(2)
    await expect(page.locator(".counts")).to_contain_text("2 all")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "fleet")

    await page.click("text=mx1")
    await page.wait_for_url(f"**/ui/servers/{server_id}")
    await expect(page.locator("h1")).to_have_text("mx1")
    await expect(page.locator("#live-facts")).to_contain_text("Provisioning: requested")
    await expect(page.locator("#usage .chart canvas")).to_have_count(1)  # uPlot drew it
    assert await points(page) >= 24 // 2  # the 5-minute samples, at the 24 h range's step
    legend = await page.locator("#usage .u-legend").inner_text()
    assert "CPU %" in legend and "Memory %" in legend and "Disk / %" in legend
    assert await serious_violations(page) == []
    await snap(page, screenshots, "server")

    await page.click("#usage nav >> text=7d")  # the range picker swaps the chart (htmx)
    await expect(page.locator("#usage nav [aria-current]")).to_have_text("7d")
    await expect(page.locator("#usage .chart canvas")).to_have_count(1)
    assert await points(page) > 0
    assert page.url.endswith(f"/ui/servers/{server_id}")  # swapped in place, not navigated


async def test_the_fleet_pages_and_filters_by_state(
    page: Page, console_server: ConsoleServer
) -> None:
    tenant_id, key, _ = console_server.tenant("big")
    console_server.servers(tenant_id, [f"mx{n:02}" for n in range(PAGE_SIZE + 1)])
    await sign_in(page, key)
    rows = page.locator("#servers tbody tr")
    await expect(rows).to_have_count(PAGE_SIZE)
    await expect(page.locator(".counts")).to_contain_text(f"{PAGE_SIZE + 1} requested")
    await page.click("text=Next page")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text(f"mx{PAGE_SIZE}")
    await page.select_option("#state", "failed")  # the filter submits itself
    await page.wait_for_url("**/ui/?state=failed")
    await expect(page.locator("article.empty")).to_contain_text("No server is failed")


async def test_another_tenants_server_is_not_found(
    page: Page, console_server: ConsoleServer
) -> None:
    owner, _, _ = console_server.tenant("owner")
    theirs = console_server.server(owner, "theirs")
    _, other_key, _ = console_server.tenant("other")
    await sign_in(page, other_key)
    await expect(page.locator("article.empty")).to_contain_text("No servers yet")
    for path in (f"/ui/servers/{theirs}", f"/ui/servers/{theirs}/chart?range=1h"):
        response = await page.goto(path)
        assert response is not None and response.status == 404
        assert "theirs" not in await page.content()


async def test_a_post_without_the_csrf_token_is_refused(
    page: Page, console_server: ConsoleServer
) -> None:
    _, key, _ = console_server.tenant("csrf")
    await sign_in(page, key)
    for form in ({"csrf_token": "forged"}, {}):
        refused = await page.request.post("/ui/logout", form=form, max_redirects=0)
        assert refused.status == 403
    await page.goto("/ui/")
    assert page.url.endswith("/ui/")  # still signed in: nothing was done


async def test_sign_out_ends_the_session(
    page: Page, browser: Browser, console_server: ConsoleServer
) -> None:
    _, key, _ = console_server.tenant("leaver")
    await sign_in(page, key)
    cookie = await session_cookie(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    await page.click("text=Sign out")
    await page.wait_for_url("**/ui/login")

    again = await browser.new_context(base_url=console_server.url)
    try:
        await again.add_cookies(
            [{"name": COOKIE, "value": cookie["value"], "url": console_server.url}]
        )
        replay = await again.new_page()
        await replay.goto("/ui/")
        assert replay.url.endswith("/ui/login")  # the old cookie opens nothing
    finally:
        await again.close()


async def test_a_revoked_key_ends_its_sessions(page: Page, console_server: ConsoleServer) -> None:
    _, key, key_id = console_server.tenant("revoked")
    await sign_in(page, key)
    console_server.revoke(key_id)
    await page.goto("/ui/")
    assert page.url.endswith("/ui/login")


async def test_an_admin_sees_every_tenant_and_switches_to_one(
    page: Page, console_server: ConsoleServer, screenshots: Path
) -> None:
    first, _, _ = console_server.tenant("first")
    second, _, _ = console_server.tenant("second")
    console_server.server(first, "first-mx")
    console_server.server(second, "second-mx")
    await sign_in(page, console_server.admin_key())
    every = int(await page.locator(".counts a").first.locator("span").inner_text())
    assert every >= 2  # every tenant's servers (other tests' too), each with its owner
    await expect(page.locator("#servers thead")).to_contain_text("Tenant")

    servers = page.locator("#servers")
    views = ((second, "second-mx", "first-mx"), (first, "first-mx", "second-mx"))
    for tenant, mine, theirs in views:
        await page.click("text=Tenant:")
        await page.select_option("#tenant_id", str(tenant))
        if tenant == second:
            assert await serious_violations(page) == []
            await snap(page, screenshots, "tenants")
        await page.click("button:has-text('Switch')")
        await page.wait_for_url("**/ui/")
        await expect(servers).to_contain_text(mine)
        await expect(servers).not_to_contain_text(theirs)
        await expect(page.locator(".counts")).to_contain_text("1 all")


async def test_failed_sign_ins_are_rate_limited_per_address(
    browser: Browser, console_server: ConsoleServer, screenshots: Path
) -> None:
    """Behind a trusted proxy the limit counts the forwarded address: this test's own, so
    other tests signing in from 127.0.0.1 are not held."""
    _, key, _ = console_server.tenant("limited")
    context = await browser.new_context(
        base_url=console_server.url,
        extra_http_headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
    )
    try:
        page = await context.new_page()
        for attempt in [*["mf_live_not-a-key"] * MAX_FAILURES, key]:  # even the right key waits
            await page.goto("/ui/login")
            await page.fill("input[name=api_key]", attempt)
            async with page.expect_response("**/ui/login") as answer:
                await page.click("button[type=submit]")
            response = await answer.value
            assert response.status == (401 if attempt != key else 429)
        assert int(response.headers["retry-after"]) > 0
        await expect(page.locator("#login-error")).to_contain_text("Too many failed sign-ins")
        assert await serious_violations(page) == []
        await snap(page, screenshots, "rate-limited")
        # HTTPS as the trusted proxy says: the cookies are Secure
        login = await page.request.get("/ui/login")
        assert "Secure" in login.headers["set-cookie"] and "HttpOnly" in login.headers["set-cookie"]
    finally:
        await context.close()
