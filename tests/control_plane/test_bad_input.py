"""Bad input gets a 4xx problem naming the field, and leaves state as it was."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import MakeTenant


async def test_malformed_json_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/tenants",
        content=b'{"name": "unterminated',
        headers={**admin_headers, "content-type": "application/json"},
    )
    assert response.status_code == 400
    problem = response.json()
    assert problem["title"] == "Malformed request"
    assert "JSON" in problem["detail"]


async def test_a_form_body_is_told_to_come_as_json(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    # what `curl -d '{"name":"Acme"}'` sends without a content type of its own
    response = await client.post(
        "/api/v1/tenants",
        content=b'{"name":"Acme"}',
        headers={**admin_headers, "content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422
    problem = response.json()
    assert "send the body as JSON with Content-Type: application/json" in problem["detail"]
    assert "application/x-www-form-urlencoded" in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == ["body"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 12}, "body.name"),
        ({"name": ""}, "body.name"),
        ({"name": "x" * 201}, "body.name"),
        ({"name": "bad\x00name"}, "body.name"),
        ({"name": "ok", "colour": "red"}, "body.colour"),
        ({}, "body.name"),
        ([], "body"),
    ],
)
async def test_invalid_tenant_bodies_name_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: object, field: str
) -> None:
    response = await client.post("/api/v1/tenants", json=body, headers=admin_headers)
    assert response.status_code == 422
    problem = response.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]]
    assert field in problem["detail"]


async def test_bad_ids_and_query_values(client: httpx.AsyncClient, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant()
    not_uuid = await client.get("/api/v1/workspaces/not-a-uuid", headers=tenant.headers)
    assert not_uuid.status_code == 422
    assert not_uuid.json()["errors"][0]["field"] == "path.workspace_id"
    unknown = await client.get(f"/api/v1/workspaces/{uuid.uuid4()}", headers=tenant.headers)
    assert unknown.status_code == 404
    too_big = await client.get(
        "/api/v1/workspaces", params={"limit": "501"}, headers=tenant.headers
    )
    assert too_big.status_code == 422
    assert too_big.json()["errors"][0]["field"] == "query.limit"


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await client.put("/healthz")
    assert wrong.status_code == 405


async def test_workspace_for_unknown_tenant_is_404_and_nothing_is_written(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    ghost = str(uuid.uuid4())
    response = await client.post(
        "/api/v1/workspaces", json={"name": "w", "tenant_id": ghost}, headers=admin_headers
    )
    assert response.status_code == 404
    assert response.json()["errors"][0]["field"] == "body.tenant_id"
    listed = await client.get(
        "/api/v1/workspaces", params={"tenant_id": ghost}, headers=admin_headers
    )
    assert listed.json()["items"] == []
