"""The web console in a real browser (Debian's Chromium through Playwright), against a
control plane served on 127.0.0.1 with PostgreSQL: sign-in, the fleet, a server's chart
from real agent samples, tenancy, CSRF, sign-out and the sign-in rate limit. Each page
is screenshotted (pytest's tmp dir) and checked with axe-core."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from control_plane.web.sessions import COOKIE
from tests.web.conftest import MAX_FAILURES
from tests.web.console import ConsoleServer
from tests.web.helpers import serious_violations, session_cookie, sign_in, snap

pytestmark = pytest.mark.postgres_only


def test_a_tenant_goes_from_the_fleet_to_a_server_chart_of_real_samples(
    page: Page, console_server: ConsoleServer, screenshots: Path
) -> None:
    tenant_id, key, _ = console_server.tenant("acme")
    server_id = console_server.server(tenant_id, "mx1")
    console_server.server(tenant_id, "mx2")
    assert console_server.agent_samples(tenant_id, server_id, 24) == 24

    page.goto("/ui/login")
    assert serious_violations(page) == []
    snap(page, screenshots, "login")
    sign_in(page, key)
    rows = page.locator("#servers tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator(".counts")).to_contain_text("2 all")
    assert serious_violations(page) == []
    snap(page, screenshots, "fleet")

    page.click("text=mx1")
    page.wait_for_url(f"**/ui/servers/{server_id}")
    expect(page.locator("h1")).to_have_text("mx1")
    chart = page.locator("#usage .chart")
    expect(chart.locator("canvas")).to_have_count(1)  # uPlot drew it
    assert int(chart.get_attribute("data-points") or 0) >= 24 // 2  # bucketed, not empty
    labels = page.locator("#usage .u-legend").inner_text()
    assert "CPU %" in labels and "Memory %" in labels
    assert serious_violations(page) == []
    snap(page, screenshots, "server")

    page.click("#usage nav >> text=7d")  # the range picker swaps the chart in place (htmx)
    expect(page.locator("#usage nav [aria-current]")).to_have_text("7d")
    expect(page.locator("#usage .chart canvas")).to_have_count(1)
    assert int(page.locator("#usage .chart").get_attribute("data-points") or 0) > 0
    assert page.url.endswith(f"/ui/servers/{server_id}")


def test_another_tenants_server_is_not_found(page: Page, console_server: ConsoleServer) -> None:
    owner, _, _ = console_server.tenant("owner")
    theirs = console_server.server(owner, "theirs")
    _, other_key, _ = console_server.tenant("other")
    sign_in(page, other_key)
    expect(page.locator("article.empty")).to_contain_text("No servers yet")
    for path in (f"/ui/servers/{theirs}", f"/ui/servers/{theirs}/chart?range=1h"):
        response = page.goto(path)
        assert response is not None and response.status == 404
        assert "theirs" not in page.content()


def test_a_post_without_the_csrf_token_is_refused(
    page: Page, console_server: ConsoleServer
) -> None:
    _, key, _ = console_server.tenant("csrf")
    sign_in(page, key)
    refused = page.request.post("/ui/logout", form={"csrf_token": "forged"}, max_redirects=0)
    assert refused.status == 403
    refused = page.request.post("/ui/logout", form={}, max_redirects=0)
    assert refused.status == 403
    assert page.goto("/ui/") is not None and page.url.endswith("/ui/")  # still signed in


def test_sign_out_ends_the_session(
    page: Page, browser: Browser, console_server: ConsoleServer
) -> None:
    _, key, _ = console_server.tenant("leaver")
    sign_in(page, key)
    cookie = session_cookie(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.click("text=Sign out")
    page.wait_for_url("**/ui/login")

    again = browser.new_context(base_url=console_server.url)
    try:
        again.add_cookies([{"name": COOKIE, "value": cookie["value"], "url": console_server.url}])
        replay = again.new_page()
        replay.goto("/ui/")
        assert replay.url.endswith("/ui/login")  # the old cookie opens nothing
    finally:
        again.close()


def test_a_revoked_key_ends_its_sessions(page: Page, console_server: ConsoleServer) -> None:
    _, key, key_id = console_server.tenant("revoked")
    sign_in(page, key)
    console_server.revoke(key_id)
    page.goto("/ui/")
    assert page.url.endswith("/ui/login")


def test_an_admin_sees_every_tenant_and_switches_to_one(
    page: Page, console_server: ConsoleServer, screenshots: Path
) -> None:
    first, _, _ = console_server.tenant("first")
    second, _, _ = console_server.tenant("second")
    console_server.server(first, "first-mx")
    console_server.server(second, "second-mx")
    sign_in(page, console_server.admin_key())
    expect(page.locator("#servers")).to_contain_text("first-mx")
    expect(page.locator("#servers")).to_contain_text("second-mx")

    page.click("text=Tenant: all")
    page.select_option("#tenant_id", str(second))
    assert serious_violations(page) == []
    snap(page, screenshots, "tenants")
    page.click("button:has-text('Switch')")
    page.wait_for_url("**/ui/")
    expect(page.locator("#servers")).to_contain_text("second-mx")
    expect(page.locator("#servers")).not_to_contain_text("first-mx")


def test_failed_sign_ins_are_rate_limited_per_address(
    browser: Browser, console_server: ConsoleServer, screenshots: Path
) -> None:
    """Behind a trusted proxy the limit counts the forwarded address: this test's own, so
    other tests signing in from 127.0.0.1 are not held."""
    _, key, _ = console_server.tenant("limited")
    context = browser.new_context(
        base_url=console_server.url,
        extra_http_headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
    )
    try:
        page = context.new_page()
        for _ in range(MAX_FAILURES):
            page.goto("/ui/login")
            page.fill("input[name=api_key]", "mf_live_not-a-key")
            with page.expect_response("**/ui/login") as answer:
                page.click("button[type=submit]")
            assert answer.value.status == 401
        page.goto("/ui/login")
        page.fill("input[name=api_key]", key)  # even the right key waits
        with page.expect_response("**/ui/login") as answer:
            page.click("button[type=submit]")
        assert answer.value.status == 429
        assert int(answer.value.headers["retry-after"]) > 0
        expect(page.locator("#login-error")).to_contain_text("Too many failed sign-ins")
        snap(page, screenshots, "rate-limited")
    finally:
        context.close()

    page = browser.new_context(
        base_url=console_server.url, extra_http_headers={"X-Forwarded-Proto": "https"}
    ).new_page()
    try:
        login = page.request.get("/ui/login")
        csrf = login.headers["set-cookie"]
        assert "Secure" in csrf and "HttpOnly" in csrf  # HTTPS as the trusted proxy says
    finally:
        page.context.close()
