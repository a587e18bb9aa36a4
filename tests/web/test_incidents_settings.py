"""Incidents and settings in a real browser: an incident opened by a failing signal is
acknowledged, commented and resolved from its page; alert channels, escalation policies and
API keys are made (secrets shown once, then hints), a key is revoked and cannot sign in; the
audit log shows each change. Another tenant's key gets 404 on everything naming an object."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from control_plane.db.base import utcnow
from control_plane.incidents.models import Incident
from control_plane.vault.client import Vault
from tests.incidents.helpers import observe, open_incident, signal
from tests.support.webhooks import webhook_receiver
from tests.web.console import ConsoleServer
from tests.web.helpers import serious_violations, sign_in, snap

pytestmark = pytest.mark.postgres_only

HOOK_TOKEN = "T0PSECRET-path-token"
HOOK_SECRET = "a-long-random-shared-secret"


def failing_incident(
    console_server: ConsoleServer, tenant_id: uuid.UUID, server_id: uuid.UUID
) -> Incident:
    """An incident opened the way checks open them: a failing signal observed."""
    db = console_server.db
    console_server.run(observe(db, utcnow(), signal(tenant_id, server_id, "smtp.25")))
    return console_server.run(open_incident(db, server_id, "smtp.25"))


@pytest.fixture(scope="module")
def kv_mount(console_server: ConsoleServer) -> None:
    """The KV mount channel secrets go to (``mailfleet serve`` setup makes it)."""
    openbao = console_server.openbao
    vault = Vault(openbao.url, token=openbao.token, kv_mount="mailfleet")
    console_server.run(vault.ensure_kv_mount())


async def csrf_of(page: Page) -> str:
    """The signed-in session's form token, as any of its pages carries it."""
    return await page.locator("input[name=csrf_token]").first.input_value()


async def signed_in_elsewhere(browser: Browser, console_server: ConsoleServer, key: str) -> Page:
    """A second browser signed in with ``key`` (the caller closes its context)."""
    context = await browser.new_context(base_url=console_server.url)
    page = await context.new_page()
    await sign_in(page, key)
    return page


async def assert_not_found(page: Page, gets: list[str], posts: list[str], secret: str) -> None:
    token = await csrf_of(page)
    for path in gets:
        response = await page.goto(path)
        assert response is not None and response.status == 404, path
        assert secret not in await page.content()
    for path in posts:
        answer = await page.request.post(path, form={"csrf_token": token, "body": "x"})
        assert answer.status == 404, path
        assert secret not in await answer.text()


async def test_an_incident_is_acknowledged_commented_and_resolved(
    page: Page, browser: Browser, console_server: ConsoleServer, screenshots: Path
) -> None:
    tenant_id, key, _ = console_server.tenant("oncall")
    server_id = console_server.server(tenant_id, "mx-incident")
    incident = failing_incident(console_server, tenant_id, server_id)

    await sign_in(page, key)
    await page.click("nav >> text=Incidents")
    rows = page.locator("#incidents tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("critical")
    await expect(rows.locator(f"a[href='/ui/servers/{server_id}']")).to_have_text("mx-incident")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "incidents")

    await rows.get_by_role("link", name="smtp.25").click()
    await page.wait_for_url(f"**/ui/incidents/{incident.id}")
    state, timeline = page.locator("#incident-state"), page.locator("#timeline")
    await expect(timeline).to_contain_text("triggered")
    refused = await page.request.post(f"/ui/incidents/{incident.id}/acknowledge", form={})
    assert refused.status == 403  # no CSRF token: nothing done
    await expect(state).to_have_text("open")

    await page.click("button:has-text('Acknowledge')")
    await expect(state).to_have_text("acknowledged")
    await expect(timeline).to_contain_text("acknowledged by oncall")
    await page.fill("#comment-body", "restarting postfix")
    await page.click("button:has-text('Add comment')")
    await expect(timeline).to_contain_text("restarting postfix")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "incident")
    await page.click("button:has-text('Resolve')")
    await expect(state).to_have_text("resolved")
    kinds = await timeline.locator(".badge").all_inner_texts()
    assert kinds[0] == "triggered" and kinds[-3:] == ["acknowledged", "commented", "resolved"]

    await page.goto("/ui/incidents")
    await expect(page.locator("article.empty")).to_contain_text("No open incidents")
    await page.goto("/ui/incidents?state=resolved")
    await expect(rows).to_have_count(1)
    await page.goto("/ui/settings/audit?object_type=incident")
    actions = await page.locator("#audit td[data-label=Action]").all_inner_texts()
    assert actions[:3] == ["incident.resolve", "comment.create", "incident.acknowledge"]

    _, other_key, _ = console_server.tenant("stranger")
    other = await signed_in_elsewhere(browser, console_server, other_key)
    try:
        base = f"/ui/incidents/{incident.id}"
        posts = [f"{base}/acknowledge", f"{base}/resolve", f"{base}/comments"]
        await assert_not_found(other, [base], posts, "smtp.25")
        await other.goto("/ui/incidents?state=all")
        await expect(other.locator("article.empty")).to_be_visible()
    finally:
        await other.context.close()


@pytest.mark.usefixtures("kv_mount")
async def test_alert_channels_policies_and_api_keys_show_their_secrets_once(
    page: Page, browser: Browser, console_server: ConsoleServer, screenshots: Path
) -> None:
    _, key, _ = console_server.tenant("settings")
    await sign_in(page, key)
    await page.click("nav >> text=Settings")
    await expect(page.locator("#channels-title + p.empty")).to_contain_text("No alert channels")

    form = page.locator("#channel-form")
    await form.locator("input[name=name]").fill("ops hook")
    await form.locator("select[name=kind]").select_option("webhook")
    await form.locator("input[name=url]").fill(f"https://hooks.example.com/{HOOK_TOKEN}")
    await form.locator("input[name=secret]").fill(HOOK_SECRET)
    await form.locator("button[type=submit]").click()
    channels = page.locator("#channels tbody tr")
    await expect(channels).to_contain_text("https://hooks.example.com/…")
    html = await page.content()
    assert HOOK_TOKEN not in html and HOOK_SECRET not in html
    bad: dict[str, str | float | bool] = {
        "csrf_token": await csrf_of(page),
        "name": "no url",
        "kind": "slack",
    }
    refused = await page.request.post("/ui/settings/alert-channels", form=bad)
    assert refused.status == 422 and "needs url" in await refused.text()
    await page.reload()
    await expect(channels).to_have_count(1)  # nothing made

    await page.click("summary:has-text('Add a policy')")
    policy = page.locator("#policy-form")
    await policy.locator("input[name=name]").fill("page ops")
    await policy.locator("label:has-text('ops hook') input").check()
    await policy.locator("button[type=submit]").click()
    await expect(page.locator("#policies tbody tr")).to_contain_text("1. ops hook")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "settings-alerts")
    channel_id = (await channels.locator("form").first.get_attribute("action") or "").split("/")[4]
    policy_id = (await page.locator("#policies form").first.get_attribute("action") or "").split(
        "/"
    )[4]

    await page.click("text=API keys")
    await page.fill("#key-form input[name=name]", "robot")
    await page.click("#key-form button[type=submit]")
    new_key = await page.locator("#new-key-value").inner_text()
    assert new_key.startswith("mf_live_")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "settings-key-created")
    await page.goto("/ui/settings/api-keys")
    robot = page.locator("#keys tbody tr", has_text="robot")
    await expect(robot).to_contain_text(f"mf_live_…{new_key[-4:]}")
    assert new_key not in await page.content()  # shown once, then only its hint
    refused = await page.request.post(
        "/ui/settings/api-keys", form={"csrf_token": await csrf_of(page), "scope": "admin"}
    )
    assert refused.status == 403  # a tenant key makes no admin key, as the API refuses

    await robot.locator("text=Revoke…").click()
    revoke_url = page.url
    assert await serious_violations(page) == []
    await snap(page, screenshots, "settings-revoke")
    await page.click("button:has-text('Revoke the key')")
    await page.wait_for_url("**/ui/settings/api-keys")
    await expect(page.locator("#keys")).not_to_contain_text("robot")
    await page.goto("/ui/login")
    await page.fill("input[name=api_key]", new_key)
    async with page.expect_response("**/ui/login") as answer:
        await page.click("button[type=submit]")
    assert (await answer.value).status == 401  # the revoked key signs in nowhere

    await page.goto("/ui/settings/audit")
    actions = await page.locator("#audit td[data-label=Action]").all_inner_texts()
    assert actions[:5] == [
        "api_key.delete", "api_key.create", "api_key.create", "escalation_policy.create",
        "alert_channel.create",
    ]  # fmt: skip
    results = await page.locator("#audit td[data-label=Result]").all_inner_texts()
    assert results[1] == "403" and results[2] == "201"  # the admin key refused, recorded
    assert await serious_violations(page) == []
    await snap(page, screenshots, "settings-audit")

    _, other_key, _ = console_server.tenant("snoop")
    other = await signed_in_elsewhere(browser, console_server, other_key)
    try:
        channel = f"/ui/settings/alert-channels/{channel_id}"
        policy_path = f"/ui/settings/escalation-policies/{policy_id}"
        revoke = revoke_url.removeprefix(console_server.url)
        posts = [f"{channel}/test", f"{channel}/delete", f"{policy_path}/delete", revoke]
        await assert_not_found(other, [revoke], posts, "robot")
        await other.goto("/ui/settings")
        await expect(other.locator("#channels")).to_have_count(0)
    finally:
        await other.context.close()


async def test_an_admin_sees_every_tenants_incidents_and_makes_fleet_settings(
    page: Page, console_server: ConsoleServer
) -> None:
    """With no tenant chosen an admin sees each incident's tenant, and what it makes is the
    fleet's own: an in-app channel of no tenant, an admin key."""
    tenant_id, _, _ = console_server.tenant("watched")
    server_id = console_server.server(tenant_id, "mx-watched")
    incident = failing_incident(console_server, tenant_id, server_id)
    await sign_in(page, console_server.admin_key())
    await page.goto("/ui/incidents")
    row = page.locator("#incidents tbody tr", has_text="mx-watched")
    await expect(row.locator("td[data-label=Tenant]")).to_contain_text("watched-")
    await expect(row.get_by_role("link", name="smtp.25")).to_have_attribute(
        "href", f"/ui/incidents/{incident.id}"
    )

    await page.goto("/ui/settings")
    form = page.locator("#channel-form")
    if not await form.is_visible():  # closed once any channel (another test's) is listed
        await page.click("summary:has-text('Add a channel')")
    await form.locator("input[name=name]").fill(f"fleet feed {uuid.uuid4().hex[:6]}")
    await form.locator("select[name=kind]").select_option("in_app")
    await form.locator("button[type=submit]").click()
    fleet = page.locator("#channels tbody tr", has_text="fleet feed")
    await expect(fleet.locator("td[data-label=Owner]")).to_have_text("fleet")

    await page.goto("/ui/settings/api-keys")
    await page.fill("#key-form input[name=name]", "second admin")
    await page.click("#key-form button[type=submit]")
    assert (await page.locator("#new-key-value").inner_text()).startswith("mf_admin_")


@pytest.mark.usefixtures("kv_mount")
async def test_a_channels_test_button_sends_a_signed_message_and_says_how_it_went(
    page: Page, console_server: ConsoleServer
) -> None:
    """ "Test" on a webhook channel sends now, signed with its secret, and the page says it
    was sent; when its receiver is gone the page says it will retry, and why."""
    _, key, _ = console_server.tenant("hooktest")
    await sign_in(page, key)
    with webhook_receiver() as receiver:
        await page.goto("/ui/settings")
        form = page.locator("#channel-form")
        await form.locator("input[name=name]").fill("loopback hook")
        await form.locator("select[name=kind]").select_option("webhook")
        await form.locator("input[name=url]").fill(receiver.url)
        await form.locator("input[name=secret]").fill(HOOK_SECRET)
        await form.locator("button[type=submit]").click()
        await page.click("button[aria-label='Send a test message to loopback hook']")
        await expect(page.locator("#test-result")).to_contain_text("loopback hook: sent")
        arrival = receiver.wait_for(lambda a: True, 5, "the test message")
        assert arrival.signed_by(HOOK_SECRET) and arrival.path == "/hook"
    await page.click("button[aria-label='Send a test message to loopback hook']")
    result = page.locator("#test-result")  # the receiver is gone: refused, retried later
    await expect(result.locator(".badge")).to_have_text("retrying")
    await expect(result).to_contain_text("All connection attempts failed")
