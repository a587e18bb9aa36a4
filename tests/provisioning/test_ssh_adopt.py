"""Adopting a machine a customer already has (issue 20): ``"provider": "ssh"``.

The customer's machine is a local VPS the test makes itself (a network namespace running a
real OpenSSH ``sshd`` that authorizes the customer's key); a real ``mailfleet serve`` adopts
it over SSH and follows it to ``ready``. The plane offers the local provider only for its
bridge (its gateway listens there, where agents in namespaces reach it) and starts the agent
already on this host (``MAILFLEET_PREINSTALLED_AGENT``), as a local VPS has no route out for
pip. One test walks the whole of it (one plane, two machines, their waits overlapping),
then backs the first up and recovers it onto a third machine of the customer's, adopted by
the recovery itself; retiring the old server forgets it and leaves its machine running.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_plane.cli import in_cli_terms
from control_plane.provisioning import ssh_install
from control_plane.provisioning.ssh import login_path, new_key_pair
from control_plane.vault.client import Vault
from tests.e2e.conftest import PlaneFactory
from tests.e2e.conftest import local_net as local_net  # the fixtures, used here too
from tests.e2e.conftest import plane_factory as plane_factory
from tests.e2e.local import LocalNet, wait_gone, wait_state
from tests.provisioning.machines import Machines, remote_agents_env, sshd_running
from tests.provisioning.machines import machines as machines  # the fixture, used here
from tests.support.cli_runner import invoke_cli, invoke_cli_async
from tests.support.ports import free_port
from tests.support.processes import run_cli
from tests.support.stack import ControlPlane

pytestmark = pytest.mark.postgres_only


def tenant_with_key(plane: ControlPlane, name: str) -> tuple[str, httpx.Client]:
    """A tenant and an HTTP client with its own (tenant) API key."""
    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": f"{name}-{time.time_ns()}"})
    key = plane.api(
        "POST", "/api/v1/api-keys", 201, json={"scope": "tenant", "tenant_id": tenant["id"]}
    )
    client = httpx.Client(
        base_url=plane.url, headers={"Authorization": f"Bearer {key['key']}"}, timeout=30
    )
    return tenant["id"], client


def problem_field(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    return str(response.json()["errors"][0]["field"])


def key_file(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.touch(mode=0o600)
    path.write_text(text)
    return path


async def test_adopted_machines_reach_ready_over_ssh_and_one_is_recovered_onto_another(
    local_net: LocalNet,
    plane_factory: PlaneFactory,
    machines: Machines,
    vault: Vault,
    tmp_path: Path,
) -> None:
    plane = plane_factory(**remote_agents_env(local_net), MAILFLEET_PERIODIC_SECONDS="0.5")
    tenant_id, owner = tenant_with_key(plane, "owner")
    _, stranger = tenant_with_key(plane, "stranger")
    customer = new_key_pair("customer@laptop")
    first = await machines.make("customer-1", customer.public_key)
    second = await machines.make("customer-2", customer.public_key)
    address = first.ipv4[0]
    body = {
        "name": "adopted1",
        "provider": "ssh",
        "address": address,
        "ssh_private_key": customer.private_key,
        "mail_stack": "none",
    }

    # 1. Bad input: a 422 naming the field, and nothing written.
    encrypted = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
        .decode()
    )
    refusals: list[tuple[dict[str, Any], str, str]] = [
        ({"address": None}, "body.address", "address is required"),
        ({"address": "127.0.0.1"}, "body.address", "127.0.0.1 is not an address"),
        ({"address": "mx.example.com"}, "body.address", "not an IP address"),
        ({"ssh_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"}, "body.ssh_private_key",
         "not a private key in OpenSSH or PEM form"),
        ({"ssh_private_key": encrypted}, "body.ssh_private_key", "without its passphrase"),
        ({"ssh_password": "hunter2"}, "body.ssh_private_key", "exactly one of"),
        ({"ssh_private_key": None}, "body.ssh_private_key", "exactly one of"),
        ({"region": "local"}, "body.region", "an adopted server takes no region"),
        ({"provider": "local", "region": "local", "plan": "local-small"}, "body.address",
         "address is only for adopting a machine"),
    ]  # fmt: skip
    for change, field_name, words in refusals:
        sent = {k: v for k, v in {**body, **change}.items() if v is not None}
        response = owner.post("/api/v1/servers", json=sent)
        assert problem_field(response) == field_name, (change, response.text)
        assert words in response.json()["detail"], response.text
        assert "PRIVATE KEY" not in response.text  # a refusal never echoes the key
    assert owner.get("/api/v1/servers").json()["items"] == []

    # 2. The second machine, adopted through the API with an old key: its install fails at
    # once (meanwhile the CLI adopts the first).
    old_key = new_key_pair("an old key")
    wrong = {**body, "name": "adopted2", "address": second.ipv4[0]}
    response = owner.post("/api/v1/servers", json={**wrong, "ssh_private_key": old_key.private_key})
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "installing_agent" and "PRIVATE KEY" not in response.text
    second_id = response.json()["id"]
    twice = owner.post("/api/v1/servers", json={**wrong, "name": "again"})
    assert twice.status_code == 409 and twice.json()["errors"][0]["field"] == "body.address"

    # 3. The CLI adopts the first (the key from a file, never argv) and follows it to ready.
    adopted = run_cli(
        "server", "adopt", "adopted1", "--address", address, "--tenant", tenant_id,
        "--ssh-key", str(key_file(tmp_path, "id_ed25519", customer.private_key)),
        "--mail-stack", "none", "--wait", "--timeout", "60", env=plane.env,
    )  # fmt: skip
    assert adopted.returncode == 0, adopted.stderr
    server_id = adopted.stdout.strip().splitlines()[-1]
    assert "installing_agent" in adopted.stderr and "ready" in adopted.stderr  # its progress
    server = wait_state(plane, server_id, "ready", timeout=5)
    assert server["provider"] == "ssh" and server["ipv4"] == address
    assert server["instance_id"] is None and server["plan"] is None  # nothing rented
    assert server["ssh_public_key"] == customer.public_key.rsplit(" ", 1)[0]
    assert server["ssh_host_key"] == machines.host_key(first)
    assert server["status"] == "online"
    events = plane.api("GET", f"/api/v1/servers/{server_id}/events")["items"]
    assert [e["state"] for e in events if e["kind"] == "state"] == [
        "installing_agent",
        "enrolling",
        "ready",
    ]
    assert events[0]["message"] == (
        f"adopted: the machine at {address}; installing its agent over SSH "
        "(root, key kept in Vault)"
    )
    assert any(e["message"].startswith("mailfleet-agent started (pid ") for e in events)
    stored = await vault.get(login_path(uuid.UUID(tenant_id), uuid.UUID(server_id)))
    assert stored is not None and stored["private_key"] == customer.private_key
    # The credential is in Vault only: no answer, event or log line of the plane has it.
    secret_line = customer.private_key.splitlines()[1]
    seen = [owner.get(f"/api/v1/servers/{server_id}").text, str(events), *plane.output()]
    assert not [text for text in seen if secret_line in text or "PRIVATE KEY" in text]

    # 4. The second failed with the reason; a new credential (by the CLI) installs it.
    failed = wait_state(plane, second_id, "failed", timeout=10)
    assert failed["failed_step"] == "installing_agent" and failed["ssh_host_key"] is None
    assert failed["failure_reason"] == (
        f"root@{second.ipv4[0]}:22 refused the server's SSH key; "
        "replace the credential (PUT …/ssh-credential)"
    )
    path = f"/api/v1/servers/{second_id}/ssh-credential"
    assert problem_field(owner.put(path, json={})) == "body.ssh_private_key"
    manual = owner.post(
        "/api/v1/servers", json={"name": "hand-made", "provider": "manual", "mail_stack": "none"}
    ).json()
    not_adopted = f"/api/v1/servers/{manual['id']}/ssh-credential"
    assert owner.put(not_adopted, json={"ssh_password": "x"}).status_code == 409
    fixed = await invoke_cli_async(
        "server", "ssh-credential", second_id, "--ssh-key", str(tmp_path / "id_ed25519"),
        "--wait", "--timeout", "60", env=plane.env,
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == "SSH credential replaced; the server is installing_agent"
    host_key = machines.host_key(second)
    assert wait_state(plane, second_id, "ready", timeout=5)["ssh_host_key"] == host_key

    # 5. After a legitimate reinstall an admin clears the pin (audited; CLI and API alike).
    fingerprint = asyncssh.import_public_key(host_key).get_fingerprint()
    cleared = await invoke_cli_async("server", "clear-host-key", second_id, env=plane.env)
    assert cleared.returncode == 0 and cleared.stdout.strip() == "SSH host key pin cleared"
    assert plane.api("GET", f"/api/v1/servers/{second_id}")["ssh_host_key"] is None
    plane.api("DELETE", f"/api/v1/servers/{second_id}/ssh-host-key", 409)  # none pinned now
    assert owner.delete(f"/api/v1/servers/{second_id}/ssh-host-key").status_code == 403
    events = plane.api("GET", f"/api/v1/servers/{second_id}/events")["items"]
    assert [e["message"] for e in events if e["kind"] == "note"] == [
        "SSH credential replaced",
        f"SSH host key pin {fingerprint} cleared; the next login pins anew",
    ]
    audit = plane.api("GET", "/api/v1/audit-events", params={"object_id": second_id})["items"]
    done = [(a["actor_kind"], a["action"], a["succeeded"]) for a in audit]
    assert ("cli", "server.clear_host_key", True) in done, done
    assert [a for a in audit if "ssh-host-key" in a["request"] and not a["succeeded"]], done

    # 6. Another tenant's key: 404 on every route of an adopted server.
    calls: list[tuple[str, str, dict[str, str] | None]] = [
        ("GET", f"/api/v1/servers/{server_id}", None),
        ("GET", f"/api/v1/servers/{server_id}/events", None),
        ("POST", f"/api/v1/servers/{server_id}/retry", None),
        ("PUT", f"/api/v1/servers/{server_id}/ssh-credential", {"ssh_password": "another"}),
        ("DELETE", f"/api/v1/servers/{server_id}", None),
    ]
    for method, where, payload in calls:
        assert stranger.request(method, where, json=payload).status_code == 404, (method, where)

    # 7. Recovered onto another machine of the customer's (adopted over SSH, the agent
    # installed there, the backup restored); the old server is retired, which forgets it:
    # its machine is the customer's and is left running.
    third = await machines.make("customer-3", customer.public_key)
    data = machines.root(first) / "srv" / "data"
    data.mkdir(parents=True)
    (data / "keep.txt").write_text("the customer's data\n")
    policy = {"repository_url": str(tmp_path / "repo"), "paths": ["/srv/data"]}
    assert owner.put(f"/api/v1/servers/{server_id}/backup-policy", json=policy).is_success
    plane.wait_until(f"/api/v1/servers/{server_id}/backups", lambda b: len(b["snapshots"]) >= 1, 60)
    recover = f"/api/v1/servers/{server_id}/recover"
    assert problem_field(owner.post(recover, json={})) == "body.address"
    onto = {"address": third.ipv4[0], "ssh_private_key": customer.private_key}
    started = owner.post(recover, json=onto)
    assert started.status_code == 202, started.text
    new_id = started.json()["new_server_id"]
    done = plane.wait_until(
        f"/api/v1/servers/{new_id}/recovery", lambda r: r["state"] in ("done", "failed"), 60
    )
    assert done["state"] == "done", done
    recovered = plane.api("GET", f"/api/v1/servers/{new_id}")
    assert (recovered["provider"], recovered["ipv4"]) == ("ssh", third.ipv4[0])
    assert recovered["ssh_host_key"] == machines.host_key(third)
    restored = machines.root(third) / "srv" / "data" / "keep.txt"
    assert restored.read_text() == "the customer's data\n"
    wait_gone(plane, server_id, timeout=30)
    assert await vault.get(login_path(uuid.UUID(tenant_id), uuid.UUID(server_id))) is None
    assert (await machines.provider.get(first.id)).status == "running"
    assert sshd_running((await machines.provider.describe(first.id)).namespace)
    assert owner.delete(f"/api/v1/servers/{new_id}").status_code == 202
    wait_gone(plane, new_id, timeout=30)
    owner.close()
    stranger.close()


def test_the_cli_takes_a_secret_from_a_file_or_a_prompt_never_from_argv(tmp_path: Path) -> None:
    """Exactly one credential source, read before anything else (in-process: no plane, so
    a command that got its secret stops at the missing database, exit 2)."""
    env = {"MAILFLEET_HOME": str(tmp_path)}
    common = ["server", "adopt", "m", "--address", "192.168.7.7", "--tenant", str(uuid.uuid4())]
    both = invoke_cli(*common, "--ssh-key", "/dev/null", "--ssh-password", env=env)
    assert (both.returncode, both.stderr.strip()) == (
        2,
        "error: give exactly one of --ssh-key, --ssh-password-file or --ssh-password",
    )
    argv = invoke_cli(*common, "--ssh-password", "hunter2", env=env)
    assert argv.returncode == 2  # a flag, not a value: the secret is never on the command line
    prompted = invoke_cli(*common, "--ssh-password", env=env, stdin="hunter2\n")
    assert "root's SSH password:" in prompted.stdout and "hunter2" not in prompted.stdout
    assert prompted.returncode == 2 and "no MailFleet database" in prompted.stderr
    piped = invoke_cli(*common, "--ssh-password-file", "-", env=env, stdin="hunter2\n")
    assert piped.returncode == 2 and "no MailFleet database" in piped.stderr
    missing = invoke_cli(*common, "--ssh-key", str(tmp_path / "absent"), env=env)
    assert missing.returncode == 2 and "--ssh-key: cannot read" in missing.stderr
    # What the API refuses is said in the CLI's words (one line, exit 2: run_async).
    refused = in_cli_terms(
        "ssh_private_key: not a private key in OpenSSH or PEM form", "body.ssh_private_key"
    )
    assert refused == "--ssh-key: not a private key in OpenSSH or PEM form"


async def test_a_password_logs_in_where_the_server_asks_for_one(tmp_path: Path) -> None:
    """The install's login by password (password and keyboard-interactive), against an
    asyncssh SSH server on loopback: OpenSSH's would check the host's own root password."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return username == "root" and password == "s3cret pass"

    port = free_port()
    listener = await asyncssh.create_server(
        Server, "127.0.0.1", port, server_host_keys=[host_key], process_factory=_echo
    )
    pinned: list[str] = []

    async def pin(key: str) -> None:
        pinned.append(key)

    try:
        good = ssh_install.Target("127.0.0.1", None, None, port=port, password="s3cret pass")
        async with await ssh_install._connect(good, pin) as conn:
            result = await conn.run("whoami", check=True)
        assert result.stdout == "root\n"
        assert pinned == [ssh_install.host_key_line(host_key)]
        bad = ssh_install.Target("127.0.0.1", None, pinned[0], port=port, password="guess")
        with pytest.raises(ssh_install.CredentialRefused) as refused:
            await ssh_install._connect(bad, pin)
        assert refused.value.detail == f"root@127.0.0.1:{port} refused the server's SSH password"
    finally:
        listener.close()
        await listener.wait_closed()


def _echo(process: asyncssh.SSHServerProcess[str]) -> None:
    process.stdout.write(f"{process.get_extra_info('username')}\n")
    process.exit(0)
