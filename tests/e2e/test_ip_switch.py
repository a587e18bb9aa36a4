"""An IP switch end to end: a local VPS (network namespace, real agent, real nftables) with two
addresses, a real ``mailfleet serve`` whose SMTP observer listens on the host side of the
local bridge, and connections from inside the VPS to that observer, which says whom it saw.

Mail leaves from IP1 → switch to IP2 → succeeded, it leaves from IP2. Then faults, one after
another, into the same VPS, each switch back to IP1 rolled back with mail still leaving from
IP2: nft refuses the new SNAT (an ``nft`` in front of the real one on the VPS's PATH refuses
a ruleset that SNATs to IP1), then the egress check sees the wrong address (another nftables
table on the VPS, earlier in the NAT hook, sends the observer's port out from IP2 anyway).
Another tenant's key sees none of it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mailfleet.smtp_observer import seen_address
from tests.e2e.conftest import PlaneFactory
from tests.e2e.local import LocalNet, order, wait_gone, wait_state
from tests.e2e.test_health_alerts import call, namespace_of, tenant_client
from tests.support.ports import free_port
from tests.support.stack import ControlPlane

pytestmark = pytest.mark.e2e

HOST = "mx.switch.example"
FINAL = ("succeeded", "rolled_back", "failed")
PROBE = (
    "import smtplib, sys\n"
    "s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)\n"
    "print(s.ehlo('vps.test')[1].decode())\n"
    "s.quit()\n"
)
# Put in front of the real nft on the VPS's PATH: while the flag file names an address, a
# ruleset that SNATs to it is refused as nft refuses a rule it cannot load.
NFT_WRAPPER = """#!/bin/bash
if [ "$1" = "-f" ] && [ -s "{flag}" ]; then
  script=$(cat)
  if grep -q "snat ip to $(cat "{flag}")\\b" <<< "$script"; then
    echo "Error: Could not process rule: Operation not permitted (injected)" >&2
    exit 1
  fi
  exec "{real}" "$@" <<< "$script"
fi
exec "{real}" "$@"
"""


def seen_from(namespace: str, host: str, port: int) -> str | None:
    """Connect from inside the VPS to the observer; the address it says it saw."""
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", PROBE, host, str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return seen_address(done.stdout.splitlines())


def switch(plane: ControlPlane, http: Any, server_id: str, to_ip: str) -> dict[str, Any]:
    base = f"/api/v1/servers/{server_id}/ip-switches"
    started = call(http, "POST", base, 202, json={"to_ip": to_ip})
    deadline = time.monotonic() + 60
    while True:
        found: dict[str, Any] = call(http, "GET", f"{base}/{started['id']}")
        if found["state"] in FINAL:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def states(found: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["state"] for step in found["steps"]}


def test_a_switch_moves_egress_and_each_fault_rolls_back_to_the_working_address(
    local_net: LocalNet, plane_factory: PlaneFactory, tmp_path: Path
) -> None:
    gateway = str(local_net.subnet.network_address + 1)
    port = free_port()
    bin_dir, flag = tmp_path / "nft-bin", tmp_path / "nft-refuses"
    bin_dir.mkdir()
    real = shutil.which("nft")
    assert real is not None
    wrapper = bin_dir / "nft"
    wrapper.write_text(NFT_WRAPPER.format(flag=flag, real=real))
    wrapper.chmod(0o755)
    plane = plane_factory(
        **local_net.settings(),
        MAILFLEET_LOCAL_PROVIDER_EXTRA_PATH=str(bin_dir),
        MAILFLEET_SMTP_OBSERVER_ADDR=f"0.0.0.0:{port}",
        MAILFLEET_SMTP_OBSERVER_ADVERTISE=f"{gateway}:{port}",
        MAILFLEET_PERIODIC_SECONDS="0.5",
        MAILFLEET_IP_SWITCH_TICK_SECONDS="0.2",
        MAILFLEET_IP_SWITCH_DRAIN_SECONDS="1",
        MAILFLEET_IP_SWITCH_DNS_GRACE_SECONDS="1",
        MAILFLEET_IP_SWITCH_STEP_TIMEOUT_SECONDS="30",
        MAILFLEET_IP_SWITCH_LEASE_SECONDS="3",
        MAILFLEET_HEALTH_OUTBOUND_TIMEOUT_SECONDS="5",
    )
    tenant_id, tenant = tenant_client(plane, "switching")
    _, stranger = tenant_client(plane, "stranger")
    server = order(plane, tenant_id, "switching", mail_hostname=HOST)
    ready = wait_state(plane, server["id"], "ready", timeout=90)
    namespace, ip1 = namespace_of(local_net, ready["instance_id"]), ready["ipv4"]
    _wait_sending(plane, ip1)
    ip2 = call(tenant, "POST", f"/api/v1/servers/{server['id']}/ips", 201)["address"]
    assert seen_from(namespace, gateway, port) == ip1

    done = switch(plane, tenant, server["id"], ip2)
    assert done["state"] == "succeeded", done
    assert list(states(done).values())[:6] == ["done", "done", "done", "done", "done", "done"]
    assert seen_from(namespace, gateway, port) == ip2
    record = next(r for r in local_net.instances() if r["id"] == ready["instance_id"])
    assert record["reverse_dns"].get(ip2) == HOST
    roles = {ip["address"]: ip["role"] for ip in call(tenant, "GET", "/api/v1/ips")["items"]}
    assert (roles[ip1], roles[ip2]) == ("standby", "sending")

    # Fault: nft refuses the ruleset that would SNAT to IP1.
    flag.write_text(ip1)
    failed = switch(plane, tenant, server["id"], ip1)
    flag.unlink()
    assert failed["state"] == "rolled_back", failed
    assert (states(failed)["snat"], states(failed)["ptr"]) == ("failed", "rolled_back"), failed
    assert "injected" in failed["error"], failed["error"]
    assert seen_from(namespace, gateway, port) == ip2

    # Fault: something else on the VPS sends the observer's port out from IP2 regardless.
    override = (
        "table ip fault {\n  chain out {\n"
        "    type nat hook postrouting priority srcnat - 50; policy accept;\n"
        f"    tcp dport {port} snat ip to {ip2}\n  }}\n}}\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", namespace, real, "-f", "-"],
        input=override,
        text=True,
        check=True,
        timeout=10,
    )
    failed = switch(plane, tenant, server["id"], ip1)
    subprocess.run(
        ["ip", "netns", "exec", namespace, real, "delete", "table", "ip", "fault"],
        check=True,
        timeout=10,
    )
    assert failed["state"] == "rolled_back", failed
    assert states(failed)["egress"] == "failed" and states(failed)["snat"] == "rolled_back"
    assert f"mail leaves from {ip2}" in failed["error"], failed["error"]
    assert seen_from(namespace, gateway, port) == ip2
    roles = {ip["address"]: ip["role"] for ip in call(tenant, "GET", "/api/v1/ips")["items"]}
    assert (roles[ip1], roles[ip2]) == ("standby", "sending")

    history = call(tenant, "GET", f"/api/v1/ips/{ip2}")["events"]
    assert len([e for e in history if e["kind"] == "switch"]) >= 4
    base = f"/api/v1/servers/{server['id']}/ip-switches"
    assert [s["state"] for s in call(tenant, "GET", base)["items"]] == [
        "succeeded", "rolled_back", "rolled_back",
    ]  # fmt: skip
    for path in (base, f"{base}/{done['id']}"):
        assert stranger.get(path).status_code == 404, path

    plane.api("DELETE", f"/api/v1/servers/{server['id']}", 202)
    wait_gone(plane, server["id"])
    tenant.close()
    stranger.close()


def _wait_sending(plane: ControlPlane, address: str) -> None:
    """The inventory job has given the main address its row (sending)."""
    deadline = time.monotonic() + 30
    while True:
        response = plane.http.get(f"/api/v1/ips/{address}")
        if response.status_code == 200 and response.json()["role"] == "sending":
            return
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)
