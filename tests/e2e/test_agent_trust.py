"""Every way into the agent link that must fail does, and the control plane says why."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import tomllib
import uuid
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import update

from agent.identity import fetch_pinned_ca, new_key_and_csr
from control_plane.db.engine import Database
from control_plane.enrollment.models import JoinToken
from control_plane.vault.client import Vault
from control_plane.vault.pki import AgentPki
from mailfleet.agent.v1 import agent_pb2, agent_pb2_grpc
from tests.support.stack import AgentProcess, ControlPlane, agents

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plane(shared_plane: ControlPlane) -> ControlPlane:
    """No test here stops the plane or changes its settings: they share one."""
    return shared_plane


class Client:
    """A bare gRPC client speaking the agent protocol, to try what a real agent never would."""

    def __init__(self, plane: ControlPlane, toml: str) -> None:
        config = tomllib.loads(toml)["control_plane"]
        self.plane = plane
        self.address, self.enroll_address = config["address"], config["enroll_address"]
        self.token = config["join_token"]
        self.ca = fetch_pinned_ca(self.enroll_address, config["ca_pin"])

    def enroll(self, token: str | None = None, claim: str = "") -> tuple[bytes, bytes]:
        key, csr = new_key_and_csr("test")
        with grpc.secure_channel(
            self.enroll_address, grpc.ssl_channel_credentials(root_certificates=self.ca)
        ) as channel:
            response = agent_pb2_grpc.EnrollmentStub(channel).Enroll(
                agent_pb2.EnrollRequest(
                    join_token=token or self.token, csr_pem=csr, server_id=claim, agent_version="t"
                ),
                timeout=10,
            )
        return key, response.certificate_pem

    def connect(self, key: bytes | None, cert: bytes | None) -> agent_pb2.ControlMessage:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=key, certificate_chain=cert
        )
        with grpc.secure_channel(self.address, credentials) as channel:
            hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(agent_version="t"))
            replies = agent_pb2_grpc.AgentLinkStub(channel).Connect(iter([hello]), timeout=10)
            return next(iter(replies))


def refused(call: object, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    assert raised.value.code() == code, raised.value.details()
    return str(raised.value.details())


def logged(plane: ControlPlane, text: str) -> bool:
    time.sleep(0.2)
    return any(text in line for line in plane.output())


def test_tls_refuses_peers_without_a_certificate_from_our_ca(plane: ControlPlane) -> None:
    server_id, toml = plane.new_server("tls")
    client = Client(plane, toml)
    key, cert = client.enroll()
    assert client.connect(key, cert).HasField("hello")  # the same client gets in with ours
    refused(lambda: client.connect(None, None), grpc.StatusCode.UNAVAILABLE)

    other_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Impostor CA")])
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_id)]))
        .issuer_name(name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(other_key, hashes.SHA256())
    )
    pem = leaf.public_bytes(serialization.Encoding.PEM)
    key = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    refused(lambda: client.connect(key, pem), grpc.StatusCode.UNAVAILABLE)


async def test_an_expired_certificate_is_refused(plane: ControlPlane, vault: Vault) -> None:
    server_id, toml = plane.new_server("expired")
    client = Client(plane, toml)
    key, csr = new_key_and_csr("test")
    pki = AgentPki(vault)
    issued = await pki.sign_agent_csr(csr.decode(), server_id, ttl_seconds=5)
    cert = issued.certificate_pem.encode()
    # While valid it passes TLS: the gateway itself answers (this serial was never enrolled).
    detail = refused(lambda: client.connect(key, cert), grpc.StatusCode.UNAUTHENTICATED)
    assert "revoked or unknown" in detail
    await asyncio.sleep((issued.not_after - dt.datetime.now(dt.UTC)).total_seconds() + 1)
    refused(lambda: client.connect(key, cert), grpc.StatusCode.UNAVAILABLE)  # expired: no TLS


def test_revoked_certificates_are_refused_on_reconnect(plane: ControlPlane) -> None:
    server_id, toml = plane.new_server("revoked")
    client = Client(plane, toml)
    key, cert = client.enroll()
    assert client.connect(key, cert).HasField("hello")
    plane.api("POST", f"/api/v1/servers/{server_id}/revoke-agent")
    detail = refused(lambda: client.connect(key, cert), grpc.StatusCode.UNAUTHENTICATED)
    assert "revoked" in detail
    assert logged(plane, f"agent link refused for server {server_id}")


async def test_join_tokens_are_single_use_expiring_and_bound_to_their_server(
    plane: ControlPlane, db: Database
) -> None:
    a_id, a_toml = plane.new_server("a")
    _, b_toml = plane.new_server("b")
    a = Client(plane, a_toml)
    a.enroll()
    refused(a.enroll, grpc.StatusCode.UNAUTHENTICATED)
    assert logged(plane, "already used")

    b_token = tomllib.loads(b_toml)["control_plane"]["join_token"]
    detail = refused(lambda: a.enroll(b_token, claim=a_id), grpc.StatusCode.PERMISSION_DENIED)
    assert "another server" in detail
    assert logged(plane, f"agent of server {a_id} presented token")

    stale = Client(plane, plane.join_toml(a_id))
    async with db.session() as session:
        await session.execute(
            update(JoinToken)
            .where(JoinToken.used_at.is_(None), JoinToken.server_id == uuid.UUID(a_id))
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    refused(stale.enroll, grpc.StatusCode.UNAUTHENTICATED)
    assert logged(plane, "expired at")


def test_agent_refuses_a_control_plane_whose_ca_does_not_match_the_pin(
    plane: ControlPlane, tmp_path: Path
) -> None:
    server_id, toml = plane.new_server("pinned")
    wrong = toml.replace('ca_pin = "sha256:', 'ca_pin = "sha256:0').replace(
        toml.split('ca_pin = "sha256:')[1][:64], toml.split('ca_pin = "sha256:')[1][:63], 1
    )
    assert wrong != toml
    agent = AgentProcess(tmp_path / "agent", wrong)
    with agents(agent):
        assert agent.process is not None
        agent.process.wait_for_line_containing("does not match ca_pin", timeout=10)
    # the token never left the agent: it still enrolls a correctly pinned agent
    with agents(AgentProcess(tmp_path / "good", toml)):
        plane.wait_status(server_id, "online")
