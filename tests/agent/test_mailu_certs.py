"""``mailu.certs.install`` after a real install against the docker double: the key pair
lands where MailU's front reads it (key 0600), the front restarts only on a change."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.errors import CommandError
from agent.mailu.certs import install as install_certs
from agent.mailu.install import install
from tests.agent.test_mailu_install import PAYLOAD as REAL_PAYLOAD
from tests.fakes import docker_cli
from tests.fakes.docker_cli import OnPath as Docker
from tests.fakes.docker_cli import payload_for_double

PAYLOAD = payload_for_double(REAL_PAYLOAD)  # still on the docker double


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


def quiet(percent: int, message: str) -> None:
    pass


async def test_certificates_are_installed_once_and_the_front_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker = Docker(tmp_path, monkeypatch)
    root = tmp_path / "vps"
    try:
        await install(root, PAYLOAD, quiet)
        cert, key = key_pair()
        first = await install_certs(root, {"cert_pem": cert, "key_pem": key}, quiet)
        assert first["changed"] is True and first["restarted_front"] is True
        certs = root / "mailu" / "certs"
        assert (certs / "cert.pem").read_text() == cert
        assert (certs / "key.pem").stat().st_mode & 0o777 == 0o600
        assert docker.commands().count("restart") == 1
        again = await install_certs(root, {"cert_pem": cert, "key_pem": key}, quiet)
        assert again["changed"] is False and docker.commands().count("restart") == 1

        other_cert, _ = key_pair()
        with pytest.raises(CommandError, match="does not belong"):
            await install_certs(root, {"cert_pem": other_cert, "key_pem": key}, quiet)
        with pytest.raises(CommandError, match="not delivered"):
            await install_certs(root, {}, quiet)
        assert (certs / "cert.pem").read_text() == cert  # a bad delivery changes nothing
    finally:
        docker_cli.stop_all(docker.state)


async def test_mta_sts_policies_are_served_by_the_front_by_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.mailu.mta_sts import FILE, set_policies

    docker = Docker(tmp_path, monkeypatch)
    root = tmp_path / "vps"
    policy = "version: STSv1\r\nmode: testing\r\nmx: mx1.example.net\r\nmax_age: 604800\r\n"
    try:
        await install(root, PAYLOAD, quiet)
        body = {"policies": {"mta-sts.example.net": policy}}
        first = await set_policies(root, body, quiet)
        assert first == {"hosts": ["mta-sts.example.net"], "changed": True, "restarted_front": True}
        conf = (root / "mailu" / FILE).read_text()
        assert 'if ($host = "mta-sts.example.net")' in conf
        assert "mode: testing\\r\\nmx: mx1.example.net" in conf and conf.count("{") == 2
        assert (await set_policies(root, body, quiet))["changed"] is False
        with pytest.raises(CommandError, match="not an RFC 8461 policy"):
            await set_policies(root, {"policies": {"mta-sts.example.net": 'x"; return 500'}}, quiet)
        with pytest.raises(CommandError, match="not an mta-sts"):
            await set_policies(root, {"policies": {"evil.example.net": policy}}, quiet)
        assert (await set_policies(root, {"policies": {}}, quiet))["changed"] is True
        assert not (root / "mailu" / FILE).exists()
        assert docker.commands().count("restart") == 2
    finally:
        docker_cli.stop_all(docker.state)
