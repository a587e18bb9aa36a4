"""Provisioning on the local provider: real namespaces, a real `mailfleet serve`, real agents.

Each test gets its own prefix, bridge and /24 inside 198.19.0.0/16 (see tests/support/netns),
and a sweep at the end fails the test if any namespace, link, process or file is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import pytest
from sqlalchemy import text

from control_plane.db.engine import Database
from tests.control_plane.costs.ledger import spans_of
from tests.e2e.conftest import PlaneFactory
from tests.e2e.local import LocalNet, order, vault_secret, wait_gone, wait_state
from tests.fakes.hostwinds import hostwinds_double
from tests.support.docker_engine import engine_unavailable, run_in_namespace
from tests.support.mailu_images import api_double, stand_in_archive
from tests.support.netns import (
    namespace_pids,
    running,
)
from tests.support.openbao import DevOpenBao
from tests.support.processes import BIN, run_cli
from tests.support.stack import ControlPlane

pytestmark = pytest.mark.e2e


def test_two_vpss_provision_enroll_stream_metrics_and_leave_nothing(
    local_plane: ControlPlane, local_net: LocalNet, openbao: DevOpenBao
) -> None:
    plane = local_plane
    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": f"t-{time.time_ns()}"})
    first = order(plane, tenant["id"], "mx1")
    assert first["state"] == "requested"
    created = run_cli(
        "server", "create", "mx2", "--tenant", tenant["id"], "--provider", "local",
        "--mail-stack", "none",
        "--wait", "--timeout", "60",
        env=plane.env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    second_id = created.stdout.strip().splitlines()[-1]
    assert "enrolling" in created.stderr and "ready" in created.stderr  # the progress it showed

    servers = [wait_state(plane, first["id"], "ready"), wait_state(plane, second_id, "ready")]
    addresses = {ipaddress.ip_address(s["ipv4"]) for s in servers}
    assert len(addresses) == 2 and all(a in local_net.subnet for a in addresses)
    assert all(s["status"] == "online" and s["instance_id"] for s in servers)
    assert len(local_net.instances()) == 2

    history = plane.api("GET", f"/api/v1/servers/{first['id']}/events")["items"]
    states = [e["state"] for e in history if e["kind"] == "state"]
    assert states == ["requested", "creating", "booting", "enrolling", "ready"]
    with plane.http.stream(
        "GET", f"/api/v1/servers/{first['id']}/events", headers={"Accept": "text/event-stream"}
    ) as stream:
        body = "".join(stream.iter_text())
    assert body.count("event: state") == 5 and body.rstrip().endswith('data: {"state": "ready"}')

    # the private key lives in Vault only; the user data carried the join token and no key
    key_path = f"vps/{tenant['id']}/{first['id']}/admin_ssh"
    stored = vault_secret(openbao, key_path)
    assert stored is not None and stored["public_key"] == servers[0]["ssh_public_key"]
    instance_dir = local_net.state_dir / servers[0]["instance_id"]
    user_data = (instance_dir / "user-data").read_text()
    assert "mfjoin_" in user_data and "PRIVATE KEY" not in user_data
    toml = instance_dir / "rootfs/etc/mailfleet/agent.toml"
    assert toml.stat().st_mode & 0o777 == 0o600

    for server in servers:
        deadline = time.monotonic() + 20
        samples: list[Any] = []
        while not samples and time.monotonic() < deadline:
            time.sleep(0.5)
            samples = plane.api(
                "GET", f"/api/v1/servers/{server['id']}/metrics", params={"step": "raw"}
            )["samples"]
        assert samples, f"no metrics from {server['name']}"

    key = plane.api("POST", f"/api/v1/servers/{first['id']}/ssh-key", 201)
    assert key["private_key"] == stored["private_key"]
    plane.api("POST", f"/api/v1/servers/{first['id']}/ssh-key", 409)

    # rotation: Vault gets the new pair, the agent swaps MailFleet's line, the customer's stays
    authorized = instance_dir / "rootfs/root/.ssh/authorized_keys"
    authorized.parent.mkdir(mode=0o700, parents=True)
    authorized.write_text(f"ssh-rsa AAAAB3NzaC1yc2E alice@laptop\n{stored['public_key']}\n")
    rotation = plane.api("POST", f"/api/v1/servers/{first['id']}/ssh-key/rotate", 202)
    assert rotation["public_key"] != stored["public_key"]
    done = plane.wait_command(first["id"], rotation["command"]["id"])
    assert done["state"] == "succeeded" and done["result"]["replaced"] == 1
    assert authorized.read_text() == (
        f"ssh-rsa AAAAB3NzaC1yc2E alice@laptop\n{rotation['public_key']}\n"
    )
    rotated = vault_secret(openbao, key_path)
    assert rotated is not None and rotated["public_key"] == rotation["public_key"]
    fresh = plane.api("POST", f"/api/v1/servers/{first['id']}/ssh-key", 201)
    assert fresh["private_key"] == rotated["private_key"] != key["private_key"]

    pids = {pid for record in local_net.instances() for pid in namespace_pids(record["namespace"])}
    assert pids, "the agents run inside their namespaces"
    gone = plane.api("DELETE", f"/api/v1/servers/{first['id']}", 202)
    assert gone["state"] == "deprovisioning"
    deleted = run_cli("server", "delete", servers[1]["id"], "--wait", env=plane.env)
    assert deleted.returncode == 0, deleted.stderr
    for server in servers:
        wait_gone(plane, server["id"])
    assert local_net.leftovers() == [f"link {local_net.bridge}"]
    assert not [pid for pid in pids if running(pid)]
    assert vault_secret(openbao, key_path) is None


def test_orders_naming_unknown_things_are_refused(local_plane: ControlPlane) -> None:
    plane = local_plane
    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": f"t-{time.time_ns()}"})
    for field, extra in (
        ("body.provider", {"provider": "nimbus"}),
        ("body.region", {"region": "mars-1"}),
        ("body.plan", {"plan": "local-huge"}),
        ("body.plan", {"plan": None}),
    ):
        problem = order(plane, tenant["id"], "bad", 422, **extra)
        assert problem["errors"][0]["field"] == field, problem
    assert plane.api("GET", "/api/v1/servers", params={"tenant_id": tenant["id"]})["items"] == []
    offered = {p["name"]: p for p in plane.api("GET", "/api/v1/providers")}
    assert set(offered) == {"manual", "ssh", "local"}  # ssh: adopting a machine
    assert [r["id"] for r in offered["local"]["regions"]] == ["local"]


# -- kill -9 in each step -------------------------------------------------------------------


def freeze_when(plane: ControlPlane, check: Callable[[], bool], timeout: float = 30) -> None:
    """SIGSTOP the control plane at a moment ``check`` holds, then SIGKILL it there.

    Checking while it is stopped means the state read is the state it dies in.
    """
    assert plane.process is not None
    pid = plane.process.process.pid
    deadline = time.monotonic() + timeout
    while True:
        os.kill(pid, signal.SIGSTOP)
        if check():
            plane.stop(signal.SIGKILL)
            return
        os.kill(pid, signal.SIGCONT)
        assert time.monotonic() < deadline, "the moment to kill never came"
        time.sleep(0.005)


async def server_row(db: Database, server_id: str) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT state, lease_owner, instance_id FROM servers WHERE id = :id"),
                {"id": server_id.replace("-", "") if db.dialect == "sqlite" else server_id},
            )
        ).one()
    return dict(row._mapping)


@pytest.mark.parametrize("moment", ["requested", "creating", "ordered", "enrolling"])
async def test_a_control_plane_killed_in_any_step_finishes_exactly_once(
    moment: str, local_plane: ControlPlane, local_net: LocalNet, db: Database
) -> None:
    plane = local_plane
    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": f"t-{time.time_ns()}"})
    lock_fd = None
    if moment == "creating":  # hold the provider's own lock: the order waits for it
        local_net.state_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(local_net.state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        import fcntl

        fcntl.flock(lock_fd, fcntl.LOCK_EX)
    if moment == "requested":
        # The order goes in while the control plane is stopped (the CLI writes it to the
        # database), so its runner, which starts a step the moment an order commits, dies
        # with the order still untouched.
        assert plane.process is not None
        os.kill(plane.process.process.pid, signal.SIGSTOP)
        made = run_cli(
            "server", "create", "k-requested", "--tenant", tenant["id"], "--provider", "local",
            "--mail-stack", "none", env=plane.env,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        server = {"id": made.stdout.strip()}
    else:
        server = order(plane, tenant["id"], f"k-{moment}")
    loop = asyncio.get_running_loop()

    def state_is(wanted: str) -> Callable[[], bool]:
        def check() -> bool:
            future = asyncio.run_coroutine_threadsafe(server_row(db, server["id"]), loop)
            return bool(future.result(10)["state"] == wanted)

        return check

    holder = None
    if moment == "ordered":  # let the order reach the provider, stop the runner recording it
        deadline = time.monotonic() + 30
        while (row := await server_row(db, server["id"]))["lease_owner"] is None or (
            row["state"] != "creating"
        ):
            assert time.monotonic() < deadline, "the runner never claimed the server"
            await asyncio.sleep(0.005)
        holder = await db.engine.connect()
        await holder.begin()
        await holder.execute(
            text("SELECT 1 FROM servers WHERE id = :id FOR NO KEY UPDATE"), {"id": server["id"]}
        )
        deadline = time.monotonic() + 30
        while not any(i["status"] == "running" for i in local_net.instances()):
            assert time.monotonic() < deadline, "the instance was never ordered"
            await asyncio.sleep(0.05)
        plane.stop(signal.SIGKILL)
        await holder.rollback()
        await holder.close()
    elif moment == "creating":
        await loop.run_in_executor(None, freeze_when, plane, state_is("creating"))
        assert local_net.instances() == []
        assert lock_fd is not None
        os.close(lock_fd)
    elif moment == "requested":
        plane.stop(signal.SIGKILL)
    else:
        await loop.run_in_executor(None, freeze_when, plane, state_is(moment))
    died_in = await server_row(db, server["id"])
    assert died_in["state"] == ("creating" if moment == "ordered" else moment)

    plane.start()
    ready = await loop.run_in_executor(None, wait_state, plane, server["id"], "ready")
    assert len(local_net.instances()) == 1  # no second VPS rented
    assert local_net.instances()[0]["id"] == ready["instance_id"]
    history = plane.api("GET", f"/api/v1/servers/{server['id']}/events")["items"]
    assert [e["state"] for e in history if e["kind"] == "state"][-1] == "ready"
    assert sum(e["state"] == "ready" for e in history) == 1
    # Ready (here without MailU, so without a dns step) means its address is in the inventory.
    ips = plane.api("GET", f"/api/v1/ips?server_id={server['id']}")["items"]
    assert [(ip["address"], ip["role"]) for ip in ips] == [(ready["ipv4"], "sending")]
    plane.api("DELETE", f"/api/v1/servers/{server['id']}", 202)
    await loop.run_in_executor(None, wait_gone, plane, server["id"])
    # Billed once whatever the crash: one span of its plan, one of its address, both ended
    # by the deprovisioning (the ledger outlives the row).
    spans = await spans_of(db, server["id"])
    held = [(s.resource, s.item) for s in spans]
    assert held == [("server", ready["plan"]), ("ip", ready["ipv4"])], held
    assert all(s.ended_at is not None for s in spans)


async def test_a_control_plane_killed_while_booting_polls_on_after_restart(
    plane_factory: PlaneFactory, db: Database, openbao: DevOpenBao
) -> None:
    """Booting only polls the provider; a Hostwinds VPS that takes a while to come up is
    polled on by the restarted control plane, and never ordered twice."""
    kv = hvac.Client(url=openbao.url, token=openbao.token).secrets.kv.v2
    # Loopback "VPSs": the install over SSH that follows booting connects there, not out.
    with hostwinds_double(api_key="hwk-boot", create_delay=4.0, addresses="127.0.52.0/24") as api:
        account = {"api_key": "hwk-boot", "template": "debian-12", "regions": "1=Seattle"}
        kv.create_or_update_secret(
            path="providers/hostwinds",
            mount_point="mailfleet",
            secret={**account, "base_url": api.url},
        )
        try:
            plane = plane_factory(
                MAILFLEET_PROVISION_POLL_SECONDS="0.2", MAILFLEET_PROVISION_LEASE_SECONDS="2"
            )
            tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": f"t-{time.time_ns()}"})
            server = order(plane, tenant["id"], "hw1", provider="hostwinds", region="1", plan="11")
            loop = asyncio.get_running_loop()

            def booting() -> bool:
                future = asyncio.run_coroutine_threadsafe(server_row(db, server["id"]), loop)
                return bool(future.result(10)["state"] == "booting")

            await loop.run_in_executor(None, freeze_when, plane, booting)
            assert len(api.instances) == 1
            plane.start()
            after = await loop.run_in_executor(
                None, wait_state, plane, server["id"], "installing_agent"
            )
            assert after["instance_id"] == str(next(iter(api.instances)))
            assert len(api.calls_of("add_instance")) == 1 and len(api.instances) == 1
            plane.api("DELETE", f"/api/v1/servers/{server['id']}", 202)
            await loop.run_in_executor(None, wait_gone, plane, server["id"])
            assert api.instances == {}
        finally:
            kv.delete_metadata_and_all_versions(path="providers/hostwinds", mount_point="mailfleet")


def test_mailu_is_installed_with_secrets_from_vault_on_the_vps_own_engine(
    local_net: LocalNet, plane_factory: PlaneFactory, openbao: DevOpenBao, tmp_path: Path
) -> None:
    """Each local VPS runs its own dockerd inside its namespace, given MailU's stand-in
    images; the real agent installs MailU on it, bound to the VPS's address. Its first
    install meets a taken SMTP port and fails the step for real; a retry then succeeds."""
    reason = engine_unavailable()
    if reason:
        pytest.skip(reason)
    plane = plane_factory(
        **local_net.settings(),
        MAILFLEET_LOCAL_PROVIDER_DOCKER="1",
        MAILFLEET_LOCAL_PROVIDER_DOCKER_IMAGES=str(stand_in_archive()),
    )
    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": f"t-{time.time_ns()}"})
    mail = {"mail_stack": "mailu", "mail_hostname": "MX1.bücher.example"}
    server = order(plane, tenant["id"], "mail1", **mail)
    assert server["mail_hostname"] == "mx1.xn--bcher-kva.example"  # IDNA, not refused

    # Something on the VPS already holds its SMTP port: the start fails, for real.
    booted = plane.wait_until(
        f"/api/v1/servers/{server['id']}", lambda s: bool(s["ipv4"] and s["instance_id"]), 60
    )
    (record,) = [r for r in local_net.instances() if r["id"] == booted["instance_id"]]

    async def hold_port() -> socket.socket:
        listener = socket.socket()
        listener.bind((booted["ipv4"], 25))
        listener.listen()
        return listener

    listener = run_in_namespace(record["namespace"], hold_port)
    try:
        failed = wait_state(plane, server["id"], "failed", timeout=150)
    finally:
        listener.close()
    assert failed["failed_step"] == "installing_mail"
    assert f"{booted['ipv4']}:25" in failed["failure_reason"]
    mailu = local_net.state_dir / booted["instance_id"] / "rootfs" / "mailu"
    assert not (mailu / "mailu.env").exists()  # nothing half-installed left behind
    plane.api("POST", f"/api/v1/servers/{server['id']}/retry", 200)
    ready = wait_state(plane, server["id"], "ready", timeout=150)
    events = plane.api("GET", f"/api/v1/servers/{server['id']}/events")["items"]
    steps = [(e["state"], e["message"]) for e in events if e["kind"] == "state"]
    assert [state for state, _ in steps][-4:] == ["installing_mail", "dns", "tls", "ready"]
    # No DNS provider serves the mail host's zone yet: both steps say so and move on.
    assert "no domain of this server publishes" in steps[-2][1]
    # Reverse DNS went through the VPS provider, to the mail host.
    (record,) = [r for r in local_net.instances() if r["id"] == ready["instance_id"]]
    assert record["reverse_dns"] == {ready["ipv4"]: "mx1.xn--bcher-kva.example"}
    assert f"PTR {ready['ipv4']} → mx1.xn--bcher-kva.example" in steps[-2][1]
    assert "certificate not issued: no DNS provider publishes the zone" in steps[-1][1]
    # MailU's SMTP port answers on the VPS's address, from the VPS's own engine.
    with socket.create_connection((ready["ipv4"], 25), timeout=10) as smtp:
        assert smtp.recv(100).startswith(b"220 ")

    secrets = vault_secret(openbao, f"vps/{tenant['id']}/{server['id']}/mailu")
    assert secrets is not None and len(secrets["api_token"]) >= 32
    env = (mailu / "mailu.env").read_text()
    assert (mailu / "mailu.env").stat().st_mode & 0o777 == 0o600
    assert f"API_TOKEN={secrets['api_token']}" in env
    assert "HOSTNAMES=mx1.xn--bcher-kva.example" in env and "DOMAIN=xn--bcher-kva.example" in env
    assert f"{ready['ipv4']}:25:25" in (mailu / "docker-compose.yml").read_text()
    installs = plane.api("GET", f"/api/v1/servers/{server['id']}/commands")["items"]
    installs = [c for c in installs if c["kind"] == "mailu.install"]
    assert sorted(c["state"] for c in installs) == ["failed", "succeeded"]  # refused, retried
    # What the database holds: a reference only.
    stored = json.dumps([c["payload"] for c in installs])
    assert "secrets_from" in stored and secrets["api_token"] not in stored

    # a domain and a mailbox, created in MailU by the agent through Mailu's REST API (the
    # stand-in admin forwards it to the API double, which keeps MailU's data directory)
    api = contextlib.ExitStack()
    api_state = api.enter_context(api_double(record["namespace"], mailu))

    def mailu_state() -> dict[str, Any]:
        return dict(json.loads(api_state.read_text())) if api_state.exists() else {}

    domain = plane.api(
        "POST", "/api/v1/domains", 201, json={"name": "bücher.example", "server_id": server["id"]}
    )
    plane.wait_until(f"/api/v1/domains/{domain['id']}", lambda d: d["state"] == "active", 30)
    assert "xn--bcher-kva.example" in mailu_state()["domains"]
    selector = domain["dkim_selector"]
    dkim = vault_secret(openbao, f"dkim/xn--bcher-kva.example/{selector}")
    assert dkim is not None and dkim["public_key"] in domain["dkim_records"][0]["value"]
    key_file = mailu / "dkim" / f"bücher.example.{selector}.key"  # where Mailu's admin reads it
    assert key_file.read_text() == dkim["private_key"]
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert f"DKIM_SELECTOR={selector}" in (mailu / "mailu.env").read_text()
    boxes = f"/api/v1/domains/{domain['id']}/mailboxes"
    box = plane.api("POST", boxes, 201, json={"local_part": "sales"})
    plane.wait_until(f"{boxes}/{box['id']}", lambda m: m["state"] == "active", 30)
    login = plane.api("POST", f"{boxes}/{box['id']}/credentials", 201)
    assert mailu_state()["users"][box["address"]]["raw_password"] == login["password"]
    plane.api("POST", f"{boxes}/{box['id']}/credentials", 409)
    plane.api("POST", f"{boxes}/{box['id']}/credentials/rotate", 200)
    plane.wait_until(f"{boxes}/{box['id']}", lambda m: m["state"] == "active", 30)
    fresh = plane.api("POST", f"{boxes}/{box['id']}/credentials", 201)
    assert fresh["password"] != login["password"]
    assert mailu_state()["users"][box["address"]]["raw_password"] == fresh["password"]

    api.close()

    problem = order(plane, tenant["id"], "mail3", 422, mail_stack="mailu")
    assert problem["errors"][0]["field"] == "body.mail_hostname"
    plane.api("DELETE", f"/api/v1/servers/{server['id']}", 202)
    wait_gone(plane, server["id"])
    assert vault_secret(openbao, f"vps/{tenant['id']}/{server['id']}/mailu") is None


def test_an_agent_killed_mid_install_is_restarted_and_the_install_finishes(
    local_net: LocalNet, plane_factory: PlaneFactory, tmp_path: Path
) -> None:
    reason = engine_unavailable()
    if reason:
        pytest.skip(reason)
    plane = plane_factory(
        **local_net.settings(),
        MAILFLEET_LOCAL_PROVIDER_DOCKER="1",
        MAILFLEET_LOCAL_PROVIDER_DOCKER_IMAGES=str(stand_in_archive()),
    )
    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": f"t-{time.time_ns()}"})
    server = order(plane, tenant["id"], "k9", mail_stack="mailu", mail_hostname="mx.k9.example")
    commands = f"/api/v1/servers/{server['id']}/commands"
    deadline = time.monotonic() + 60
    while not any(
        c["kind"] == "mailu.install" and "starting services" in c["progress_message"]
        for c in plane.api("GET", commands)["items"]
    ):
        assert time.monotonic() < deadline, "the install never reached Compose's start"
        time.sleep(0.05)
    (record,) = local_net.instances()
    agents = [
        pid
        for pid in namespace_pids(record["namespace"])
        if b"mailfleet-agent" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(agents) == 1
    os.kill(agents[0], signal.SIGKILL)  # while Compose starts MailU's containers

    # what systemd's Restart=always does on a real VPS (agent.toml names the VPS's engine)
    rootfs = local_net.state_dir / record["id"] / "rootfs"
    restarted = subprocess.Popen(
        ["nsenter", f"--net=/var/run/netns/{record['namespace']}",
         str(BIN / "mailfleet-agent"), "run", "--root", str(rootfs)],
        env={"PATH": "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_state(plane, server["id"], "ready", timeout=150)
        installs = [c for c in plane.api("GET", commands)["items"] if c["kind"] == "mailu.install"]
        assert [c["state"] for c in installs] == ["failed", "succeeded"]
        assert installs[0]["error"].startswith("interrupted")
        mailu = rootfs / "mailu"
        assert (mailu / "mailu.env").stat().st_mode & 0o777 == 0o600
        assert not list(mailu.glob("*.tmp"))  # no half-written file left behind
        plane.api("DELETE", f"/api/v1/servers/{server['id']}", 202)
        wait_gone(plane, server["id"])
    finally:
        restarted.kill()
        restarted.wait(10)
