"""The agent installed over SSH (issue 20), against real OpenSSH ``sshd``s: the local
provider's ``ssh`` boot mode runs one in each VPS's network namespace.

One test follows a real ``mailfleet serve`` to ``ready`` for a local VPS and, at the same
time, for a Hostwinds order (the contract double hands out the address of a VPS made by the
test, ``tests/provisioning/machines.py``), which installs the agent package the plane serves
as a rented VPS does (the other SSH tests start the host's agent, for speed); the other
drives one server step by step (``ProvisioningRunner.run_one``) through every way the
install can fail — no sshd, a wrong key, a failing install script, a reinstalled machine's
new host key (until an admin clears the pin) — each retried through the same service the
API's retry calls, until the install goes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.engine import Database
from control_plane.files import write_private
from control_plane.gateway.hub import AgentHub
from control_plane.provisioning import service
from control_plane.provisioning.bootstrap import AgentInstall, ssh_install
from control_plane.provisioning.models import ServerEvent
from control_plane.provisioning.providers import local_sshd
from control_plane.provisioning.providers.local import LocalProvider
from control_plane.provisioning.registry import HOSTWINDS_SECRET, ProviderRegistry
from control_plane.provisioning.runner import ProvisioningRunner
from control_plane.provisioning.ssh import admin_key_path, new_key_pair
from control_plane.provisioning.workflow import Workflow
from control_plane.servers.models import Server
from control_plane.servers.schemas import ServerCreate
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from control_plane.vault.pki import AgentPki
from tests.conftest import MakeTenant
from tests.e2e.conftest import PlaneFactory
from tests.e2e.conftest import local_net as local_net  # the fixtures, used here too
from tests.e2e.conftest import plane_factory as plane_factory
from tests.e2e.local import LocalNet, order, wait_gone, wait_state
from tests.fakes.hostwinds import HostwindsDouble, hostwinds_double
from tests.provisioning.machines import (
    Machines,
    local_ssh_settings,
    served_package_env,
    sshd_pids,
    sshd_running,
)
from tests.provisioning.machines import agent_wheelhouse as agent_wheelhouse  # fixtures
from tests.provisioning.machines import machines as machines  # used here too
from tests.support.stack import ControlPlane

pytestmark = pytest.mark.postgres_only
HOSTWINDS_KEY = "hwk-5e1f0c3a9b7d4e2f8a6c1b3d5e7f9a0b"


async def test_local_and_hostwinds_vpss_get_their_agents_over_ssh_and_become_ready(
    local_net: LocalNet,
    plane_factory: PlaneFactory,
    machines: Machines,
    vault: Vault,
    agent_wheelhouse: Path,
) -> None:
    """A real ``mailfleet serve`` takes two orders to ready, at once: a local VPS in the
    ``ssh`` boot mode, and a Hostwinds order with its default (``ssh``) bootstrap, for which
    the double hands out the address of a VPS made here running a real sshd, into whose
    authorized_keys "Hostwinds" puts the key it issued (``authorize``): the plane logs in
    with the private half it kept in Vault.

    The Hostwinds VPS takes the product's default path whole: over SSH it runs the install
    script the plane serves, which fetches the agent package's wheels from the plane and
    installs the agent into the VPS's own virtualenv (the local VPS keeps the host's agent,
    for speed). Its first install meets a wheel that does not match its SHA-256 and fails
    with that reason; the retry installs."""
    plane = plane_factory(**served_package_env(local_net, agent_wheelhouse))
    served = plane.http.get("/agent/install.sh")  # waits for the wheelhouse's build
    assert served.status_code == 200, served.text
    machine = await machines.make("hostwinds-vps", new_key_pair("nobody yet").public_key)
    address = machine.ipv4[0]

    def authorize(at: str, keys: list[str]) -> None:
        assert at == address
        lines = "".join(f"{key}\n" for key in keys).encode()
        write_private(machines.ssh_file(machine, local_sshd.AUTHORIZED_KEYS), lines)

    with hostwinds_double(
        api_key=HOSTWINDS_KEY, create_delay=0.2, addresses=f"{address}/32", authorize=authorize
    ) as api:
        account = {"api_key": HOSTWINDS_KEY, "template": "debian-12", "base_url": api.url}
        await vault.put(HOSTWINDS_SECRET, account)
        try:
            name = f"t-{time.time_ns()}"
            tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": name})
            server = order(plane, tenant["id"], "ssh1")
            with _tampered(agent_wheelhouse, served.text) as (wheel, sha):
                rented = plane.api(
                    "POST",
                    "/api/v1/servers",
                    201,
                    json={"name": "hw1", "provider": "hostwinds", "region": "2", "plan": "12",
                          "mail_stack": "none", "tenant_id": tenant["id"]},
                )  # fmt: skip
                failed = wait_state(plane, rented["id"], "failed", timeout=30)
            assert failed["failed_step"] == "installing_agent", failed
            assert failed["failure_reason"].startswith(
                "the agent's install script exited with status 1; last output: "
            ), failed
            assert f"install-agent.sh: {wheel}: SHA-256 " in failed["failure_reason"]
            assert failed["failure_reason"].endswith(f", expected {sha}; nothing installed")
            assert not (machines.root(machine) / "opt" / "mailfleet-agent").exists()
            plane.api("POST", f"/api/v1/servers/{rented['id']}/retry", 200)
            _local_vps_ready(plane, local_net, server["id"])
            _hostwinds_ready(plane, api, rented["id"], address, machines.host_key(machine))
            _runs_the_served_agent(plane, rented["id"], machines.root(machine))

            plane.api("DELETE", f"/api/v1/servers/{server['id']}", 202)
            plane.api("DELETE", f"/api/v1/servers/{rented['id']}", 202)
            wait_gone(plane, server["id"])
            wait_gone(plane, rented["id"])
            # Terminated: the local VPS by the local provider, the other at Hostwinds (its
            # machine here is the fixture's to end); the local_net fixture checks the rest.
            assert [r["id"] for r in local_net.instances()] == [machine.id]
            assert api.instances == {} and api.ssh_keys == {}
        finally:
            await vault.delete(HOSTWINDS_SECRET)


def _local_vps_ready(plane: ControlPlane, local_net: LocalNet, server_id: str) -> None:
    ready = wait_state(plane, server_id, "ready")
    events = plane.api("GET", f"/api/v1/servers/{server_id}/events")["items"]
    states = [e["state"] for e in events if e["kind"] == "state"]
    assert states[:5] == ["requested", "creating", "booting", "installing_agent", "enrolling"]
    messages = [e["message"] for e in events]
    (record,) = [r for r in local_net.instances() if r["id"] == ready["instance_id"]]
    instance_dir = local_net.state_dir / record["id"]
    host_key = local_sshd.host_public_key(instance_dir)
    assert f"SSH host key pinned: {host_key}" in messages
    assert ready["ssh_host_key"] == host_key
    assert any(
        e["kind"] == "output" and e["message"].startswith("mailfleet-agent started (pid ")
        for e in events
    ), messages
    assert not (instance_dir / "user-data").read_text()  # no user data: SSH did it all
    config = instance_dir / "rootfs" / "etc" / "mailfleet" / "agent.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert config.read_text().startswith(f'vps_cgroup = "{record["cgroup"]}"\n')
    assert ready["status"] == "online"


def _hostwinds_ready(
    plane: ControlPlane, api: HostwindsDouble, server_id: str, address: str, host_key: str
) -> None:
    ready = wait_state(plane, server_id, "ready", timeout=90)  # a few seconds, unloaded
    (instance,) = api.instances.values()
    assert ready["instance_id"] == str(instance.serviceid) and ready["ipv4"] == address
    assert ready["ssh_host_key"] == host_key and ready["status"] == "online"
    # Documented fields only: no user data; keys[] is the key Hostwinds issued.
    assert instance.user_data == "" and instance.keys == [f"mf-{server_id}"]
    events = plane.api("GET", f"/api/v1/servers/{server_id}/events")["items"]
    assert [e["state"] for e in events if e["kind"] == "state"] == [
        "requested", "creating", "booting", "installing_agent",
        "installing_agent", "enrolling", "ready",  # the retry after the tampered wheel
    ]  # fmt: skip
    assert any(e["message"].startswith("mailfleet-agent started (pid ") for e in events)


@contextlib.contextmanager
def _tampered(wheelhouse: Path, script: str) -> Iterator[tuple[str, str]]:
    """The wheel the install script fetches first, altered on the plane's disk (as a
    corrupted or substituted file would reach the VPS) until the block ends: its name and
    the SHA-256 the script lists for it."""
    listed = [
        line.split("  ") for line in script.splitlines()
        if re.fullmatch(r"[0-9a-f]{64}  [A-Za-z0-9._+-]+", line)
    ]  # fmt: skip
    sha, name = listed[0]  # the list is in name order, fetched in that order
    (path,) = wheelhouse.glob(f"*/{name}")
    original = path.read_bytes()
    path.write_bytes(original + b"\0")
    try:
        yield name, sha
    finally:
        path.write_bytes(original)


def _runs_the_served_agent(plane: ControlPlane, server_id: str, root: Path) -> None:
    """The agent that enrolled runs from the VPS's own virtualenv, installed by the served
    script over SSH, whose output lines are the server's events."""
    venv = root / "opt" / "mailfleet-agent"
    pid = int((root / "run" / "mailfleet-agent.pid").read_text())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1] == str(venv / "bin" / "mailfleet-agent").encode(), cmdline
    events = plane.api("GET", f"/api/v1/servers/{server_id}/events")["items"]
    output = [e["message"] for e in events if e["kind"] == "output"]
    installed = rf"install-agent\.sh: mailfleet-agent [0-9.]+ installed in {re.escape(str(venv))}"
    assert any(re.fullmatch(installed, line) for line in output), output
    assert f"mailfleet-agent started (pid {pid}); its log: {root}/var/log/mailfleet-agent.log" in (
        output
    )


@dataclass
class Driver:
    """A server driven one step at a time, by runners that differ only in settings."""

    db: Database
    settings: Settings
    vault: Vault
    pki: AgentPki
    registries: list[ProviderRegistry]
    server_id: uuid.UUID | None = None

    def runner(self, **changes: object) -> ProvisioningRunner:
        settings = self.settings.model_copy(update=changes)
        providers = ProviderRegistry(settings, self.vault)
        self.registries.append(providers)
        workflow = Workflow(settings, self.db, self.vault, self.pki, AgentHub(), providers)
        return ProvisioningRunner(settings, self.db, workflow)

    async def row(self) -> Server:
        async with self.db.session() as session:
            server = await session.get(Server, self.server_id)
        assert server is not None
        return server

    async def step(self, runner: ProvisioningRunner) -> Server:
        assert self.server_id is not None
        assert await runner.run_one(self.server_id), (await self.row()).state
        return await self.row()

    async def install(self, runner: ProvisioningRunner) -> Server:
        """Run ``installing_agent`` (again each time it is due) until it leaves that state."""
        assert self.server_id is not None
        deadline = time.monotonic() + 10
        while (server := await self.row()).state == "installing_agent":
            assert time.monotonic() < deadline, server.state
            if not await runner.run_one(self.server_id):
                await asyncio.sleep(0.05)
        return server

    async def retry(self) -> None:
        async def again(session: AsyncSession) -> None:
            server = await session.get(Server, self.server_id)
            assert server is not None
            await service.retry(session, server, self.settings)

        await self.db.transact(again)


@pytest_asyncio.fixture
async def driver(
    local_net: LocalNet,
    settings: Settings,
    db: Database,
    vault: Vault,
    pki: AgentPki,
) -> AsyncIterator[Driver]:
    drive = Driver(db, local_ssh_settings(settings, local_net), vault, pki, [])
    try:
        yield drive
    finally:
        if drive.server_id is not None:
            row = await drive.row()
            provider = (await drive.registries[0].get("local")).provider
            assert isinstance(provider, LocalProvider)
            if row.instance_id is not None:
                await provider.terminate(row.instance_id)
            await provider.teardown()
        for registry in drive.registries:
            await registry.aclose()


async def events_of(db: Database, server_id: uuid.UUID) -> list[ServerEvent]:
    async with db.session() as session:
        rows = await session.scalars(
            select(ServerEvent).where(ServerEvent.server_id == server_id).order_by(ServerEvent.id)
        )
        return list(rows)


async def test_each_ssh_failure_fails_the_step_with_its_reason_and_retries(
    driver: Driver, make_tenant: MakeTenant, vault: Vault, db: Database, tmp_path: Path
) -> None:
    good = driver.runner()
    tenant = await make_tenant()
    order_body = ServerCreate(
        name="ssh2", provider="local", region="local", plan="local-small", mail_stack="none"
    )

    async def place(session: AsyncSession) -> uuid.UUID:
        server = await service.order_server(
            session, driver.registries[0], driver.settings, uuid.UUID(tenant.id), order_body
        )
        return server.id

    driver.server_id = server_id = await db.transact(place)
    for expected in ("creating", "booting", "installing_agent"):
        assert (await driver.step(good)).state == expected
    row = await driver.row()
    assert row.ipv4 is not None and row.instance_id is not None
    provider = (await driver.registries[0].get("local")).provider
    assert isinstance(provider, LocalProvider)
    instance_dir = provider.instance_dir(row.instance_id)
    record = await provider.describe(row.instance_id)

    # 1. No sshd (it was killed): refused, failed with the reason.
    (boot,) = record.boot
    os.killpg(boot.pid, signal.SIGKILL)
    await _until(lambda: not sshd_running(record.namespace))
    failed = await driver.install(good)
    assert failed.state == "failed" and failed.failed_step == "installing_agent"
    assert failed.failure_reason is not None
    assert failed.failure_reason.startswith("could not log in over SSH within 1 s (")
    assert failed.failure_reason.endswith(f"attempts): root@{row.ipv4}:22: Connection refused")
    assert failed.ssh_host_key is None  # nothing met, nothing pinned

    # 2. sshd back, but Vault holds another key than the VPS trusts: refused too.
    config = instance_dir / local_sshd.SSH_DIR / local_sshd.CONFIG
    await asyncio.to_thread(
        subprocess.run,
        ["ip", "netns", "exec", record.namespace, "/usr/sbin/sshd", "-f", str(config)],
        check=True,
        timeout=10,
    )  # daemonizes inside the namespace; terminate stops every process there
    path = admin_key_path(uuid.UUID(tenant.id), server_id)
    kept = await vault.get(path)
    assert kept is not None
    wrong = new_key_pair("wrong")
    await vault.put(path, {"private_key": wrong.private_key, "public_key": wrong.public_key})
    await driver.retry()
    failed = await driver.install(good)
    assert failed.state == "failed" and failed.failure_reason is not None
    assert f"root@{row.ipv4}:22 refused the server's SSH key" in failed.failure_reason
    assert failed.ssh_host_key is None

    # 3. The right key, but the install script fails (no agent where it is looked for).
    await vault.put(path, kept)
    not_executable = tmp_path / "no-agent"
    not_executable.write_text("")
    broken = driver.runner(local_provider_agent_command=not_executable)
    await driver.retry()
    failed = await driver.install(broken)
    host_key = local_sshd.host_public_key(instance_dir)
    assert failed.state == "failed" and failed.failure_reason == (
        "the agent's install script exited with status 1; last output: "
        f"start-agent.sh: {not_executable} is not an executable"
    )
    assert failed.ssh_host_key == host_key  # pinned on first contact
    config_file = instance_dir / "rootfs" / "etc" / "mailfleet" / "agent.toml"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert "join_token" in config_file.read_text()

    # 4. The machine is reinstalled (a new host key): refused before anything is sent.
    config_file.unlink()
    await _restart_sshd(record.namespace, instance_dir)
    reinstalled = local_sshd.host_public_key(instance_dir)
    assert reinstalled != host_key
    await driver.retry()
    failed = await driver.install(good)
    assert failed.state == "failed" and failed.failure_reason is not None
    assert failed.failure_reason.startswith(f"SSH host key of {row.ipv4} changed: pinned SHA256:")
    assert "refusing to send the agent's join token there" in failed.failure_reason
    assert failed.ssh_host_key == host_key and not config_file.exists()

    # 5. An admin clears the pin (what DELETE …/ssh-host-key does): the retry pins the new key.
    async def clear(session: AsyncSession) -> None:
        server = await session.get(Server, server_id)
        assert server is not None
        await service.clear_ssh_host_key(session, server)

    await db.transact(clear)
    assert (await driver.row()).ssh_host_key is None
    await driver.retry()
    installed = await driver.install(good)
    assert installed.state == "enrolling", installed.failure_reason
    assert installed.ssh_host_key == reinstalled
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    events = await events_of(db, server_id)
    failures = [e.message for e in events if e.kind == "failed"]
    retries = [e.message for e in events if e.kind == "retry"]
    assert f"SSH not reachable yet: root@{row.ipv4}:22: Connection refused" in retries
    assert len(failures) == 4 and "changed" in failures[3]
    old_print = asyncssh.import_public_key(host_key).get_fingerprint()
    notes = [e.message for e in events if e.kind == "note"]
    assert notes == [f"SSH host key pin {old_print} cleared; the next login pins anew"]
    assert f"SSH host key pinned: {reinstalled}" in [e.message for e in events]
    assert [e.message for e in events if e.kind == "output"][-1].startswith(
        "mailfleet-agent started (pid "
    )
    assert not [e for e in events if "PRIVATE KEY" in e.message]

    # A step repeated (a crash after the install) starts no second agent.
    script, _ = ssh_install(AgentInstall.preinstalled("/bin/true"))
    again = await asyncio.to_thread(
        subprocess.run,
        ["sh", "-s", "--", str(Path(sys.executable).with_name("mailfleet-agent"))],
        input=script,
        env={"MAILFLEET_LOCAL_ROOT": str(instance_dir / "rootfs"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert again.returncode == 0 and again.stdout.startswith("mailfleet-agent already running")


async def _restart_sshd(namespace: str, instance_dir: Path) -> None:
    """What reinstalling the machine does to its sshd: a new host key, sshd started anew
    (daemonized inside the namespace; terminating the VPS stops every process there)."""
    for pid in sshd_pids(namespace):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    await _until(lambda: not sshd_running(namespace))
    key = new_key_pair("reinstalled").private_key.encode()
    write_private(instance_dir / local_sshd.SSH_DIR / local_sshd.HOST_KEY, key)
    config = instance_dir / local_sshd.SSH_DIR / local_sshd.CONFIG
    await asyncio.to_thread(
        subprocess.run,
        ["ip", "netns", "exec", namespace, "/usr/sbin/sshd", "-f", str(config)],
        check=True,
        timeout=10,
    )


async def _until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.02)
