"""Alert channels through the API: shapes, secrets only in Vault, bad input, tenancy."""

from __future__ import annotations

from typing import Any

import httpx

from control_plane.vault.client import Vault
from tests.alerts.helpers import make_channel
from tests.conftest import MakeTenant

CHANNELS = "/api/v1/alert-channels"
SECRET = "s3cret-s3cret-s3cret-0001"


def field_errors(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    return {error["field"] for error in response.json()["errors"]}


async def test_secrets_go_to_vault_and_are_never_shown(
    client: httpx.AsyncClient, make_tenant: MakeTenant, vault: Vault
) -> None:
    tenant = await make_tenant()
    url = "https://hooks.example.com/services/T000/B000/tok3n-part"
    made = await make_channel(
        client, tenant.headers, name="ops", kind="webhook", url=url, secret=SECRET
    )
    assert made["has_secret"] is True
    assert made["url_hint"] == "https://hooks.example.com/…"
    assert made["tenant_id"] == tenant.id
    path = f"alerts/{tenant.id}/{made['id']}"
    assert await vault.get(path) == {"url": url, "secret": SECRET}

    slack = await make_channel(client, tenant.headers, name="chat", kind="slack", url=url)
    pd = await make_channel(
        client, tenant.headers, name="pager", kind="pagerduty", routing_key="R0UTINGKEY0000abcd"
    )
    assert pd["routing_key_hint"] == "…abcd"
    listed = await client.get(CHANNELS, headers=tenant.headers)
    one = await client.get(f"{CHANNELS}/{made['id']}", headers=tenant.headers)
    for response in (listed, one):
        assert response.status_code == 200
        for hidden in (SECRET, "tok3n-part", "R0UTINGKEY0000abcd"):
            assert hidden not in response.text
    assert {c["id"] for c in listed.json()} == {made["id"], slack["id"], pd["id"]}

    rotated = "an0ther-s3cret-s3cret-0002"
    patched = await client.patch(
        f"{CHANNELS}/{made['id']}", json={"secret": rotated}, headers=tenant.headers
    )
    assert patched.status_code == 200 and rotated not in patched.text
    assert await vault.get(path) == {"url": url, "secret": rotated}

    gone = await client.delete(f"{CHANNELS}/{made['id']}", headers=tenant.headers)
    assert gone.status_code == 204
    assert await vault.get(path) is None
    assert (await client.get(f"{CHANNELS}/{made['id']}", headers=tenant.headers)).status_code == 404


async def test_each_kind_takes_its_own_fields(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    https = "https://hooks.example.com/x"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "webhook", "url": https}, "body.secret"),
        ({"kind": "webhook", "secret": SECRET}, "body.url"),
        ({"kind": "webhook", "url": https, "secret": "short"}, "body.secret"),
        ({"kind": "slack", "url": https, "routing_key": "R0UTINGKEY0000"}, "body.routing_key"),
        ({"kind": "pagerduty"}, "body.routing_key"),
        ({"kind": "pagerduty", "routing_key": "bad key!"}, "body.routing_key"),
        ({"kind": "email"}, "body.to"),
        ({"kind": "email", "to": ["not-an-address"]}, "body.to.0"),
        ({"kind": "email", "to": []}, "body.to"),
        ({"kind": "in_app", "url": https}, "body.url"),
        ({"kind": "sms"}, "body.kind"),
        ({"kind": "in_app", "quiet_hours": {"start": "22:00", "end": "07:00",
                                             "time_zone": "Mars/Olympus"}},
         "body.quiet_hours.time_zone"),
        ({"kind": "in_app", "quiet_hours": {"start": "25:00", "end": "07:00",
                                             "time_zone": "UTC"}}, "body.quiet_hours.start"),
        ({"kind": "in_app", "quiet_hours": {"start": "07:00", "end": "07:00",
                                             "time_zone": "UTC"}}, "body.quiet_hours"),
    ]  # fmt: skip
    for body, field in cases:
        response = await client.post(CHANNELS, json={"name": "x", **body}, headers=tenant.headers)
        assert field in field_errors(response), (body, response.text)
    assert (await client.get(CHANNELS, headers=tenant.headers)).json() == []


async def test_urls_must_be_https_and_public_at_creation(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    """The suite's default app does not set MAILFLEET_ALERT_ALLOW_PRIVATE_TARGETS."""
    tenant = await make_tenant()
    for url, words in (
        ("http://hooks.example.com/x", "https"),
        ("ftp://hooks.example.com/x", "https"),
        ("https://127.0.0.1:8200/v1/sys", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[::1]/hook", "loopback"),
        ("https://user:pw@hooks.example.com/x", "user"),
    ):
        response = await client.post(
            CHANNELS,
            json={"name": "x", "kind": "webhook", "url": url, "secret": SECRET},
            headers=tenant.headers,
        )
        assert field_errors(response) == {"body.url"}, url
        assert words in response.text, (url, response.text)


async def test_names_are_unique_per_tenant_and_quiet_hours_round_trip(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    quiet = {"start": "22:00", "end": "07:00", "time_zone": "Europe/Paris", "critical_passes": True}
    made = await make_channel(client, tenant.headers, name="feed", kind="in_app", quiet_hours=quiet)
    assert made["quiet_hours"] == quiet and made["has_secret"] is False
    again = await client.post(
        CHANNELS, json={"name": "feed", "kind": "in_app"}, headers=tenant.headers
    )
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "body.name"
    await make_channel(client, other.headers, name="feed", kind="in_app")  # another tenant's
    cleared = await client.patch(
        f"{CHANNELS}/{made['id']}", json={"quiet_hours": None}, headers=tenant.headers
    )
    assert cleared.status_code == 200 and cleared.json()["quiet_hours"] is None
    bad = await client.patch(
        f"{CHANNELS}/{made['id']}", json={"url": "https://x.example/"}, headers=tenant.headers
    )
    assert field_errors(bad) == {"body.url"}


async def test_another_tenants_channel_is_404_on_every_route(
    client: httpx.AsyncClient, make_tenant: MakeTenant, vault: Vault
) -> None:
    victim, intruder = await make_tenant(), await make_tenant()
    made = await make_channel(
        client, victim.headers, name="victim-hook", kind="webhook",
        url="https://hooks.example.com/v", secret=SECRET,
    )  # fmt: skip
    url = f"{CHANNELS}/{made['id']}"
    for method, path, body in (
        ("GET", url, None),
        ("PATCH", url, {"name": "stolen"}),
        ("DELETE", url, None),
        ("POST", f"{url}/test", None),
    ):
        response = await client.request(method, path, json=body, headers=intruder.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert "victim-hook" not in response.text
    assert (await client.get(CHANNELS, headers=intruder.headers)).json() == []
    as_victim = await client.post(
        CHANNELS,
        json={"name": "x", "kind": "in_app", "tenant_id": victim.id},
        headers=intruder.headers,
    )
    assert as_victim.status_code == 404
    still = await client.get(url, headers=victim.headers)
    assert still.json()["name"] == "victim-hook"
    assert await vault.get(f"alerts/{victim.id}/{made['id']}") is not None


async def test_admin_channels_are_fleet_wide_or_a_named_tenants(
    client: httpx.AsyncClient, make_tenant: MakeTenant, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    fleet = await make_channel(client, admin_headers, name="noc-feed", kind="in_app")
    assert fleet["tenant_id"] is None
    theirs = await make_channel(
        client, admin_headers, name="for-tenant", kind="in_app", tenant_id=tenant.id
    )
    assert theirs["tenant_id"] == tenant.id
    seen = {c["id"] for c in (await client.get(CHANNELS, headers=tenant.headers)).json()}
    assert seen == {theirs["id"]}
    hidden = await client.get(f"{CHANNELS}/{fleet['id']}", headers=tenant.headers)
    assert hidden.status_code == 404
    unknown = await client.post(
        CHANNELS,
        json={"name": "x", "kind": "in_app", "tenant_id": "019ad1c4-0000-7000-8000-00000000dead"},
        headers=admin_headers,
    )
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["field"] == "body.tenant_id"
    await client.delete(f"{CHANNELS}/{fleet['id']}", headers=admin_headers)
