from __future__ import annotations

import time

import httpx

from control_plane.api.app import create_app
from control_plane.gateway.hub import AgentHub
from control_plane.settings import Settings
from tests.conftest import MakeTenant


async def test_long_poll_returns_when_the_wait_is_over(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    server = (
        await client.post(
            "/api/v1/servers", json={"name": "lp", "mail_stack": "none"}, headers=tenant.headers
        )
    ).json()
    command = (
        await client.post(
            f"/api/v1/servers/{server['id']}/commands",
            json={"kind": "ping"},
            headers=tenant.headers,
        )
    ).json()
    started = time.monotonic()
    polled = await client.get(
        f"/api/v1/servers/{server['id']}/commands/{command['id']}",
        params={"wait_seconds": "0.6"},
        headers=tenant.headers,
    )
    assert polled.json()["state"] == "queued"  # nobody to run it: it waits
    assert 0.6 <= time.monotonic() - started < 3
    too_long = await client.get(
        f"/api/v1/servers/{server['id']}/commands/{command['id']}",
        params={"wait_seconds": "61"},
        headers=tenant.headers,
    )
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "query.wait_seconds"


async def test_cancelling_a_queued_command_is_immediate_and_final(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    server = (
        await client.post(
            "/api/v1/servers", json={"name": "c", "mail_stack": "none"}, headers=tenant.headers
        )
    ).json()
    base = f"/api/v1/servers/{server['id']}/commands"
    command = (
        await client.post(base, json={"kind": "collect-facts"}, headers=tenant.headers)
    ).json()
    cancelled = await client.post(f"{base}/{command['id']}/cancel", headers=tenant.headers)
    assert cancelled.json()["state"] == "cancelled"
    again = await client.post(f"{base}/{command['id']}/cancel", headers=tenant.headers)
    assert again.status_code == 409
    listed = await client.get(base, params={"state": "cancelled"}, headers=tenant.headers)
    assert [c["id"] for c in listed.json()["items"]] == [command["id"]]


def test_the_app_uses_the_hub_it_is_given_even_when_empty(settings: Settings) -> None:
    hub = AgentHub()
    assert len(hub) == 0
    assert create_app(settings, hub=hub).state.hub is hub
