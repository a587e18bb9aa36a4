"""Machines reached over SSH in tests: local VPSs in the ``ssh`` boot mode (a network
namespace running a real OpenSSH ``sshd`` on its address), for the install over SSH of the
local provider, of Hostwinds' (the double hands out such a VPS's address) and of adopted
machines (one the customer "has" is a VPS the test makes itself)."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from control_plane.provisioning.providers import local_sshd
from control_plane.provisioning.providers.base import Instance
from control_plane.provisioning.providers.local import LocalProvider
from control_plane.provisioning.registry import local_settings
from control_plane.settings import Settings
from tests.e2e.local import LocalNet
from tests.support.netns import namespace_pids
from tests.support.ports import free_port


def ssh_net_settings(net: LocalNet) -> dict[str, str]:
    return {
        **net.settings(),
        "MAILFLEET_LOCAL_PROVIDER_BOOT": "ssh",
        "MAILFLEET_PROVISION_SSH_CONNECT_SECONDS": "10",
    }


def remote_agents_env(net: LocalNet) -> dict[str, str]:
    """A plane (``serve``) whose agents on machines it did not build (Hostwinds', adopted)
    reach it on the local provider's bridge, where its gateway also listens, and start the
    agent already on this host: a local VPS has no route out for pip."""
    bridge = net.subnet.network_address + 1
    grpc, enroll = free_port(), free_port()
    return {
        **ssh_net_settings(net),
        "MAILFLEET_GRPC_ADDR": f"127.0.0.1:{grpc}",
        "MAILFLEET_ENROLL_ADDR": f"127.0.0.1:{enroll}",
        "MAILFLEET_GATEWAY_ADVERTISE_ADDR": f"{bridge}:{grpc}",
        "MAILFLEET_ENROLL_ADVERTISE_ADDR": f"{bridge}:{enroll}",
        "MAILFLEET_PREINSTALLED_AGENT": str(Path(sys.executable).with_name("mailfleet-agent")),
    }


RESTIC = shutil.which("restic") or "/usr/bin/restic"


def served_package_env(net: LocalNet, wheelhouse: Path) -> dict[str, str]:
    """``remote_agents_env`` for a plane whose remote machines install the agent package it
    serves, as a rented VPS does (``GET /agent/install.sh``, over the VPS's link to the
    bridge, where the API also listens), not the agent already on this host. The served
    restic is the one test_agent_package serves: the same inputs, the same wheelhouse."""
    env = remote_agents_env(net)
    del env["MAILFLEET_PREINSTALLED_AGENT"]
    port = free_port()
    return {
        **env,
        "MAILFLEET_API_ADDR": f"127.0.0.1:{port}",
        "MAILFLEET_API_ADVERTISE_URL": f"http://{net.subnet.network_address + 1}:{port}",
        "MAILFLEET_AGENT_WHEELHOUSE_DIR": str(wheelhouse),
        "MAILFLEET_AGENT_RESTIC_BINARY": RESTIC,
    }


@pytest.fixture(scope="session")
def agent_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One wheelhouse cache for the session: built once (~3 s of CPU) by the first plane
    that serves the agent package, found by its inputs' digest by the next."""
    return tmp_path_factory.mktemp("agent-wheels")


def local_ssh_settings(settings: Settings, net: LocalNet) -> Settings:
    """``settings`` with the test's local provider in ``ssh`` boot mode, ~1 s timers."""
    env = ssh_net_settings(net)
    return settings.model_copy(
        update={
            "local_provider": True,
            "local_provider_dir": net.state_dir,
            "local_provider_prefix": net.prefix,
            "local_provider_bridge": net.bridge,
            "local_provider_bridge_address": env["MAILFLEET_LOCAL_PROVIDER_BRIDGE_ADDRESS"],
            "local_provider_pool": env["MAILFLEET_LOCAL_PROVIDER_POOL"],
            "local_provider_boot": "ssh",
            "provision_ssh_connect_seconds": 1.0,
            "provision_poll_seconds": 0.05,
            "provision_lease_seconds": 5.0,
        }
    )


@dataclass
class Machines:
    """Machines outside MailFleet's own renting: local VPSs made here, terminated by the
    fixture (deleting their server must leave them running)."""

    provider: LocalProvider
    made: list[str] = field(default_factory=list)

    async def make(self, name: str, authorized_key: str) -> Instance:
        machine = await self.provider.create(name, "local", "local-small", "", authorized_key)
        self.made.append(machine.id)
        return machine

    def ssh_file(self, machine: Instance, name: str) -> Path:
        return self.provider.instance_dir(machine.id) / local_sshd.SSH_DIR / name

    def root(self, machine: Instance) -> Path:
        """The machine's own root directory (its sshd's ``$MAILFLEET_LOCAL_ROOT``)."""
        return self.provider.instance_dir(machine.id) / "rootfs"

    def host_key(self, machine: Instance) -> str:
        return local_sshd.host_public_key(self.provider.instance_dir(machine.id))


@pytest_asyncio.fixture
async def machines(local_net: LocalNet, settings: Settings) -> AsyncIterator[Machines]:
    made = Machines(LocalProvider(local_settings(local_ssh_settings(settings, local_net))))
    try:
        yield made
    finally:
        for instance_id in made.made:
            await made.provider.terminate(instance_id)


def sshd_pids(namespace: str) -> list[int]:
    found = []
    for pid in namespace_pids(namespace):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                found.append(pid)
    return found


def sshd_running(namespace: str) -> bool:
    return bool(sshd_pids(namespace))
