"""``mailu.certs.install`` and ``mailu.mta_sts.set`` on a real install (real engine,
stand-in images): the key pair lands where MailU's front reads it (key 0600), and the front
container is restarted only on a change."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.errors import CommandError
from agent.mailu.certs import install as install_certs
from tests.agent.conftest import InstalledMailu


def key_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx1.example.net")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM).decode(), pem


def front_started(vps: InstalledMailu) -> str:
    """When the front container last started (a restart changes it)."""
    docker = vps.engine.engine.docker
    front = docker("ps", "-q", "--filter", "label=com.docker.compose.service=front").stdout.split()[
        0
    ]
    return docker("inspect", "--format", "{{.State.StartedAt}}", front).stdout.strip()


async def test_certificates_are_installed_once_and_the_front_restarted(
    mailu_installed: InstalledMailu,
) -> None:
    vps = mailu_installed
    started = front_started(vps)
    cert, key = key_pair()
    first = await vps.call(install_certs, {"cert_pem": cert, "key_pem": key})
    assert first["changed"] is True and first["restarted_front"] is True
    certs = vps.root / "mailu" / "certs"
    assert (certs / "cert.pem").read_text() == cert
    assert (certs / "key.pem").stat().st_mode & 0o777 == 0o600
    restarted = front_started(vps)
    assert restarted != started
    again = await vps.call(install_certs, {"cert_pem": cert, "key_pem": key})
    assert again["changed"] is False and front_started(vps) == restarted

    other_cert, _ = key_pair()
    with pytest.raises(CommandError, match="does not belong"):
        await vps.call(install_certs, {"cert_pem": other_cert, "key_pem": key})
    with pytest.raises(CommandError, match="not delivered"):
        await vps.call(install_certs, {})
    assert (certs / "cert.pem").read_text() == cert  # a bad delivery changes nothing


async def test_mta_sts_policies_are_served_by_the_front_by_host(
    mailu_installed: InstalledMailu,
) -> None:
    from agent.mailu.mta_sts import FILE, set_policies

    vps = mailu_installed
    policy = "version: STSv1\r\nmode: testing\r\nmx: mx1.example.net\r\nmax_age: 604800\r\n"
    body = {"policies": {"mta-sts.example.net": policy}}
    started = front_started(vps)
    first = await vps.call(set_policies, body)
    assert first == {"hosts": ["mta-sts.example.net"], "changed": True, "restarted_front": True}
    assert front_started(vps) != started
    conf = (vps.root / "mailu" / FILE).read_text()
    assert 'if ($host = "mta-sts.example.net")' in conf
    assert "mode: testing\\r\\nmx: mx1.example.net" in conf and conf.count("{") == 2
    assert (await vps.call(set_policies, body))["changed"] is False
    with pytest.raises(CommandError, match="not an RFC 8461 policy"):
        await vps.call(set_policies, {"policies": {"mta-sts.example.net": 'x"; return 500'}})
    with pytest.raises(CommandError, match="not an mta-sts"):
        await vps.call(set_policies, {"policies": {"evil.example.net": policy}})
    assert (await vps.call(set_policies, {"policies": {}}))["changed"] is True
    assert not (vps.root / "mailu" / FILE).exists()
