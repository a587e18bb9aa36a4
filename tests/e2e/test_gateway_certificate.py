"""The gateway renews its own certificate while agents stay connected (no restart)."""

from __future__ import annotations

import re
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.e2e.conftest import PlaneFactory
from tests.support.ports import free_port
from tests.support.stack import AgentProcess, ControlPlane, agents

pytestmark = pytest.mark.e2e
RENEWALS = 3


def presented(address: str, ca: bytes, identity: Path | None = None) -> x509.Certificate:
    """The certificate a listener shows now, checked against the CA and the dialled name."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cadata=ca.decode())
    if identity is not None:  # the agent-link port wants a client certificate
        for _ in range(20):  # the agent may be between writing its new key and certificate
            try:
                context.load_cert_chain(identity / "agent.crt", identity / "agent.key")
                break
            except ssl.SSLError:
                time.sleep(0.05)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def expiry_metric(plane: ControlPlane) -> float:
    text = plane.http.get("/metrics").text
    found = re.search(r"^mailfleet_gateway_certificate_expiry_seconds (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def ping(plane: ControlPlane, server_id: str) -> None:
    done = plane.wait_command(server_id, plane.command(server_id, "ping", echo="hi")["id"])
    assert done["state"] == "succeeded", done


def test_gateway_certificate_is_renewed_while_agents_stay_connected(
    plane_factory: PlaneFactory, tmp_path: Path
) -> None:
    link, enroll = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    advertised = f"localhost:{link.rsplit(':', 1)[1]}"  # only in the certificate as advertised
    plane = plane_factory(
        MAILFLEET_GRPC_ADDR=link,
        MAILFLEET_ENROLL_ADDR=enroll,
        MAILFLEET_GATEWAY_ADVERTISE_ADDR=advertised,
        MAILFLEET_GATEWAY_TLS_NAMES="gateway.mailfleet.test",
        # renewed at 70-90 % of its life: 30 s leaves 3-9 s for the renewal under load (at
        # 20 s, 2 s was once not enough and the enrollment port showed an expired one)
        MAILFLEET_GATEWAY_CERTIFICATE_TTL_SECONDS="30",
        MAILFLEET_AGENT_CERTIFICATE_TTL_SECONDS="20",
    )
    servers = [plane.new_server(f"renew{i}") for i in range(2)]
    processes = [AgentProcess(tmp_path / f"agent{i}", toml) for i, (_, toml) in enumerate(servers)]
    with agents(*processes):
        for server_id, _ in servers:
            plane.wait_status(server_id, "online")
        identity = processes[0].state_dir / "identity"
        ca = (identity / "ca.crt").read_bytes()
        first = presented(enroll, ca)
        names = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"localhost", "gateway.mailfleet.test"} <= set(
            names.get_values_for_type(x509.DNSName)
        )

        seen: dict[str, set[int]] = {"link": set(), "enroll": set(), "metrics": set()}
        expiries: set[float] = set()
        deadline = time.monotonic() + 30 * (RENEWALS + 1)
        while min(len(s) for s in seen.values()) <= RENEWALS and time.monotonic() < deadline:
            shown = presented(enroll, ca)
            expiries.add(shown.not_valid_after_utc.timestamp())
            seen["enroll"].add(shown.serial_number)
            seen["link"].add(presented(advertised, ca, identity).serial_number)
            seen["metrics"].add(int(expiry_metric(plane)))
            time.sleep(0.5)
        assert all(len(s) > RENEWALS for s in seen.values()), seen
        assert seen["metrics"] <= {int(e) for e in expiries}

        for (server_id, _), process in zip(servers, processes, strict=True):
            assert process.process is not None and process.process.process.poll() is None
            # heartbeats every 0.5 s, unknown after 2 s: a loaded machine can miss one window
            # right after a renewal; the agent must still be (or be back) online at once
            plane.wait_status(server_id, "online", timeout=10)
            ping(plane, server_id)

        late_id, late_toml = plane.new_server("late")
        with agents(AgentProcess(tmp_path / "late", late_toml)):
            plane.wait_status(late_id, "online")
            ping(plane, late_id)
