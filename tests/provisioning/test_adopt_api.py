"""Adopting a machine through the API, in-process and on both databases: what is written (the
row at ``installing_agent``, the credential in Vault and nowhere else), replacing the
credential, and the admin route that clears a host-key pin. No provisioning runner runs
here, so nothing connects anywhere; the logins over SSH are in test_ssh_adopt.py."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.engine import Database
from control_plane.provisioning.registry import ProviderRegistry, UnknownProvider
from control_plane.provisioning.service import order_server
from control_plane.provisioning.ssh import delete_server_secrets, login_path, new_key_pair
from control_plane.servers.models import Server
from control_plane.servers.schemas import ServerCreate
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from tests.conftest import MakeTenant


async def test_an_adoption_keeps_its_credential_in_vault_only(
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    admin_headers: dict[str, str],
    vault: Vault,
    db: Database,
) -> None:
    tenant = await make_tenant()
    body = {
        "name": "adopted",
        "provider": "ssh",
        "address": "::ffff:10.20.30.40",  # an IPv4-mapped address is its IPv4 address
        "ssh_password": "s3cret words",
        "mail_stack": "none",
    }
    response = await client.post("/api/v1/servers", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    server = response.json()
    server_id = uuid.UUID(server["id"])
    assert (server["state"], server["ipv4"], server["ssh_public_key"]) == (
        "installing_agent",
        "10.20.30.40",
        None,
    )
    assert "s3cret" not in response.text
    path = login_path(uuid.UUID(tenant.id), server_id)
    try:
        assert await vault.get(path) == {"password": "s3cret words"}
        offered = (await client.get("/api/v1/providers", headers=tenant.headers)).json()
        assert {"name": "ssh", "regions": [], "plans": []} in [
            {k: p[k] for k in ("name", "regions", "plans")} for p in offered
        ]

        # A key instead: kept in Vault, its public half shown; the install was not failed,
        # so nothing is retried.
        key = new_key_pair("customer")
        replaced = await client.put(
            f"/api/v1/servers/{server_id}/ssh-credential",
            json={"ssh_private_key": key.private_key},
            headers=tenant.headers,
        )
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["ssh_public_key"] == key.public_key.rsplit(" ", 1)[0]
        assert replaced.json()["state"] == "installing_agent" and "PRIVATE" not in replaced.text
        stored = await vault.get(path)
        assert stored is not None and stored["private_key"] == key.private_key

        # The pin: admin only; nothing pinned is a 409; a pin is cleared.
        pin = f"/api/v1/servers/{server_id}/ssh-host-key"
        assert (await client.delete(pin, headers=tenant.headers)).status_code == 403
        assert (await client.delete(pin, headers=admin_headers)).status_code == 409

        async def pinned(session: AsyncSession) -> None:
            row = await session.get(Server, server_id)
            assert row is not None
            row.ssh_host_key = new_key_pair("host").public_key.rsplit(" ", 1)[0]

        await db.transact(pinned)
        cleared = await client.delete(pin, headers=admin_headers)
        assert cleared.status_code == 200 and cleared.json()["ssh_host_key"] is None
    finally:
        await delete_server_secrets(vault, uuid.UUID(tenant.id), server_id)


async def test_adoption_switched_off_is_not_offered_and_an_order_is_refused(
    settings: Settings, vault: Vault, db: Database, make_tenant: MakeTenant
) -> None:
    """MAILFLEET_SSH_ADOPTION=false: no ``ssh`` provider, so nothing logs in anywhere (the
    fuzzer's serve runs so: it would otherwise adopt whatever address it made up)."""
    providers = ProviderRegistry(settings.model_copy(update={"ssh_adoption": False}), vault)
    tenant = await make_tenant()
    order = ServerCreate(
        name="adopted", provider="ssh", address="10.20.30.40", ssh_password="pw", mail_stack="none"
    )
    try:
        assert "ssh" not in await providers.names()
        async with db.session() as session:
            with pytest.raises(UnknownProvider) as refused:
                await order_server(session, providers, settings, uuid.UUID(tenant.id), order)
            assert refused.value.field == "body.provider"
            mine = select(Server).where(Server.tenant_id == uuid.UUID(tenant.id))
            assert (await session.execute(mine)).scalars().all() == []
    finally:
        await providers.aclose()
