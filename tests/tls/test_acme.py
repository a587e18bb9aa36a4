"""Certificates by ACME DNS-01 from a real Pebble, the challenge published through octoDNS
into a real Knot (which Pebble resolves against): issued, kept in Vault, delivered, renewed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from fastapi import FastAPI

from control_plane.db.engine import Database
from control_plane.servers.models import Server
from control_plane.tls.acme_issue import AcmeError, wait_visible
from control_plane.vault.client import Vault
from tests.conftest import MakeTenant, TenantHandle
from tests.support.knot import KnotServer, zone_text
from tests.support.pebble import Pebble


@pytest.fixture
def zone() -> str:
    """A zone of its own per test: domain names are unique across the whole database."""
    return f"mc-{uuid.uuid4().hex[:8]}.test"


@pytest.fixture
def knot_zones(zone: str) -> dict[str, str]:
    return {f"{zone}.": zone_text(f"{zone}.")}


@pytest.fixture
def acme_settings(app: FastAPI, pebble: Pebble) -> Iterator[None]:
    original = app.state.settings
    app.state.settings = original.model_copy(
        update={"acme_directory_url": pebble.directory_url, "acme_ca_file": Path(pebble.ca_bundle)}
    )
    try:
        yield
    finally:
        app.state.settings = original


async def mail_server(
    client: httpx.AsyncClient, tenant: TenantHandle, db: Database, host: str
) -> str:
    created = await client.post(
        "/api/v1/servers",
        headers=tenant.headers,
        json={"name": f"mx-{uuid.uuid4().hex[:6]}", "mail_hostname": host},
    )
    assert created.status_code == 201, created.text
    server_id = str(created.json()["id"])
    async with db.session() as session:
        server = await session.get(Server, uuid.UUID(server_id))
        assert server is not None
        server.state, server.ipv4 = "ready", "198.18.0.40"
    return server_id


async def publish_zone(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    knot: KnotServer,
    server_id: str,
    zone: str,
    mta_sts: str = "none",
    key_secret: str | None = None,
) -> str:
    domain = (
        await client.post(
            "/api/v1/domains", json={"name": zone, "server_id": server_id}, headers=tenant.headers
        )
    ).json()
    provider = (
        await client.post(
            "/api/v1/dns-providers",
            headers=tenant.headers,
            json={
                "name": f"knot-{uuid.uuid4().hex[:4]}",
                "kind": "rfc2136",
                "secret": {"key_secret": key_secret or knot.key.secret},
                "settings": {"host": knot.host, "port": knot.port, "key_name": knot.key.name},
            },
        )
    ).json()
    put = await client.put(
        f"/api/v1/domains/{domain['id']}/dns",
        json={"provider_id": provider["id"], "mta_sts_mode": mta_sts},
        headers=tenant.headers,
    )
    assert put.status_code == 200, put.text
    return str(domain["id"])


def leaf_of(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates(pem.encode())[0]


async def test_a_certificate_is_issued_stored_delivered_and_renewed(
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    db: Database,
    vault: Vault,
    knot_primary: KnotServer,
    pebble: Pebble,
    acme_settings: None,
    zone: str,
) -> None:
    tenant = await make_tenant()
    host = f"mx1.{zone}"
    server_id = await mail_server(client, tenant, db, host)
    domain_id = await publish_zone(client, tenant, knot_primary, server_id, zone, "testing")
    applied = await client.post(f"/api/v1/domains/{domain_id}/dns/apply", headers=tenant.headers)
    assert applied.status_code == 200, applied.text
    sts = knot_primary.query(f"_mta-sts.{zone}", "TXT").texts
    assert len(sts) == 1 and sts[0].startswith("v=STSv1; id=")
    assert knot_primary.query(f"mta-sts.{zone}", "A").values == ["198.18.0.40"]
    url = f"/api/v1/servers/{server_id}/tls"
    assert (await client.get(url, headers=tenant.headers)).status_code == 404

    issued = await client.post(url, headers=tenant.headers)
    assert issued.status_code == 200, issued.text
    first = issued.json()
    names = [host, f"mta-sts.{zone}"]  # the policy host needs the certificate too
    assert first["names"] == names and first["days_left"] > 30 and not first["renewing"]
    stored = await vault.get(f"vps/{tenant.id}/{server_id}/tls")
    assert stored is not None
    leaf = leaf_of(stored["cert_pem"])
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    assert format(leaf.serial_number, "x") == first["serial"]
    assert first["not_after"].startswith(leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S"))
    intermediate = x509.load_pem_x509_certificate(pebble.intermediate_pem().encode())
    leaf.verify_directly_issued_by(intermediate)  # issued by Pebble's CA, not self-made
    (issuer,) = intermediate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert first["issuer"] == issuer.value  # read from the certificate, for the console too
    # The challenge record came and went; MailFleet's other records are untouched.
    assert knot_primary.query(f"_acme-challenge.{host}", "TXT").texts == []

    commands = (
        await client.get(f"/api/v1/servers/{server_id}/commands", headers=tenant.headers)
    ).json()["items"]
    (delivery,) = [c for c in commands if c["kind"] == "mailu.certs.install"]
    (policy,) = [c for c in commands if c["kind"] == "mailu.mta_sts.set"]
    served = policy["payload"]["policies"][f"mta-sts.{zone}"]
    assert served == f"version: STSv1\r\nmode: testing\r\nmx: {host}\r\nmax_age: 604800\r\n"
    assert delivery["id"] == first["delivery_command_id"]
    assert delivery["payload"]["secrets_from"]["path"] == f"vps/{tenant.id}/{server_id}/tls"
    assert "PRIVATE KEY" not in str(delivery["payload"])

    renewal = await client.post(url, headers=tenant.headers)  # renewal, forced
    assert renewal.status_code == 200, renewal.text
    renewed = renewal.json()
    assert renewed["serial"] != first["serial"]
    again = await vault.get(f"vps/{tenant.id}/{server_id}/tls")
    assert again is not None and again["key_pem"] != stored["key_pem"]
    await vault.delete(f"vps/{tenant.id}/{server_id}/tls")


async def test_a_host_outside_every_published_zone_is_refused_clearly(
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    db: Database,
    acme_settings: None,
) -> None:
    tenant = await make_tenant()
    server_id = await mail_server(client, tenant, db, "mx1.unmanaged.test")
    refused = await client.post(f"/api/v1/servers/{server_id}/tls", headers=tenant.headers)
    assert refused.status_code == 409 and "no DNS provider" in refused.json()["detail"]
    other = await make_tenant()
    hidden = await client.post(f"/api/v1/servers/{server_id}/tls", headers=other.headers)
    assert hidden.status_code == 404


async def test_the_challenge_wait_tells_a_refusing_server_from_a_missing_record(
    knot_primary: KnotServer, zone: str
) -> None:
    with pytest.raises(AcmeError) as refused:  # Knot serves no such zone: REFUSED
        await wait_visible(knot_primary.address, "_acme-challenge.mx1.other.test", "v", 0.3)
    assert "could not be seen" in refused.value.detail and "REFUSED" in refused.value.detail
    with pytest.raises(AcmeError) as absent:  # served, and the record is not there
        await wait_visible(knot_primary.address, f"_acme-challenge.mx1.{zone}", "v", 0.3)
    assert "did not show the challenge" in absent.value.detail
