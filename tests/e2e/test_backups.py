"""Backups end to end: a local VPS's agent runs real restic on the schedule and on demand,
and restores a point in time in place through the API."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import PlaneFactory
from tests.e2e.local import LocalNet, order, wait_gone, wait_state
from tests.support.docker_engine import engine_unavailable
from tests.support.mailu_images import stand_in_archive
from tests.support.netns import ip, namespace_pids
from tests.support.processes import run_cli
from tests.support.stack import ControlPlane

pytestmark = pytest.mark.e2e


def wait_snapshots(plane: ControlPlane, server_id: str, count: int) -> list[dict[str, Any]]:
    listed = plane.wait_until(
        f"/api/v1/servers/{server_id}/backups", lambda b: len(b["snapshots"]) >= count, 60
    )
    return list(listed["snapshots"])


def test_scheduled_and_manual_backups_then_an_in_place_restore_and_rollback(
    local_net: LocalNet, plane_factory: PlaneFactory, tmp_path: Path
) -> None:
    plane = plane_factory(**local_net.settings(), MAILFLEET_PERIODIC_SECONDS="0.5")
    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": f"t-{time.time_ns()}"})
    server = wait_state(plane, order(plane, tenant["id"], "bk1")["id"], "ready")
    mailu = local_net.state_dir / server["instance_id"] / "rootfs" / "mailu"
    inbox = mailu / "mail" / "sales@shop.example" / "cur"
    inbox.mkdir(parents=True)
    for n in range(50):
        (inbox / f"{n}.eml").write_text(f"Subject: {n}\n\nbody {n}\n")
    (mailu / "data").mkdir()
    with sqlite3.connect(mailu / "data" / "main.db") as db:
        db.execute("CREATE TABLE user (email TEXT)")
        db.execute("INSERT INTO user VALUES ('sales@shop.example')")

    base = f"/api/v1/servers/{server['id']}"
    policy = {"repository_url": str(tmp_path / "repo"), "offsite_url": str(tmp_path / "offsite")}
    plane.api("PUT", f"{base}/backup-policy", json=policy)
    (first,) = wait_snapshots(plane, server["id"], 1)  # the schedule backs a new policy up
    assert first["offsite_copied"] is True and first["files"] >= 51

    (inbox / "7.eml").write_text("Subject: 7\n\nedited after the first backup\n")
    ran = run_cli("backup", "run", server["id"], "--timeout", "60", env=plane.env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("snapshot ") and "bytes added" in ran.stdout
    assert len(wait_snapshots(plane, server["id"], 2)) == 2
    listed_cli = run_cli("backup", "list", server["id"], env=plane.env)
    assert listed_cli.returncode == 0 and first["short_id"] in listed_cli.stdout
    listed_json = json.loads(
        run_cli("backup", "list", server["id"], "--json", env=plane.env).stdout
    )
    assert first["short_id"] in [snapshot["short_id"] for snapshot in listed_json["snapshots"]]
    for args, code, words in (
        (["--target", "relative/dir"], 2, "--target"),
        (["--at", "2001-01-01T00:00:00Z"], 2, "--at: this server has no snapshot at or before"),
    ):
        refused = run_cli("backup", "restore", server["id"], *args, env=plane.env)
        assert refused.returncode == code and words in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1

    restore = plane.api("POST", f"{base}/restore", 202, json={"at": first["taken_at"]})
    assert restore["payload"]["snapshot"] == first["short_id"]
    restored = plane.wait_command(server["id"], restore["id"], 60)
    assert restored["state"] == "succeeded", restored
    assert (inbox / "7.eml").read_text() == "Subject: 7\n\nbody 7\n"
    assert all(Path(p).exists() for p in restored["result"]["kept_aside"])

    body = {"restore_id": restored["result"]["restore_id"], "keep": "previous"}
    rollback = plane.api("POST", f"{base}/restore/finish", 202, json=body)
    assert plane.wait_command(server["id"], rollback["id"], 30)["state"] == "succeeded"
    assert "edited after the first backup" in (inbox / "7.eml").read_text()
    listed = plane.api("GET", f"{base}/backups")
    assert listed["findings"] == [] and listed["policy"]["last_error"] is None

    plane.api("DELETE", base, 202)
    wait_gone(plane, server["id"])


def cgroup_pids(cgroup: str | None) -> set[int]:
    """Every process in a local VPS's cgroup, its containers' child cgroups included."""
    if not cgroup:
        return set()
    found = set()
    for procs in Path("/sys/fs/cgroup").glob(f"*/{cgroup.strip('/')}/**/cgroup.procs"):
        found |= {int(pid) for pid in procs.read_text().split()}
    return found


def digest(top: Path) -> dict[str, str]:
    return {str(p.relative_to(top)): p.read_text() for p in sorted(top.rglob("*")) if p.is_file()}


def test_a_destroyed_vps_is_recovered_onto_a_new_one_from_its_backup(
    local_net: LocalNet, plane_factory: PlaneFactory, tmp_path: Path
) -> None:
    """A MailU server on its VPS's own Docker engine (stand-in images) is lost and recovered
    onto a new VPS: the restore keeps the files rendered for the new address, MailU serves
    there, and the mail is back."""
    reason = engine_unavailable()
    if reason:
        pytest.skip(reason)
    plane = plane_factory(
        **local_net.settings(),
        MAILFLEET_PERIODIC_SECONDS="0.5",
        MAILFLEET_LOCAL_PROVIDER_DOCKER="1",
        MAILFLEET_LOCAL_PROVIDER_DOCKER_IMAGES=str(stand_in_archive()),
    )
    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": f"t-{time.time_ns()}"})
    mailu = {"mail_stack": "mailu", "mail_hostname": "mx.corp.example"}
    old = wait_state(plane, order(plane, tenant["id"], "lost", **mailu)["id"], "ready", 120)
    old_root = local_net.state_dir / old["instance_id"] / "rootfs"
    mail = old_root / "mailu" / "mail" / "ceo@corp.example" / "cur"
    mail.mkdir(parents=True)
    for n in range(30):
        (mail / f"{n}.eml").write_text(f"Subject: {n}\n\nkeep me {n}\n")
    wanted = digest(old_root / "mailu" / "mail")
    base = f"/api/v1/servers/{old['id']}"
    plane.api("PUT", f"{base}/backup-policy", json={"repository_url": str(tmp_path / "repo")})
    wait_snapshots(plane, old["id"], 1)

    # The VPS is lost: its processes, network and disk are gone.
    (record,) = [r for r in local_net.instances() if r["id"] == old["instance_id"]]
    for pid in namespace_pids(record["namespace"]) | cgroup_pids(record["cgroup"]):
        with contextlib.suppress(ProcessLookupError):  # one may take others with it
            os.kill(pid, signal.SIGKILL)  # its engine and MailU's containers with it
    ip("netns", "delete", record["namespace"], check=False)
    shutil.rmtree(old_root / "mailu")

    started = plane.api("POST", f"{base}/recover", 202, json={})
    assert started["state"] == "provisioning" and started["new_server_id"]
    plane.api("POST", f"{base}/recover", 409, json={})  # one at a time
    done = plane.wait_until(
        f"/api/v1/servers/{started['new_server_id']}/recovery",
        lambda r: r["state"] in ("done", "failed"), 120,
    )  # fmt: skip
    assert done["state"] == "done", done
    assert done["rto_seconds"] is not None and done["rto_seconds"] < 120
    new = plane.api("GET", f"/api/v1/servers/{started['new_server_id']}")
    assert new["ipv4"] != old["ipv4"]
    new_root = local_net.state_dir / new["instance_id"] / "rootfs"
    assert digest(new_root / "mailu" / "mail") == wanted  # the mail is back, byte for byte
    compose = (new_root / "mailu" / "docker-compose.yml").read_text()
    assert f"{new['ipv4']}:25:25" in compose and old["ipv4"] not in compose
    with socket.create_connection((new["ipv4"], 25), timeout=10) as smtp:  # MailU serves
        assert smtp.recv(100).startswith(b"220 ")
    wait_gone(plane, old["id"])  # the old server was retired
    listed = plane.api("GET", f"/api/v1/servers/{new['id']}/backups")
    assert listed["policy"]["enabled"] is True and len(listed["snapshots"]) >= 1

    plane.api("DELETE", f"/api/v1/servers/{new['id']}", 202)
    wait_gone(plane, new["id"])
