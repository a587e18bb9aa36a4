"""Backup policies, runs, restores and the schedule through the API and the periodic jobs;
the agent side (real restic) is tested in tests/agent/test_backup.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from control_plane.backups import recovery, schedule, service, workspace
from control_plane.backups.models import BackupPolicy
from control_plane.backups.schemas import PolicyIn
from control_plane.commands import secrets
from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.db.engine import Database
from control_plane.provisioning.models import ServerEvent
from control_plane.provisioning.ssh import delete_server_secrets, login_path, new_key_pair
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from tests.conftest import MakeTenant, TenantHandle


async def ready_server(client: httpx.AsyncClient, tenant: TenantHandle, db: Database) -> str:
    response = await client.post(
        "/api/v1/servers",
        json={"name": f"bk-{uuid.uuid4().hex[:6]}", "mail_stack": "none"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    server_id = str(response.json()["id"])
    async with db.session() as session:
        server = await session.get(Server, uuid.UUID(server_id))
        assert server is not None
        server.state = "ready"
    return server_id


async def server_with_policy(
    client: httpx.AsyncClient, tenant: TenantHandle, db: Database
) -> tuple[str, str]:
    """A ready server backing up to a local repository: its id and API base path."""
    server_id = await ready_server(client, tenant, db)
    base = f"/api/v1/servers/{server_id}"
    put = await client.put(
        f"{base}/backup-policy", json={"repository_url": "/srv/r"}, headers=tenant.headers
    )
    assert put.status_code == 200, put.text
    return server_id, base


async def report(
    db: Database, server_id: str, command_id: str, result: dict[str, Any] | None, error: str = ""
) -> None:
    """What the agent would send back for a command."""
    async with db.session() as session:
        await commands.record_result(
            session,
            uuid.UUID(server_id),
            uuid.UUID(command_id),
            "succeeded" if result is not None else "failed",
            json.dumps(result) if result is not None else None,
            error or None,
        )


def backup_result(short_id: str, at: datetime) -> dict[str, Any]:
    return {
        "short_id": short_id,
        "time": at.isoformat(),
        "root": "/",
        "paths": ["/mailu/mail"],
        "data_added": 1000,
        "total_bytes_processed": 5000,
        "total_files_processed": 12,
        "duration_seconds": 1.5,
        "offsite_copied": True,
    }


async def test_a_policy_keeps_its_secrets_in_vault_and_refuses_bad_input(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault
) -> None:
    tenant = await make_tenant()
    server_id = await ready_server(client, tenant, db)
    url = f"/api/v1/servers/{server_id}/backup-policy"
    assert (await client.get(url, headers=tenant.headers)).status_code == 404
    for body, field in (
        ({"repository_url": "relative/path"}, "body.repository_url"),
        ({"repository_url": "/r", "offsite_url": "/r"}, "body"),
        ({"repository_url": "/r", "repository_env": {"lower": "x"}}, "body.repository_env.lower"),
        ({"repository_url": "/r", "repository_env": {"PATH": "/tmp"}}, "body.repository_env.PATH"),
        (
            {"repository_url": "/r", "offsite_url": "/o", "offsite_env": {"LD_PRELOAD": "/x.so"}},
            "body.offsite_env.LD_PRELOAD",
        ),
        (
            {"repository_url": "/r", "repository_env": {"AWS_SHARED_CREDENTIALS_FILE": "/x"}},
            "body.repository_env.AWS_SHARED_CREDENTIALS_FILE",
        ),
        ({"repository_url": "sftp:-oProxyCommand=sh:/r"}, "body.repository_url"),
        ({"repository_url": "rclone::sftp,ssh=sh:/r"}, "body.repository_url"),
        ({"repository_url": "/etc/r"}, "body.repository_url"),
        ({"repository_url": "/r", "paths": ["/var/lib/mailfleet-agent/key.pem"]}, "body.paths"),
        ({"repository_url": "/r", "interval_seconds": 10}, "body.interval_seconds"),
        (
            {
                "repository_url": "/r",
                "retention": {"hourly": 0, "daily": 0, "weekly": 0, "monthly": 0},
            },
            "body.retention",
        ),
        ({"repository_url": "/r", "paths": ["mail"]}, "body.paths"),
    ):
        response = await client.put(url, json=body, headers=tenant.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["field"] == field, response.json()
    assert (await client.get(url, headers=tenant.headers)).status_code == 404  # nothing kept

    body = {
        "repository_url": "s3:https://s3.example.net/b/mx",
        "offsite_url": "/srv/offsite",
        "repository_env": {"AWS_ACCESS_KEY_ID": "AKIA-test", "AWS_SECRET_ACCESS_KEY": "s3cr3t"},
    }
    created = await client.put(url, json=body, headers=tenant.headers)
    assert created.status_code == 200, created.text
    shown = created.json()
    assert shown["env_names"] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert shown["retention"] == {
        "hourly": 24,
        "daily": 30,
        "weekly": 12,
        "monthly": 12,
        "yearly": 0,
    }
    stored = await vault.get(f"vps/{tenant.id}/{server_id}/backup")
    assert stored is not None and len(stored["password"]) >= 32
    assert "s3cr3t" not in created.text and stored["password"] not in created.text
    again = await client.put(url, json={**body, "repository_env": None}, headers=tenant.headers)
    assert again.status_code == 200
    kept = await vault.get(f"vps/{tenant.id}/{server_id}/backup")
    assert kept is not None and kept["password"] == stored["password"]
    assert kept["env"] == stored["env"]  # credentials stay unless replaced

    run = await client.post(f"/api/v1/servers/{server_id}/backups", headers=tenant.headers)
    assert run.status_code == 202 and run.json()["kind"] == "backup.run"
    payload = run.json()["payload"]
    assert payload["secrets_from"]["path"] == f"vps/{tenant.id}/{server_id}/backup"
    assert payload["offsite"] == {"url": "/srv/offsite"} and "s3cr3t" not in json.dumps(payload)
    busy = await client.post(f"/api/v1/servers/{server_id}/backups", headers=tenant.headers)
    assert busy.status_code == 409 and "backup.run" in busy.json()["detail"]
    await vault.delete(f"vps/{tenant.id}/{server_id}/backup")


async def test_runs_are_absorbed_and_restores_pick_the_snapshot_by_time(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault
) -> None:
    tenant = await make_tenant()
    server_id, base = await server_with_policy(client, tenant, db)
    listed = (await client.get(f"{base}/backups", headers=tenant.headers)).json()
    assert [f["code"] for f in listed["findings"]] == ["backup.stale"]

    t1 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    for short_id, at in (("aaaa1111", t1), ("bbbb2222", t1 + timedelta(hours=3))):
        run = (await client.post(f"{base}/backups", headers=tenant.headers)).json()
        await report(db, server_id, run["id"], backup_result(short_id, at))
    failed = (await client.post(f"{base}/backups", headers=tenant.headers)).json()
    await report(db, server_id, failed["id"], None, "restic backup: wrong repository password")
    listed = (await client.get(f"{base}/backups", headers=tenant.headers)).json()
    assert [s["short_id"] for s in listed["snapshots"]] == ["bbbb2222", "aaaa1111"]
    assert listed["policy"]["last_error"] == "restic backup: wrong repository password"
    codes = {f["code"] for f in listed["findings"]}
    assert "backup.failed" in codes

    between = (t1 + timedelta(hours=2)).isoformat()
    restore = await client.post(
        f"{base}/restore", json={"at": between, "mailbox": "A@x.example"}, headers=tenant.headers
    )
    assert restore.status_code == 202, restore.text
    assert restore.json()["payload"]["snapshot"] == "aaaa1111"
    assert restore.json()["payload"]["include"] == ["/mailu/mail/a@x.example"]
    await report(db, server_id, restore.json()["id"], {"restore_id": "0123456789abcdef"})
    early = await client.post(
        f"{base}/restore", json={"at": "2020-01-01T00:00:00Z"}, headers=tenant.headers
    )
    assert early.status_code == 422 and early.json()["errors"][0]["field"] == "body.at"
    for body, field in (
        ({"target": "relative"}, "body.target"),
        ({"target": "/etc/systemd/system/x.d"}, "body.target"),
        ({"target": "/"}, "body.target"),
        ({"mailbox": "*@x.example"}, "body.mailbox"),
        ({"mailbox": "../@x.example"}, "body.mailbox"),
    ):
        bad = await client.post(f"{base}/restore", json=body, headers=tenant.headers)
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == field, bad.text
    body = {"restore_id": "0123456789abcdef", "keep": "restored"}
    finish = await client.post(f"{base}/restore/finish", json=body, headers=tenant.headers)
    assert finish.status_code == 202 and finish.json()["payload"]["keep"] == "restored"
    await vault.delete(f"vps/{tenant.id}/{server_id}/backup")


async def test_the_schedule_runs_one_job_at_a_time_and_rotates_checks(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault
) -> None:
    tenant = await make_tenant()
    server_id, base = await server_with_policy(client, tenant, db)

    async def kinds() -> list[str]:
        response = await client.get(f"{base}/commands", headers=tenant.headers)
        return [c["kind"] for c in response.json()["items"]]

    async def tick() -> list[str]:
        async with db.session() as session:
            await schedule.absorb_finished(session)
            await schedule.queue_due(session)
        return await kinds()

    assert await tick() == ["backup.run"]  # a new policy backs up at once
    assert await tick() == ["backup.run"]  # not twice while it runs
    (run,) = (await client.get(f"{base}/commands", headers=tenant.headers)).json()["items"]
    await report(db, server_id, run["id"], backup_result("cccc3333", datetime.now(UTC)))
    async with db.session() as session:
        policy = await session.scalar(
            select(BackupPolicy).where(BackupPolicy.server_id == uuid.UUID(server_id))
        )
        assert policy is not None
        past = datetime.now(UTC) - timedelta(seconds=1)
        policy.next_forget_at = policy.next_check_at = policy.next_drill_at = past
    assert (await tick())[-1] == "backup.forget"
    items = (await client.get(f"{base}/commands", headers=tenant.headers)).json()["items"]
    assert items[-1]["payload"]["keep"]["daily"] == 30
    await report(
        db, server_id, items[-1]["id"], {"kept": [], "removed": ["cccc3333ffff"], "pruned": True}
    )
    assert (await tick())[-1] == "backup.drill"
    items = (await client.get(f"{base}/commands", headers=tenant.headers)).json()["items"]
    assert items[-1]["payload"]["sample"] == 100
    await report(
        db, server_id, items[-1]["id"], None, "restore drill of cccc3333: 1 of 100 files wrong"
    )
    assert (await tick())[-1] == "backup.check"
    items = (await client.get(f"{base}/commands", headers=tenant.headers)).json()["items"]
    assert items[-1]["payload"]["read_data_subset"] == "1/12"
    listed = (await client.get(f"{base}/backups", headers=tenant.headers)).json()
    assert listed["snapshots"] == []  # forgotten
    assert listed["policy"]["last_success_at"] is not None
    assert "backup.drill_failed" in {f["code"] for f in listed["findings"]}
    await vault.delete(f"vps/{tenant.id}/{server_id}/backup")


async def test_recovering_a_mail_server_takes_over_its_secrets_and_domains(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault
) -> None:
    tenant = await make_tenant()
    response = await client.post(
        "/api/v1/servers",
        headers=tenant.headers,
        json={"name": "mx-old", "mail_stack": "mailu", "mail_hostname": "mx.corp.example"},
    )
    old_id = response.json()["id"]
    async with db.session() as session:
        server = await session.get(Server, uuid.UUID(old_id))
        assert server is not None
        server.state, server.ipv4 = "ready", "198.18.0.20"
    base = f"/api/v1/servers/{old_id}"
    plane_domain = await client.post(
        "/api/v1/domains",
        json={"name": f"corp-{uuid.uuid4().hex[:6]}.example", "server_id": old_id},
        headers=tenant.headers,
    )
    await client.put(
        f"{base}/backup-policy", json={"repository_url": "/srv/r"}, headers=tenant.headers
    )
    refused = await client.post(f"{base}/recover", json={}, headers=tenant.headers)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "body.at"
    run = (await client.post(f"{base}/backups", headers=tenant.headers)).json()
    await report(db, old_id, run["id"], backup_result("dddd4444", datetime.now(UTC)))
    await vault.put(
        f"vps/{tenant.id}/{old_id}/mailu",
        {"secret_key": "k", "api_token": "t", "admin_password": "p"},
    )

    started = await client.post(f"{base}/recover", json={}, headers=tenant.headers)
    assert started.status_code == 202, started.text
    new_id = started.json()["new_server_id"]
    assert await vault.get(f"vps/{tenant.id}/{new_id}/mailu") == {
        "secret_key": "k",
        "api_token": "t",
        "admin_password": "p",
    }
    moved = await client.get(f"/api/v1/domains/{plane_domain.json()['id']}", headers=tenant.headers)
    assert moved.json()["server_id"] == new_id
    new_backups = (
        await client.get(f"/api/v1/servers/{new_id}/backups", headers=tenant.headers)
    ).json()
    assert [s["short_id"] for s in new_backups["snapshots"]] == ["dddd4444"]
    assert new_backups["policy"]["enabled"] is False  # no backup over the restore

    async def step() -> dict[str, Any]:
        async with db.session() as session:
            await recovery.advance(session, vault, Settings())
        response = await client.get(f"/api/v1/servers/{new_id}/recovery", headers=tenant.headers)
        return dict(response.json())

    assert (await step())["state"] == "provisioning"
    async with db.session() as session:
        new = await session.get(Server, uuid.UUID(new_id))
        assert new is not None
        new.state, new.ipv4 = "ready", "198.18.0.21"
    assert (await step())["state"] == "restoring"
    for kind, result, state in (
        ("backup.restore", {"restore_id": "0123456789abcdef", "in_place": True}, "finishing"),
        ("backup.restore.finish", {"kept": "restored"}, "reconfiguring"),
        ("mailu.install", {"changed_files": ["docker-compose.yml"]}, "done"),
    ):
        items = (
            await client.get(f"/api/v1/servers/{new_id}/commands", headers=tenant.headers)
        ).json()["items"]
        (command,) = [c for c in items if c["kind"] == kind]
        if kind == "backup.restore":
            assert command["payload"]["snapshot"] == "dddd4444"
        if kind == "mailu.install":
            assert command["payload"]["bind_address"] == "198.18.0.21"
        await report(db, new_id, command["id"], result)
        assert (await step())["state"] == state
    finished = await step()
    assert finished["rto_seconds"] is not None
    old = (await client.get(base, headers=tenant.headers)).json()
    assert old["state"] == "deprovisioning"
    for path in (
        f"vps/{tenant.id}/{new_id}/mailu",
        f"vps/{tenant.id}/{new_id}/backup",
        f"vps/{tenant.id}/{old_id}/mailu",
        f"vps/{tenant.id}/{old_id}/backup",
    ):
        await vault.delete(path)


async def test_a_workspace_policy_reaches_its_servers_each_with_a_repository_of_its_own(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault
) -> None:
    tenant = await make_tenant()
    ws = (
        await client.post("/api/v1/workspaces", json={"name": "acme"}, headers=tenant.headers)
    ).json()
    url = f"/api/v1/workspaces/{ws['id']}/backup-policy"
    shared = await client.put(url, json={"repository_url": "/srv/r/acme"}, headers=tenant.headers)
    assert (
        shared.status_code == 422 and shared.json()["errors"][0]["field"] == "body.repository_url"
    )
    body = {
        "repository_url": "/srv/r/{server_id}",
        "interval_seconds": 1800,
        "repository_env": {"AWS_ACCESS_KEY_ID": "AKIA-SECRET-VALUE-1"},
    }
    put = await client.put(url, json=body, headers=tenant.headers)
    assert put.status_code == 200, put.text
    assert put.json()["env_names"] == ["AWS_ACCESS_KEY_ID"] and "AKIA-SECRET" not in put.text

    servers = []
    for name in ("a", "b"):
        created = await client.post(
            "/api/v1/servers",
            headers=tenant.headers,
            json={
                "name": f"ws-{name}-{uuid.uuid4().hex[:4]}",
                "mail_stack": "none",
                "workspace_id": ws["id"],
            },
        )
        servers.append(created.json()["id"])
    own = servers[1]
    await client.put(
        f"/api/v1/servers/{own}/backup-policy",
        json={"repository_url": "/srv/own"},
        headers=tenant.headers,
    )
    async with db.session() as session:
        for server_id in servers:
            server = await session.get(Server, uuid.UUID(server_id))
            assert server is not None
            server.state = "ready"
    async with db.session() as session:
        assert await workspace.adopt_job(vault)(session) == 1
        assert await workspace.adopt_job(vault)(session) == 0
    first = (
        await client.get(f"/api/v1/servers/{servers[0]}/backup-policy", headers=tenant.headers)
    ).json()
    assert first["repository_url"] == f"/srv/r/{servers[0]}" and first["interval_seconds"] == 1800
    kept = (await client.get(f"/api/v1/servers/{own}/backup-policy", headers=tenant.headers)).json()
    assert kept["repository_url"] == "/srv/own"  # a server's own policy wins

    await client.put(url, json={**body, "interval_seconds": 900}, headers=tenant.headers)
    updated = (
        await client.get(f"/api/v1/servers/{servers[0]}/backup-policy", headers=tenant.headers)
    ).json()
    assert updated["interval_seconds"] == 900
    ws_secret = await vault.get(f"workspace/{tenant.id}/{ws['id']}/backup")
    server_secret = await vault.get(f"vps/{tenant.id}/{servers[0]}/backup")
    assert ws_secret is not None and server_secret is not None
    assert server_secret["password"] == ws_secret["password"]
    assert (await client.delete(url, headers=tenant.headers)).status_code == 204
    still = await client.get(f"/api/v1/servers/{servers[0]}/backup-policy", headers=tenant.headers)
    assert still.status_code == 200
    for server_id in servers:
        await vault.delete(f"vps/{tenant.id}/{server_id}/backup")


async def test_a_password_in_a_repository_url_is_kept_in_vault_and_masked_everywhere_else(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault
) -> None:
    tenant = await make_tenant()
    server_id = await ready_server(client, tenant, db)
    base = f"/api/v1/servers/{server_id}"
    full = "rest:https://mx1:Rest-Pw-1f2e3d@backup.example.net:8000/mx1/"
    offsite = "rest:http://off:Off-Pw-9a8b7c@198.18.0.9:8001/mx1"
    masked = "rest:https://mx1:***@backup.example.net:8000/mx1/"
    body = {"repository_url": full, "offsite_url": offsite}
    put = await client.put(f"{base}/backup-policy", json=body, headers=tenant.headers)
    assert put.status_code == 200, put.text
    assert put.json()["repository_url"] == masked
    assert put.json()["offsite_url"] == "rest:http://off:***@198.18.0.9:8001/mx1"
    run = await client.post(f"{base}/backups", headers=tenant.headers)
    assert run.status_code == 202
    answers = [put.text, run.text]
    for path in ("/backup-policy", "/backups", "/commands", f"/commands/{run.json()['id']}"):
        got = await client.get(f"{base}{path}", headers=tenant.headers)
        assert got.status_code == 200, (path, got.text)
        answers.append(got.text)
    async with db.session() as session:
        row = await session.scalar(
            select(BackupPolicy).where(BackupPolicy.server_id == uuid.UUID(server_id))
        )
        command = await session.get(Command, uuid.UUID(run.json()["id"]))
        assert row is not None and command is not None
        answers += [repr(vars(row)), repr(vars(command))]
        # What the gateway sends the agent: the full URLs, from Vault.
        sent = json.loads(
            await secrets.resolve(vault, row.server_id, row.tenant_id, command.payload)
        )
    for text in answers:
        assert "Rest-Pw-1f2e3d" not in text and "Off-Pw-9a8b7c" not in text, text
    assert sent["repository"]["url"] == full and sent["offsite"]["url"] == offsite
    stored = await vault.get(f"vps/{tenant.id}/{server_id}/backup")
    assert stored is not None

    # What a client read back, PUT again: the stored password stays (and so the repository).
    again = await client.put(
        f"{base}/backup-policy",
        json=body_of(put.json()) | {"interval_seconds": 900},
        headers=tenant.headers,
    )
    assert again.status_code == 200, again.text
    kept = await vault.get(f"vps/{tenant.id}/{server_id}/backup")
    assert kept is not None and kept["repository_url"] == full
    assert kept["offsite_url"] == offsite and kept["password"] == stored["password"]
    elsewhere = {"repository_url": masked.replace("backup.example", "other.example")}
    refused = await client.put(f"{base}/backup-policy", json=elsewhere, headers=tenant.headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "body.repository_url"
    await vault.delete(f"vps/{tenant.id}/{server_id}/backup")

    # A workspace's template: masked in its answer, in full for each server from Vault.
    ws = (
        await client.post("/api/v1/workspaces", json={"name": "pw"}, headers=tenant.headers)
    ).json()
    template = "rest:https://ws:Ws-Pw-5d6e7f@backup.example.net/{server_id}/"
    url = f"/api/v1/workspaces/{ws['id']}/backup-policy"
    shared = await client.put(url, json={"repository_url": template}, headers=tenant.headers)
    assert shared.status_code == 200, shared.text
    created = await client.post(
        "/api/v1/servers",
        json={"name": f"pw-{uuid.uuid4().hex[:4]}", "mail_stack": "none", "workspace_id": ws["id"]},
        headers=tenant.headers,
    )
    member = created.json()["id"]
    async with db.session() as session:
        server = await session.get(Server, uuid.UUID(member))
        assert server is not None
        server.state = "ready"
    async with db.session() as session:
        assert await workspace.adopt_job(vault)(session) == 1
    inherited = await client.get(f"/api/v1/servers/{member}/backup-policy", headers=tenant.headers)
    shown = (await client.get(url, headers=tenant.headers)).text + shared.text + inherited.text
    assert "Ws-Pw-5d6e7f" not in shown
    assert inherited.json()["repository_url"] == f"rest:https://ws:***@backup.example.net/{member}/"
    member_secret = await vault.get(f"vps/{tenant.id}/{member}/backup")
    assert member_secret is not None
    assert member_secret["repository_url"] == template.replace("{server_id}", member)
    await vault.delete(f"vps/{tenant.id}/{member}/backup")
    await client.delete(url, headers=tenant.headers)


def body_of(shown: dict[str, Any]) -> dict[str, Any]:
    """A policy as read, in the shape a PUT takes."""
    fields = set(PolicyIn.model_fields)
    return {key: value for key, value in shown.items() if key in fields}


async def test_a_check_that_could_not_run_is_unknown_not_a_verdict(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault
) -> None:
    tenant = await make_tenant()
    server_id, base = await server_with_policy(client, tenant, db)

    async def listing() -> dict[str, Any]:
        listed = await client.get(f"{base}/backups", headers=tenant.headers)
        return dict(listed.json())

    async def findings() -> dict[str, dict[str, Any]]:
        return {f["code"]: f for f in (await listing())["findings"]}

    fresh = await findings()  # nothing to judge yet
    assert fresh["backup.stale"]["state"] == "unknown", fresh
    policy_out = (await listing())["policy"]
    assert policy_out["last_check_state"] is None and policy_out["last_drill_state"] is None
    async with db.session() as session:
        policy = await session.scalar(
            select(BackupPolicy).where(BackupPolicy.server_id == uuid.UUID(server_id))
        )
        assert policy is not None
        policy.created_at = datetime.now(UTC) - timedelta(hours=3)
    stale = (await findings())["backup.stale"]  # the policy's hour passed twice: none came
    assert (stale["state"], stale["severity"]) == ("failing", "critical")

    async def settle(kind: str, state: str, error: str | None, verdict: str) -> dict[str, Any]:
        """The finding the settled command raised (None: none); the policy shows ``verdict``
        and the error as restic said it, with no marker in the text."""
        async with db.session() as session:
            server = await session.get(Server, uuid.UUID(server_id))
            policy = await session.scalar(
                select(BackupPolicy).where(BackupPolicy.server_id == uuid.UUID(server_id))
            )
            assert server is not None and policy is not None
            command = await service.queue(session, server, policy, kind)
            await commands.record_result(session, server.id, command.id, state, None, error)
        listed = await listing()
        what = kind.removeprefix("backup.")
        shown = (listed["policy"][f"last_{what}_state"], listed["policy"][f"last_{what}_error"])
        assert shown == (verdict, error), shown
        found = {f["code"]: f for f in listed["findings"]}
        return dict(found.get(f"{kind}_failed") or {})

    for kind, state, error in (
        ("backup.check", "failed", "restic check: wrong repository password"),
        ("backup.check", "failed", "restic check: no restic repository at this location"),
        ("backup.check", "failed", "restic check: the repository is unreachable (timeout)"),
        ("backup.check", "timed_out", "no result within 21600 s"),
        ("backup.drill", "cancelled", "cancelled by the operator"),
        ("backup.drill", "failed", "restic restore: the repository is locked by another restic"
         " process"),
    ):  # fmt: skip
        unknown = await settle(kind, state, error, "unknown")
        assert (unknown["state"], unknown["severity"]) == ("unknown", "warning"), unknown
        assert error in unknown["message"] and "could not run" in unknown["message"]
    for kind, error in (
        ("backup.check", "restic check: Fatal: repository contains errors"),
        ("backup.drill", "restore drill of cccc3333: 1 of 100 files wrong"),
    ):
        bad = await settle(kind, "failed", error, "failed")
        assert (bad["state"], bad["severity"]) == ("failing", "critical"), bad
    for kind in ("backup.check", "backup.drill"):
        assert await settle(kind, "succeeded", None, "ok") == {}  # a pass clears the finding
    await vault.delete(f"vps/{tenant.id}/{server_id}/backup")


async def test_an_adopted_server_is_recovered_onto_a_machine_adopted_over_ssh(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault
) -> None:
    """No provider rents a machine for an adopted server: the recovery takes the address of
    a machine of the customer's and its root credential, and adopts it (the agent installed
    over SSH, as in test_ssh_adopt.py, which recovers onto another machine) before the
    restore. Here it is the old server's own machine, reinstalled: refused while the old
    agent is online there. No provisioning runner runs here, so nothing connects anywhere."""
    tenant, stranger = await make_tenant(), await make_tenant()
    body = {"name": "own-1", "provider": "ssh", "address": "10.20.30.40", "mail_stack": "none"}
    other = {**body, "name": "own-2", "address": "10.20.30.42", "ssh_password": "pw"}
    assert (await client.post("/api/v1/servers", json=other, headers=tenant.headers)).is_success
    response = await client.post(
        "/api/v1/servers", json={**body, "ssh_password": "first pw"}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    old_id = response.json()["id"]
    _, manual_base = await server_with_policy(client, tenant, db)
    async with db.session() as session:
        server = await session.get(Server, uuid.UUID(old_id))
        assert server is not None
        server.state, server.last_heartbeat_at = "ready", datetime.now(UTC)  # online
    base = f"/api/v1/servers/{old_id}"
    await client.put(
        f"{base}/backup-policy", json={"repository_url": "/srv/r"}, headers=tenant.headers
    )
    run = (await client.post(f"{base}/backups", headers=tenant.headers)).json()
    await report(db, old_id, run["id"], backup_result("eeee5555", datetime.now(UTC)))
    key = new_key_pair("customer@laptop")
    onto = {"address": "10.20.30.40", "ssh_private_key": key.private_key}

    async def refused(path: str, payload: dict[str, Any], status: int = 422) -> str:
        answer = await client.post(f"{path}/recover", json=payload, headers=tenant.headers)
        assert answer.status_code == status, answer.text
        error = answer.json()["errors"][0]
        return f"{error['field']}: {error['message']}"

    stolen = await client.post(f"{base}/recover", json=onto, headers=stranger.headers)
    assert stolen.status_code == 404
    assert (await refused(base, {})).startswith(
        "body.address: address is required to recover an adopted server: give the IPv4 "
        "address of another machine of yours to recover onto, with ssh_private_key or "
        "ssh_password for its root"
    )
    assert (await refused(base, {"address": "10.20.30.41"})).startswith("body.ssh_private_key:")
    assert (await refused(base, {**onto, "region": "2"})).startswith("body.region:")
    assert (await refused(base, {**onto, "address": "127.0.0.1"})).startswith("body.address:")
    assert (await refused(base, {**onto, "address": "10.20.30.42"}, 409)) == (
        "body.address: server 'own-2' of this tenant is at 10.20.30.42"
    )
    assert (await refused(base, onto, 409)) == (
        "body.address: server 'own-1' is at 10.20.30.40 and its agent is online there: "
        "recover onto another machine, or onto this one once it is reinstalled (its agent gone)"
    )
    assert (await refused(manual_base, {"ssh_password": "x"})) == (
        "body.ssh_password: ssh_password is only for recovering an adopted server (provider "
        "ssh), not provider manual"
    )
    listed = (await client.get("/api/v1/servers", headers=tenant.headers)).json()["items"]
    assert len(listed) == 3  # nothing written
    async with db.session() as session:
        server = await session.get(Server, uuid.UUID(old_id))
        assert server is not None
        server.last_heartbeat_at = datetime.now(UTC) - timedelta(hours=1)  # the machine died

    started = await client.post(f"{base}/recover", json=onto, headers=tenant.headers)
    assert started.status_code == 202, started.text
    assert "PRIVATE KEY" not in started.text
    new_id = started.json()["new_server_id"]
    new = (await client.get(f"/api/v1/servers/{new_id}", headers=tenant.headers)).json()
    assert (new["provider"], new["ipv4"], new["state"], new["ssh_public_key"]) == (
        "ssh", "10.20.30.40", "installing_agent", " ".join(key.public_key.split()[:2])
    )  # fmt: skip
    assert "PRIVATE KEY" not in json.dumps(new)
    login = await vault.get(login_path(uuid.UUID(tenant.id), uuid.UUID(new_id)))
    assert login is not None and login["private_key"] == key.private_key
    async with db.session() as session:
        await recovery.advance(session, vault, Settings())
        adopted = await session.get(Server, uuid.UUID(new_id))
        assert adopted is not None
        adopted.state = "ready"  # what the install over SSH and the enrollment lead to
    async with db.session() as session:
        await recovery.advance(session, vault, Settings())
    followed = await client.get(f"/api/v1/servers/{new_id}/recovery", headers=tenant.headers)
    assert followed.json()["state"] == "restoring"
    items = (await client.get(f"/api/v1/servers/{new_id}/commands", headers=tenant.headers)).json()
    (restore,) = [c for c in items["items"] if c["kind"] == "backup.restore"]
    assert restore["payload"]["snapshot"] == "eeee5555"
    for server in listed:
        await delete_server_secrets(vault, uuid.UUID(tenant.id), uuid.UUID(server["id"]))
    await delete_server_secrets(vault, uuid.UUID(tenant.id), uuid.UUID(new_id))


async def test_the_job_and_listings_absorbing_at_once_take_each_result_once(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database
) -> None:
    """The periodic job and requests that absorb first (a listing) meet on the same policy:
    each result is folded in once, and neither waits on the other for ever (a deadlock
    between the two was seen under load)."""
    tenant = await make_tenant()
    server_id, base = await server_with_policy(client, tenant, db)
    run = (await client.post(f"{base}/backups", headers=tenant.headers)).json()
    await report(db, server_id, run["id"], backup_result("cccc3333", datetime.now(UTC)))
    listings = [client.get(f"{base}/backups", headers=tenant.headers) for _ in range(3)]
    answers = await asyncio.gather(db.transact(schedule.absorb_finished), *listings)
    assert [a.status_code for a in answers[1:]] == [200, 200, 200]
    assert all([s["short_id"] for s in a.json()["snapshots"]] == ["cccc3333"] for a in answers[1:])
    async with db.session() as session:
        messages = (
            await session.scalars(
                select(ServerEvent.message).where(
                    ServerEvent.server_id == uuid.UUID(server_id), ServerEvent.kind == "backup"
                )
            )
        ).all()
    assert list(messages).count("backup.run succeeded") == 1, messages
