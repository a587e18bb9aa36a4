"""Mail domains and mailboxes through the API: rows, Vault credentials and the agent commands
that carry the change to MailU (the agent side is tested in tests/agent/test_mailu_*)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from control_plane.commands import secrets
from control_plane.commands import service as commands
from control_plane.db.engine import Database
from control_plane.mail import dkim
from control_plane.servers.models import Server
from control_plane.vault.client import Vault
from tests.conftest import MakeTenant, TenantHandle


async def mail_server(client: httpx.AsyncClient, tenant: TenantHandle, stack: str = "mailu") -> str:
    body: dict[str, Any] = {"name": f"mx-{uuid.uuid4().hex[:6]}", "mail_stack": stack}
    if stack == "mailu":
        body["mail_hostname"] = "mx1.example.org"
    response = await client.post("/api/v1/servers", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def unique_domain(label: str = "shop") -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}.example"


async def queued(
    client: httpx.AsyncClient, tenant: TenantHandle, server_id: str, kind: str | None = None
) -> list[Any]:
    response = await client.get(f"/api/v1/servers/{server_id}/commands", headers=tenant.headers)
    return [c for c in response.json()["items"] if kind is None or c["kind"] == kind]


async def test_a_domain_is_stored_in_idna_form_and_sent_to_the_agent(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault
) -> None:
    tenant = await make_tenant()
    server_id = await mail_server(client, tenant)
    label = f"bücher{uuid.uuid4().hex[:6]}"
    response = await client.post(
        "/api/v1/domains", json={"name": f"{label}.Example", "server_id": server_id},
        headers=tenant.headers,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    domain = response.json()
    assert domain["name"].startswith("xn--") and domain["state"] == "pending"
    selector = domain["dkim_selector"]
    assert re.fullmatch(r"mf\d{6}", selector)
    key = await vault.get(f"dkim/{domain['name']}/{selector}")
    assert key is not None and domain["dkim_records"] == [
        {
            "selector": selector,
            "role": "signing",
            "name": f"{selector}._domainkey.{domain['name']}",
            "value": f"v=DKIM1; k=rsa; p={key['public_key']}",
        }
    ]
    private = serialization.load_pem_private_key(key["private_key"].encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    (command,) = await queued(client, tenant, server_id, "mailu.domain.ensure")
    assert command["payload"]["domain"] == domain["name"]
    assert command["payload"]["secrets_from"]["path"] == f"dkim/{domain['name']}/{selector}"
    assert "PRIVATE KEY" not in json.dumps(command["payload"])

    async with db.session() as session:  # the agent reports back
        await commands.record_result(
            session, uuid.UUID(server_id), uuid.UUID(command["id"]), "failed", None, "Mailu said no"
        )
    failed = (await client.get(f"/api/v1/domains/{domain['id']}", headers=tenant.headers)).json()
    assert (failed["state"], failed["error"]) == ("failed", "Mailu said no")
    gone = await client.delete(f"/api/v1/domains/{domain['id']}", headers=tenant.headers)
    assert gone.status_code == 204
    assert await vault.get(f"dkim/{domain['name']}/{selector}") is None


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "not a domain!"}, 422, "body.name"),
        ({"name": "localhost"}, 422, "body.name"),
        ({"server_id": "none-stack"}, 409, "body.server_id"),
        ({"server_id": "other-tenant"}, 404, "body.server_id"),
        ({"name": "taken"}, 409, "body.name"),
    ],
)
async def test_bad_domains_are_refused_naming_the_field(
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    body: dict[str, str],
    status: int,
    field: str,
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    servers = {
        "none-stack": await mail_server(client, tenant, "none"),
        "other-tenant": await mail_server(client, other),
    }
    server_id = await mail_server(client, tenant)
    taken = unique_domain("taken")
    first = await client.post(
        "/api/v1/domains", json={"name": taken, "server_id": await mail_server(client, other)},
        headers=other.headers,
    )  # fmt: skip
    assert first.status_code == 201
    request = {"name": unique_domain(), "server_id": server_id}
    request.update({k: servers.get(v, v) for k, v in body.items()})
    if request["name"] == "taken":
        request["name"] = taken
    response = await client.post("/api/v1/domains", json=request, headers=tenant.headers)
    assert response.status_code == status, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_mailbox_credentials_live_in_vault_are_shown_once_and_rotate(
    client: httpx.AsyncClient, make_tenant: MakeTenant, vault: Vault
) -> None:
    tenant = await make_tenant()
    server_id = await mail_server(client, tenant)
    domain = (
        await client.post(
            "/api/v1/domains", json={"name": unique_domain(), "server_id": server_id},
            headers=tenant.headers,
        )
    ).json()  # fmt: skip
    base = f"/api/v1/domains/{domain['id']}/mailboxes"
    created = await client.post(
        base, json={"local_part": "Sales", "quota_bytes": 2 * 1024**3}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    mailbox = created.json()
    assert mailbox["address"] == f"sales@{domain['name']}" and mailbox["state"] == "pending"
    stored = await vault.get(f"smtp/{tenant.id}/{mailbox['id']}")
    assert stored is not None and len(stored["password"]) >= 20
    ensure = [
        c for c in await queued(client, tenant, server_id) if c["kind"] == "mailu.mailbox.ensure"
    ]
    assert stored["password"] not in json.dumps(ensure)  # the database holds a reference only
    assert ensure[0]["payload"]["secrets_from"]["path"] == f"smtp/{tenant.id}/{mailbox['id']}"

    item = f"{base}/{mailbox['id']}"
    taken = await client.post(f"{item}/credentials", headers=tenant.headers)
    assert taken.status_code == 201
    assert taken.json()["password"] == stored["password"]
    assert taken.json()["smtp_host"] == "mx1.example.org"
    assert (await client.post(f"{item}/credentials", headers=tenant.headers)).status_code == 409

    rotated = await client.post(f"{item}/credentials/rotate", headers=tenant.headers)
    assert rotated.status_code == 200 and rotated.json()["credentials_taken"] is False
    fresh = await client.post(f"{item}/credentials", headers=tenant.headers)
    assert fresh.json()["password"] != stored["password"]
    assert await vault.get(f"smtp/{tenant.id}/{mailbox['id']}") == {
        "username": mailbox["address"],
        "password": fresh.json()["password"],
    }

    duplicate = await client.post(base, json={"local_part": "sales"}, headers=tenant.headers)
    assert (
        duplicate.status_code == 409 and duplicate.json()["errors"][0]["field"] == "body.local_part"
    )
    for bad, field in (
        ({"local_part": "sales", "quota_bytes": -1}, "body.quota_bytes"),
        ({"local_part": "a b"}, "body.local_part"),
        ({"local_part": "x", "password": "short"}, "body.password"),
    ):
        response = await client.post(base, json=bad, headers=tenant.headers)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == field

    patched = await client.patch(item, json={"enabled": False}, headers=tenant.headers)
    assert patched.json()["enabled"] is False and patched.json()["state"] == "pending"
    assert (await client.delete(item, headers=tenant.headers)).status_code == 204
    assert await vault.get(f"smtp/{tenant.id}/{mailbox['id']}") is None
    kinds = [c["kind"] for c in await queued(client, tenant, server_id)]
    assert kinds.count("mailu.mailbox.ensure") == 3 and "mailu.mailbox.delete" in kinds


async def test_secret_references_resolve_only_within_the_servers_tenant(vault: Vault) -> None:
    tenant, server, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await vault.put(f"smtp/{tenant}/box", {"username": "a@b.example", "password": "pw-123456789"})
    payload = json.dumps(
        {"email": "a@b.example", "secrets_from": {"path": f"smtp/{tenant}/box",
                                                  "fields": {"password": "raw_password"}}}
    )  # fmt: skip
    resolved = json.loads(await secrets.resolve(vault, server, tenant, payload))
    assert resolved == {"email": "a@b.example", "raw_password": "pw-123456789"}
    with pytest.raises(secrets.SecretUnavailable, match="outside"):
        await secrets.resolve(vault, server, other, payload)
    dkim_ref = json.dumps({"secrets_from": "dkim/shop.example/mf202611"})
    await vault.put("dkim/shop.example/mf202611", {"private_key": "k"})

    async def owner(name: str) -> bool:
        return name == "shop.example"

    async def stranger(name: str) -> bool:
        return False

    resolved_key = json.loads(await secrets.resolve(vault, server, tenant, dkim_ref, owner))
    assert resolved_key == {"private_key": "k"}
    with pytest.raises(secrets.SecretUnavailable, match="outside"):
        await secrets.resolve(vault, server, tenant, dkim_ref, stranger)
    await vault.delete("dkim/shop.example/mf202611")
    missing = json.dumps({"secrets_from": f"vps/{tenant}/{server}/gone"})
    with pytest.raises(secrets.SecretUnavailable, match="no secret"):
        await secrets.resolve(vault, server, tenant, missing)
    await vault.delete(f"smtp/{tenant}/box")


async def ready_mail_server(client: httpx.AsyncClient, tenant: TenantHandle, db: Database) -> str:
    """A MailU server as the workflow leaves it once installed."""
    server_id = await mail_server(client, tenant)
    async with db.session() as session:
        server = await session.get(Server, uuid.UUID(server_id))
        assert server is not None
        server.state, server.ipv4 = "ready", "198.18.0.10"
    return server_id


async def add_domain(client: httpx.AsyncClient, tenant: TenantHandle, server_id: str) -> Any:
    response = await client.post(
        "/api/v1/domains", json={"name": unique_domain(), "server_id": server_id},
        headers=tenant.headers,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


async def test_dkim_rotation_publishes_both_selectors_switches_then_retires(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault
) -> None:
    tenant = await make_tenant()
    server_id = await ready_mail_server(client, tenant, db)
    domain = await add_domain(client, tenant, server_id)
    old = domain["dkim_selector"]
    rotate = f"/api/v1/servers/{server_id}/mail/dkim/rotate"
    same = await client.post(rotate, json={"selector": old}, headers=tenant.headers)
    assert same.status_code == 409 and same.json()["errors"][0]["field"] == "body.selector"

    body = {"selector": "mfnext", "publish_lead_seconds": 0, "overlap_seconds": 0}
    started = await client.post(rotate, json=body, headers=tenant.headers)
    assert started.status_code == 202, started.text
    assert (started.json()["signing"], started.json()["next"]) == (old, "mfnext")
    again = await client.post(rotate, json={}, headers=tenant.headers)
    assert again.status_code == 409 and "in progress" in again.json()["detail"]

    async def records() -> list[tuple[str, str]]:
        out = (await client.get(f"/api/v1/domains/{domain['id']}", headers=tenant.headers)).json()
        return [(r["selector"], r["role"]) for r in out["dkim_records"]]

    # Phase 1: both published, MailU still signs with the old selector.
    assert await records() == [(old, "signing"), ("mfnext", "next")]
    new_key = await vault.get(f"dkim/{domain['name']}/mfnext")
    assert new_key is not None
    ensure = await queued(client, tenant, server_id, "mailu.domain.ensure")
    assert ensure[-1]["payload"]["dkim_selector"] == "mfnext"
    assert await queued(client, tenant, server_id, "mailu.install") == []
    # A domain added mid-rotation gets keys for both selectors.
    late = await add_domain(client, tenant, server_id)
    assert [r["selector"] for r in late["dkim_records"]] == [old, "mfnext"]

    # Phase 2: MailU is re-rendered with the new selector; the old one stays published.
    async with db.session() as session:
        assert await dkim.advance_rotations(session, vault) == 1
    assert await records() == [("mfnext", "signing"), (old, "retiring")]
    (install,) = await queued(client, tenant, server_id, "mailu.install")
    assert install["payload"]["dkim_selector"] == "mfnext"
    assert install["payload"]["secrets_from"] == f"vps/{tenant.id}/{server_id}/mailu"

    # Phase 3: the old keys leave Vault, MailU and the published records.
    async with db.session() as session:
        assert await dkim.advance_rotations(session, vault) == 1
        assert await dkim.advance_rotations(session, vault) == 0
    assert await records() == [("mfnext", "signing")]
    assert await vault.get(f"dkim/{domain['name']}/{old}") is None
    (remove,) = await queued(client, tenant, server_id, "mailu.dkim.remove")
    assert remove["payload"]["selector"] == old
    assert sorted(remove["payload"]["domains"]) == sorted([domain["name"], late["name"]])
    state = (await client.get(f"/api/v1/servers/{server_id}/mail", headers=tenant.headers)).json()
    assert state["dkim"] == {
        "signing": "mfnext", "next": None, "switch_at": None, "retiring": None, "retire_at": None
    }  # fmt: skip
    for d in (domain, late):
        await client.delete(f"/api/v1/domains/{d['id']}", headers=tenant.headers)


async def test_mailu_secrets_rotate_in_vault_and_status_is_asked_of_the_agent(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault
) -> None:
    tenant = await make_tenant()
    not_ready = await mail_server(client, tenant)
    base = f"/api/v1/servers/{not_ready}/mail"
    refused = await client.post(f"{base}/secrets/rotate", json={}, headers=tenant.headers)
    assert refused.status_code == 409 and "not installed" in refused.json()["detail"]

    server_id = await ready_mail_server(client, tenant, db)
    base = f"/api/v1/servers/{server_id}/mail"
    path = f"vps/{tenant.id}/{server_id}/mailu"
    rotated = await client.post(
        f"{base}/secrets/rotate", json={"secrets": ["api_token"]}, headers=tenant.headers
    )
    assert rotated.status_code == 202, rotated.text
    first = await vault.get(path)
    assert first is not None and rotated.json()["kind"] == "mailu.install"
    assert first["api_token"] not in json.dumps(rotated.json())
    await client.post(f"{base}/secrets/rotate", json={"secrets": ["api_token"]},
                      headers=tenant.headers)  # fmt: skip
    second = await vault.get(path)
    assert second is not None and second["api_token"] != first["api_token"]
    assert {k: v for k, v in second.items() if k != "api_token"} == {
        k: v for k, v in first.items() if k != "api_token"
    }
    bad = await client.post(f"{base}/secrets/rotate", json={"secrets": ["root_password"]},
                            headers=tenant.headers)  # fmt: skip
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith("body.secrets")

    assert (await client.get(base, headers=tenant.headers)).json()["status"] is None
    asked = await client.post(f"{base}/status", headers=tenant.headers)
    assert asked.status_code == 202 and asked.json()["kind"] == "mailu.status"
    report = {"services": [{"name": "smtp", "state": "running", "health": "healthy"}],
              "queue_size": 3}  # fmt: skip
    async with db.session() as session:
        await commands.record_result(
            session, uuid.UUID(server_id), uuid.UUID(asked.json()["id"]), "succeeded",
            json.dumps(report), None,
        )  # fmt: skip
    shown = (await client.get(base, headers=tenant.headers)).json()
    assert shown["status"] == report and shown["status_at"] is not None
    await vault.delete(path)


async def test_aliases_deliver_to_mailboxes_of_the_same_server(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    server_id = await mail_server(client, tenant)
    domain = await add_domain(client, tenant, server_id)
    elsewhere = await add_domain(client, tenant, await mail_server(client, tenant))
    boxes = f"/api/v1/domains/{domain['id']}/mailboxes"
    sales = (await client.post(boxes, json={"local_part": "sales"}, headers=tenant.headers)).json()
    far = (
        await client.post(f"/api/v1/domains/{elsewhere['id']}/mailboxes",
                          json={"local_part": "far"}, headers=tenant.headers)
    ).json()  # fmt: skip
    base = f"/api/v1/domains/{domain['id']}/aliases"
    for body, status, field in (
        ({"local_part": "info", "destinations": [far["address"]]}, 422, "body.destinations[0]"),
        ({"local_part": "info", "destinations": ["not-an-address"]}, 422, "body.destinations[0]"),
        ({"local_part": "info", "destinations": []}, 422, "body.destinations"),
        ({"local_part": "sales", "destinations": [sales["address"]]}, 422, "body.local_part"),
    ):
        response = await client.post(base, json=body, headers=tenant.headers)
        assert response.status_code == status, response.text
        assert response.json()["errors"][0]["field"] == field
    created = await client.post(
        base, json={"local_part": "Info", "destinations": [sales["address"].upper()]},
        headers=tenant.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    alias = created.json()
    assert alias["address"] == f"info@{domain['name']}"
    assert alias["destinations"] == [sales["address"]] and alias["state"] == "pending"
    duplicate = await client.post(base, json={"local_part": "info", "destinations": [
        sales["address"]]}, headers=tenant.headers)  # fmt: skip
    assert duplicate.status_code == 409
    (ensure,) = await queued(client, tenant, server_id, "mailu.alias.ensure")
    assert ensure["payload"] == {"email": alias["address"], "destination": [sales["address"]],
                                 "comment": ""}  # fmt: skip

    busy = await client.delete(f"{boxes}/{sales['id']}", headers=tenant.headers)
    assert busy.status_code == 409 and alias["address"] in busy.json()["detail"]
    item = f"{base}/{alias['id']}"
    patched = await client.patch(item, json={"comment": "web form"}, headers=tenant.headers)
    assert patched.json()["comment"] == "web form"
    assert (await client.delete(item, headers=tenant.headers)).status_code == 204
    assert (
        await client.delete(f"{boxes}/{sales['id']}", headers=tenant.headers)
    ).status_code == 204
    kinds = [c["kind"] for c in await queued(client, tenant, server_id)]
    assert kinds.count("mailu.alias.ensure") == 2 and "mailu.alias.delete" in kinds
