"""The local provider in end-to-end tests: a bridge and /24 per test, VPSs as namespaces,
and helpers to order servers and follow them through the API."""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac

from tests.support.netns import links, namespaces
from tests.support.openbao import DevOpenBao
from tests.support.stack import ControlPlane


@dataclass
class LocalNet:
    prefix: str
    bridge: str
    subnet: ipaddress.IPv4Network
    state_dir: Path

    def settings(self) -> dict[str, str]:
        gateway = self.subnet.network_address + 1
        return {
            "MAILFLEET_LOCAL_PROVIDER": "1",
            "MAILFLEET_LOCAL_PROVIDER_DIR": str(self.state_dir),
            "MAILFLEET_LOCAL_PROVIDER_PREFIX": self.prefix,
            "MAILFLEET_LOCAL_PROVIDER_BRIDGE": self.bridge,
            "MAILFLEET_LOCAL_PROVIDER_BRIDGE_ADDRESS": f"{gateway}/{self.subnet.prefixlen}",
            "MAILFLEET_LOCAL_PROVIDER_POOL": f"{self.subnet.network_address + 16}/28",
            "MAILFLEET_PROVISION_POLL_SECONDS": "0.2",
            "MAILFLEET_PROVISION_LEASE_SECONDS": "2",
        }

    def instances(self) -> list[dict[str, Any]]:
        """The provider's own records (what it rented), read from its state directory."""
        if not self.state_dir.exists():
            return []
        records = sorted(self.state_dir.glob("*/instance.json"))
        return [json.loads(r.read_text()) for r in records]

    def leftovers(self) -> list[str]:
        found = [f"namespace {n}" for n in namespaces() if n.startswith(self.prefix + "-")]
        found += [f"link {n}" for n in links() if n.startswith(self.prefix)]
        if self.state_dir.exists():
            found += [f"file {p.name}" for p in self.state_dir.iterdir() if p.name != ".lock"]
        return found


def order(plane: ControlPlane, tenant_id: str, name: str, expect: int = 201, **extra: Any) -> Any:
    body = {
        "name": name,
        "provider": "local",
        "region": "local",
        "plan": "local-small",
        "mail_stack": "none",
    }
    return plane.api(
        "POST", "/api/v1/servers", expect, json={**body, "tenant_id": tenant_id, **extra}
    )


def wait_state(plane: ControlPlane, server_id: str, state: str, timeout: float = 60) -> Any:
    def settled(server: dict[str, Any]) -> bool:
        assert server["state"] != "failed" or state == "failed", server
        return bool(server["state"] == state)

    return plane.wait_until(f"/api/v1/servers/{server_id}", settled, timeout)


def wait_gone(plane: ControlPlane, server_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while plane.http.get(f"/api/v1/servers/{server_id}").status_code != 404:
        assert time.monotonic() < deadline, f"server {server_id} still there"
        time.sleep(0.2)


def vault_secret(openbao: DevOpenBao, path: str) -> dict[str, Any] | None:
    client = hvac.Client(url=openbao.url, token=openbao.token)
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point="mailfleet", raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        return None
    return dict(response["data"]["data"])
