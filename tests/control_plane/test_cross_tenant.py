"""Walks every route in the OpenAPI document, so new routes are covered without anyone remembering.

- every secured route refuses a request without a key (401);
- every admin-only route refuses a tenant key (403);
- every tenant route, given another tenant's ids, answers 404 and shows nothing of theirs;
- every tenant list shows none of another tenant's objects; every create naming another
  tenant answers 404.

A new path parameter needs an entry in ``objects_of`` below, and a new request body an
example in its schema: the walk fails until they exist.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI

from control_plane.api.context import ADMIN_SCOPE_EXTENSION
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.resize.models import ServerResize
from tests.alerts.helpers import walk_objects as alert_objects
from tests.conftest import MakeTenant, TenantHandle
from tests.dnsbl.helpers import walk_objects as dnsbl_objects
from tests.incidents.helpers import walk_objects
from tests.ips.addresses import fresh_addresses

Operation = tuple[str, str, dict[str, Any]]


def operations(app: FastAPI) -> Iterator[Operation]:
    for path, methods in app.openapi()["paths"].items():
        for method, spec in methods.items():
            yield method.upper(), path, spec


def secured(spec: dict[str, Any]) -> bool:
    return bool(spec.get("security"))


def example_body(app: FastAPI, spec: dict[str, Any]) -> Any:
    if "requestBody" not in spec:
        return None
    ref = spec["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = app.openapi()["components"]["schemas"][ref.rsplit("/", 1)[1]]
    examples = schema.get("examples")
    assert examples, f"schema {ref} needs an example for the tenancy walk"
    return dict(examples[0])


async def a_finished_resize(db: Database, tenant_id: str, server_id: str) -> str:
    """A failed resize of the victim's server, written as the workflow leaves one (a real
    resize needs a provider that resizes; the resize tests run those)."""
    async with db.session() as session:
        resize = ServerResize(
            tenant_id=uuid.UUID(tenant_id),
            server_id=uuid.UUID(server_id),
            provider="manual",
            from_plan="victim-small",
            to_plan="victim-large",
            from_price=Decimal("5.00"),
            to_price=Decimal("10.00"),
            currency="USD",
            to_vcpus=2,
            to_memory_mb=2048,
            state="failed",
            error="victim's resize",
            finished_at=utcnow(),
        )
        session.add(resize)
        await session.flush()
        return str(resize.id)


async def objects_of(
    client: httpx.AsyncClient, tenant: TenantHandle, db: Database
) -> dict[str, str]:
    """One object of each kind owned by ``tenant``, keyed by path parameter name."""
    ws = await client.post("/api/v1/workspaces", json={"name": "victim"}, headers=tenant.headers)
    assert ws.status_code == 201
    server = await client.post(
        "/api/v1/servers",
        json={"name": "victim", "provider": "manual", "mail_stack": "none"},
        headers=tenant.headers,
    )
    assert server.status_code == 201
    command = await client.post(
        f"/api/v1/servers/{server.json()['id']}/commands",
        json={"kind": "ping", "payload": {"echo": "victim"}},
        headers=tenant.headers,
    )
    assert command.status_code == 201
    policy = await client.put(
        f"/api/v1/servers/{server.json()['id']}/backup-policy",
        json={"repository_url": "/srv/restic/victim"},
        headers=tenant.headers,
    )
    assert policy.status_code == 200, policy.text
    mail_server = await client.post(
        "/api/v1/servers",
        json={"name": "victim-mail", "provider": "manual", "mail_hostname": "mx.victim.example"},
        headers=tenant.headers,
    )
    assert mail_server.status_code == 201, mail_server.text
    domain = await client.post(
        "/api/v1/domains",
        json={"name": f"victim-{tenant.id[-12:]}.example", "server_id": mail_server.json()["id"]},
        headers=tenant.headers,
    )
    assert domain.status_code == 201, domain.text
    mailbox = await client.post(
        f"/api/v1/domains/{domain.json()['id']}/mailboxes",
        json={"local_part": "victim"},
        headers=tenant.headers,
    )
    assert mailbox.status_code == 201, mailbox.text
    alias = await client.post(
        f"/api/v1/domains/{domain.json()['id']}/aliases",
        json={"local_part": "info", "destinations": [mailbox.json()["address"]]},
        headers=tenant.headers,
    )
    assert alias.status_code == 201, alias.text
    provider = await client.post(
        "/api/v1/dns-providers",
        json={"name": "victim-dns", "kind": "rfc2136", "secret": {"key_secret": "c2VjcmV0"},
              "settings": {"host": "127.0.0.1", "port": 53, "key_name": "victim"}},
        headers=tenant.headers,
    )  # fmt: skip
    assert provider.status_code == 201, provider.text
    ip = await client.post(
        f"/api/v1/servers/{server.json()['id']}/ips",
        json={"address": fresh_addresses(1)[0]},
        headers=tenant.headers,
    )
    assert ip.status_code == 201, ip.text
    standby = await client.post(
        f"/api/v1/servers/{server.json()['id']}/ips",
        json={"address": fresh_addresses(1)[0]},
        headers=tenant.headers,
    )
    assert standby.status_code == 201, standby.text
    switch = await client.post(
        f"/api/v1/servers/{server.json()['id']}/ip-switches",
        json={"to_ip": standby.json()["address"]},
        headers=tenant.headers,
    )
    assert switch.status_code == 202, switch.text
    incidents = await walk_objects(client, tenant.id, tenant.headers, server.json()["id"])
    alerts = await alert_objects(client, tenant.headers)
    delisting = await dnsbl_objects(client, tenant.headers, ip.json()["address"])
    budget = await client.post(
        "/api/v1/budgets",
        json={"workspace_id": ws.json()["id"], "amount": "100.00", "currency": "USD"},
        headers=tenant.headers,
    )
    assert budget.status_code == 201, budget.text
    audit = await client.get("/api/v1/audit-events", headers=tenant.headers)
    assert audit.status_code == 200 and audit.json()["items"], audit.text
    return {
        "tenant_id": tenant.id,
        "workspace_id": ws.json()["id"],
        "api_key_id": tenant.key_id,
        "server_id": server.json()["id"],
        "command_id": command.json()["id"],
        "domain_id": domain.json()["id"],
        "mailbox_id": mailbox.json()["id"],
        "alias_id": alias.json()["id"],
        "provider_id": provider.json()["id"],
        "audit_event_id": audit.json()["items"][0]["id"],
        "ip": ip.json()["address"],
        "switch_id": switch.json()["id"],
        "resize_id": await a_finished_resize(db, tenant.id, server.json()["id"]),
        "budget_id": budget.json()["id"],
        "invoice_id": str(uuid.uuid4()),  # admin-only routes: refused before any lookup
        **alerts,
        **incidents,
        **delisting,
    }


def fill(path: str, ids: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in ids, f"add an object for path parameter {{{name}}} to objects_of()"
        return ids[name]

    return re.sub(r"\{(\w+)\}", one, path)


async def test_every_secured_route_needs_a_key(client: httpx.AsyncClient, app: FastAPI) -> None:
    checked = 0
    for method, path, spec in operations(app):
        if not secured(spec):
            continue
        url = re.sub(r"\{\w+\}", "01a20000-0000-7000-8000-000000000000", path)
        response = await client.request(method, url, json=example_body(app, spec))
        assert response.status_code == 401, (method, path, response.text)
        checked += 1
    assert checked >= 10


async def test_admin_routes_refuse_tenant_keys(
    client: httpx.AsyncClient, app: FastAPI, make_tenant: MakeTenant, db: Database
) -> None:
    tenant = await make_tenant()
    ids = await objects_of(client, tenant, db)
    admin_routes = [op for op in operations(app) if op[2].get(ADMIN_SCOPE_EXTENSION) == "admin"]
    assert admin_routes, "expected some admin-only routes"
    for method, path, spec in admin_routes:
        response = await client.request(
            method, fill(path, ids), json=example_body(app, spec), headers=tenant.headers
        )
        assert response.status_code == 403, (method, path, response.text)


async def test_another_tenants_objects_are_404_everywhere(
    client: httpx.AsyncClient, app: FastAPI, make_tenant: MakeTenant, db: Database
) -> None:
    victim, intruder = await make_tenant(), await make_tenant()
    ids = await objects_of(client, victim, db)
    probed = 0
    for method, path, spec in operations(app):
        if not secured(spec) or spec.get(ADMIN_SCOPE_EXTENSION) == "admin" or "{" not in path:
            continue
        response = await client.request(
            method, fill(path, ids), json=example_body(app, spec), headers=intruder.headers
        )
        assert response.status_code == 404, (method, path, response.text)
        assert "victim" not in response.text and victim.name not in response.text, (method, path)
        probed += 1
    assert probed >= 6
    # and nothing was changed or removed by the attempts
    survivor = await client.get(f"/api/v1/workspaces/{ids['workspace_id']}", headers=victim.headers)
    assert survivor.json()["name"] == "victim"
    server = await client.get(f"/api/v1/servers/{ids['server_id']}", headers=victim.headers)
    assert server.json()["status"] == "pending", "revoke-agent by another tenant changed nothing"
    command = await client.get(
        f"/api/v1/servers/{ids['server_id']}/commands/{ids['command_id']}", headers=victim.headers
    )
    assert command.json()["state"] == "queued", "cancel by another tenant changed nothing"
    assert (await client.get("/api/v1/workspaces", headers=victim.headers)).status_code == 200


async def test_lists_and_creates_never_cross_tenants(
    client: httpx.AsyncClient, app: FastAPI, make_tenant: MakeTenant, db: Database
) -> None:
    victim, intruder = await make_tenant(), await make_tenant()
    ids = await objects_of(client, victim, db)
    for method, path, spec in operations(app):
        if not secured(spec) or spec.get(ADMIN_SCOPE_EXTENSION) == "admin" or "{" in path:
            continue
        if method == "GET":
            names = {p["name"] for p in spec.get("parameters", [])}
            params = {"tenant_id": victim.id} if "tenant_id" in names else {}
            response = await client.get(path, params=params, headers=intruder.headers)
            assert response.status_code == 200, (path, response.text)
            for ident in ids.values():
                assert ident not in response.text, (path, "leaks another tenant's object")
        elif method == "POST":
            body = example_body(app, spec)
            schema_ref = spec["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            props = app.openapi()["components"]["schemas"][schema_ref.rsplit("/", 1)[1]][
                "properties"
            ]
            if "tenant_id" not in props:
                continue
            response = await client.post(
                path, json={**body, "tenant_id": victim.id}, headers=intruder.headers
            )
            assert response.status_code == 404, (path, response.text)
    # nor may the intruder put a domain of its own in the victim's workspace
    mine = await client.post(
        "/api/v1/servers",
        json={"name": "intruder-mail", "provider": "manual",
              "mail_hostname": f"mx.i{intruder.id[-12:]}.example"},
        headers=intruder.headers,
    )  # fmt: skip
    assert mine.status_code == 201, mine.text
    domain = await client.post(
        "/api/v1/domains",
        json={"name": f"intruder-{intruder.id[-12:]}.example", "server_id": mine.json()["id"],
              "workspace_id": ids["workspace_id"]},
        headers=intruder.headers,
    )  # fmt: skip
    assert domain.status_code == 404 and "body.workspace_id" in domain.text, domain.text
