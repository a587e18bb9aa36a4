"""The domains pages in a real browser: a tenant adds a domain on its MailU server, a
mailbox whose password shows once (a reload does not show it again), an alias, a new
password, deletes; bad input is refused naming the field with nothing written; another
tenant's key finds nothing at any of the domain's URLs; a form without its token is refused.
Every change is audited as the API's route would record it."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, Response, expect

from control_plane.web.pages.domains import PAGE_SIZE
from tests.web.console import ConsoleServer
from tests.web.domains_setup import (
    addresses,
    audit_actions,
    domain_with_mail,
    ensure_kv_mount,
    mail_server,
    mailbox_password,
    more_mailboxes,
    workspace,
)
from tests.web.helpers import serious_violations, sign_in, snap

pytestmark = pytest.mark.postgres_only


@pytest.fixture(autouse=True, scope="module")
def kv_mount(console_server: ConsoleServer) -> None:
    ensure_kv_mount(console_server)


async def submit(page: Page, button: str) -> Response:
    """Click a form's button; the answer the browser shows (after any redirect)."""
    async with page.expect_navigation() as navigation:
        await page.click(button)
    response = await navigation.value
    assert response is not None
    return response


async def csrf(page: Page) -> str:
    return await page.locator("input[name=csrf_token]").first.input_value()


async def test_a_tenant_adds_a_domain_a_mailbox_shown_once_and_an_alias(
    page: Page, console_server: ConsoleServer, screenshots: Path
) -> None:
    tenant_id, key, _ = console_server.tenant("mailer")
    mail_server(console_server, tenant_id, "mx-mailer")
    console_server.server(tenant_id, "no-mail")  # runs no MailU: not offered
    workspace_id = workspace(console_server, tenant_id, "Client A")
    await sign_in(page, key)

    await page.click("nav >> text=Domains")
    await page.wait_for_url("**/ui/domains")
    await expect(page.locator("article.empty")).to_contain_text("No domains yet")
    await expect(page.locator("#domain-server option")).to_have_text(
        ["mx-mailer (mx.mx-mailer.test)"]
    )
    await page.fill("#domain-name", "not a domain")
    refused = await submit(page, "#new-domain button")
    assert refused.status == 422
    await expect(page.locator("#domain-error")).to_contain_text("Domain name:")
    await expect(page.locator("#domain-name")).to_have_attribute("aria-invalid", "true")
    assert await serious_violations(page) == []  # the empty state, a refused form
    name = f"shop-{tenant_id.hex[:6]}.example"
    await page.fill("#domain-name", name)
    added = await submit(page, "#new-domain button")
    assert added.status == 200, await page.locator("main").inner_text()
    await expect(page.locator("h1")).to_have_text(name)
    domain_path = page.url.removeprefix(console_server.url)

    # a mailbox: its password shows once, and is Vault's
    await page.fill("#mailbox-local", "sales")
    await page.fill("#mailbox-name", "Sales team")
    created = await submit(page, "#new-mailbox button")
    assert created.status == 201 and created.headers["cache-control"] == "no-store"
    password = await page.locator("#password").inner_text()
    assert password == mailbox_password(console_server, tenant_id, f"sales@{name}")
    again = await page.reload()
    assert again is not None and again.request.method == "GET" and again.status == 200
    assert page.url.endswith(domain_path)
    assert password not in await page.content()
    row = page.locator("#mailboxes tbody tr")
    await expect(row).to_contain_text(f"sales@{name}")
    await expect(row).to_contain_text("shown once")

    # bad input: the field named, nothing written
    for local, status, message in (("bad part!", 422, "Local part:"), ("SALES", 409, "exists")):
        await page.fill("#mailbox-local", local)
        refused = await submit(page, "#new-mailbox button")
        assert refused.status == status
        await expect(page.locator("#mailbox-error")).to_contain_text(message)
        await expect(page.locator("#mailbox-local")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#mailbox-local")).to_have_value(local)
        await expect(page.locator("#mailboxes tbody tr")).to_have_count(1)
    forged: list[dict[str, str | float | bool]] = [{}, {"csrf_token": "forged"}]
    for form in forged:
        form["local_part"] = "forged"
        answer = await page.request.post(f"{domain_path}/mailboxes", form=form)
        assert answer.status == 403

    # an alias to it, then a mailbox it does not know is refused naming the field
    await page.fill("#alias-local", "info")
    await page.fill("#alias-destinations", f"sales@{name}")
    await submit(page, "#new-alias button")
    await expect(page.locator("#aliases tbody tr")).to_contain_text(f"info@{name}")
    await page.fill("#alias-local", "help")
    await page.fill("#alias-destinations", f"nobody@{name}")
    assert (await submit(page, "#new-alias button")).status == 422
    await expect(page.locator("#alias-error")).to_contain_text("Destinations:")
    await expect(page.locator("#aliases tbody tr")).to_have_count(1)

    # a new password, shown once; the mailbox cannot go while the alias delivers to it
    rotated = await submit(page, "#mailboxes button:has-text('New password')")
    assert rotated.status == 200
    assert await page.locator("#password").inner_text() not in ("", password)
    assert await serious_violations(page) == []  # a login shown, mailboxes, aliases, forms
    await snap(page, screenshots, "domain")
    await page.click("#mailboxes summary")
    refused = await submit(page, f"#mailboxes button:has-text('Delete sales@{name}')")
    assert refused.status == 409
    await expect(page.locator("#mailboxes-error")).to_contain_text(f"info@{name}")
    await page.click("#aliases summary")
    await submit(page, f"#aliases button:has-text('Delete info@{name}')")
    await expect(page.locator("#aliases")).to_have_count(0)
    await page.select_option("#workspace", str(workspace_id))
    await submit(page, "#move-domain button")
    await expect(page.locator("#workspace option:checked")).to_have_text("Client A")
    await page.click("#mailboxes summary")
    await submit(page, f"#mailboxes button:has-text('Delete sales@{name}')")
    await expect(page.locator("#mailboxes")).to_have_count(0)

    await page.goto("/ui/domains")
    await expect(page.locator("#domains tbody tr")).to_contain_text(name)
    await expect(page.locator("#domains tbody tr")).to_contain_text("Client A")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "domains")
    done = [a for a in audit_actions(console_server, tenant_id) if not a.startswith("workspace")]
    assert done == [
        "domain.create 422",
        "domain.create 201",
        "mailbox.create 201",
        "mailbox.create 422",  # the refused ones too, with the status they got
        "mailbox.create 409",
        "mailbox.create 403",  # no token, a forged token
        "mailbox.create 403",
        "alias.create 201",
        "alias.create 422",
        "mailbox.credentials.rotate 200",
        "mailbox.delete 409",
        "alias.delete 204",
        "domain.update 200",
        "mailbox.delete 204",
    ]


async def test_another_tenants_domain_is_not_found_at_any_of_its_urls(
    page: Page, console_server: ConsoleServer
) -> None:
    owner, _, _ = console_server.tenant("owner")
    theirs = domain_with_mail(console_server, owner, "theirs")
    _, other_key, _ = console_server.tenant("other")
    await sign_in(page, other_key)
    await page.goto("/ui/domains")
    await expect(page.locator("article.empty")).to_contain_text("No domains yet")
    token = await csrf(page)
    response = await page.goto(f"/ui/domains/{theirs.domain_id}")
    assert response is not None and response.status == 404
    assert theirs.name not in await page.content()
    base = f"/ui/domains/{theirs.domain_id}"
    posts: dict[str, dict[str, str | float | bool]] = {
        f"{base}/mailboxes": {"local_part": "mine"},
        f"{base}/mailboxes/{theirs.mailbox_id}/rotate": {},
        f"{base}/mailboxes/{theirs.mailbox_id}/delete": {},
        f"{base}/aliases": {"local_part": "mine", "destinations": f"box@{theirs.name}"},
        f"{base}/aliases/{theirs.alias_id}/delete": {},
        f"{base}/workspace": {"workspace_id": ""},
    }
    for path, form in posts.items():
        answer = await page.request.post(path, form={**form, "csrf_token": token})
        assert answer.status == 404, path
        assert theirs.name not in await answer.text()
    created = await page.request.post(
        "/ui/domains",
        form={"name": "x.example", "server_id": str(theirs.server_id), "csrf_token": token},
    )
    assert created.status == 404 and "Server:" in await created.text()
    assert addresses(console_server, owner) == sorted([f"box@{theirs.name}", f"info@{theirs.name}"])


async def test_an_admin_sees_every_tenants_domains_and_adds_one_for_a_chosen_tenant(
    page: Page, console_server: ConsoleServer
) -> None:
    first, _, _ = console_server.tenant("first-mail")
    made = domain_with_mail(console_server, first, "first")
    await sign_in(page, console_server.admin_key())
    await page.goto("/ui/domains")
    await expect(page.locator("#domains thead")).to_contain_text("Tenant")
    await expect(page.locator("#domains")).to_contain_text(made.name)
    await expect(page.locator("#choose-tenant")).to_contain_text("Choose a tenant first")
    token = await csrf(page)
    refused = await page.request.post(
        "/ui/domains",
        form={
            "name": "y.example",
            "server_id": str(made.server_id),
            "csrf_token": await csrf(page),
        },
    )
    assert refused.status == 422 and "belongs to its server&#39;s tenant." in await refused.text()

    switched = await page.request.post(
        "/ui/tenant", form={"tenant_id": str(first), "csrf_token": token}
    )
    assert switched.ok
    await page.goto("/ui/domains")
    await expect(page.locator("#domains tbody tr")).to_have_count(1)  # this tenant's only
    await expect(page.locator("#domains thead")).not_to_contain_text("Tenant")
    name = f"admin-{first.hex[-6:]}.example"
    await page.fill("#domain-name", name)
    await submit(page, "#new-domain button")
    await expect(page.locator("h1")).to_have_text(name)
    assert audit_actions(console_server, first) == ["domain.create 201"]


async def test_a_domains_mailboxes_page_by_fifty(page: Page, console_server: ConsoleServer) -> None:
    tenant_id, key, _ = console_server.tenant("many")
    made = domain_with_mail(console_server, tenant_id, "many")  # box@, then m00@ …
    more_mailboxes(console_server, tenant_id, made.domain_id, PAGE_SIZE)
    await sign_in(page, key)
    await page.goto(f"/ui/domains/{made.domain_id}")
    rows = page.locator("#mailboxes tbody tr")
    await expect(rows).to_have_count(PAGE_SIZE)
    await page.click("text=Next page of mailboxes")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text(f"m{PAGE_SIZE - 1:02}@{made.name}")
