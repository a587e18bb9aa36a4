"""Backups with real restic on real files: point-in-time restore byte for byte, in place with
the previous state kept aside, consistent SQLite copies, and clear failures."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.backup import commands as backup
from agent.backup import sources
from agent.errors import CommandError
from agent.mailu.install import install
from agent.mailu.render import data_directories, render_env
from agent.mailu.spec import parse_spec
from tests.agent.conftest import NEW_ADDRESS, PAYLOAD, MailuEngine
from tests.support.moto import S3Server

PASSWORD = "correct horse battery staple"


def _content(path: Path) -> bytes:
    """A file's bytes; a SQLite database's rows (its consistent copy is the same database,
    not the same bytes: the online backup rewrites header counters)."""
    if path.suffix != ".db":
        return path.read_bytes()
    db = sqlite3.connect(path)
    try:
        return "\n".join(db.iterdump()).encode()
    finally:
        db.close()


def tree_digest(top: Path) -> dict[str, str]:
    """Every file under ``top`` (relative path → SHA-256), for byte-for-byte comparison."""
    return {
        str(p.relative_to(top)): hashlib.sha256(_content(p)).hexdigest()
        for p in sorted(top.rglob("*"))
        if p.is_file() and ".mailfleet-" not in str(p)
    }


def make_maildir(mailu: Path, mailboxes: int = 12, messages: int = 250) -> list[Path]:
    """A MailU data root with ``mailboxes × messages`` messages and an admin database."""
    rng = random.Random(7)
    made = []
    for b in range(mailboxes):
        cur = mailu / "mail" / f"user{b}@example.net" / "cur"
        cur.mkdir(parents=True)
        (cur.parent / "new").mkdir()
        (cur.parent / "tmp").mkdir()
        for m in range(messages):
            path = cur / f"{1700000000 + m}.M{m}P{b}.mx,S={2000}:2,S"
            body = rng.randbytes(1500).hex()[:1800]
            path.write_text(f"From: a@example.org\nSubject: {m}\n\n{body}\n")
            made.append(path)
    (mailu / "data").mkdir()
    db = sqlite3.connect(mailu / "data" / "main.db")
    db.execute("CREATE TABLE user (email TEXT PRIMARY KEY, quota INTEGER)")
    db.executemany(
        "INSERT INTO user VALUES (?, ?)", [(f"user{b}@example.net", b) for b in range(mailboxes)]
    )
    db.commit()
    db.close()
    (mailu / "mailu.env").write_text("SECRET_KEY=x\n")
    return made


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An initialised primary and offsite repository (same chunker parameters), copied by
    each test: ``restic init`` derives its key for seconds, and once per module is enough
    (the first test below still has the agent create its repository)."""
    top = tmp_path_factory.mktemp("restic-templates")
    primary, offsite = top / "primary", top / "offsite"
    env = {"PATH": os.environ["PATH"], "RESTIC_PASSWORD": PASSWORD,
           "RESTIC_FROM_PASSWORD": PASSWORD}  # fmt: skip
    for args in (
        ["init", "--repo", str(primary)],
        ["init", "--repo", str(offsite), "--from-repo", str(primary), "--copy-chunker-params"],
    ):
        subprocess.run(["restic", *args, "--no-cache"], env=env, check=True, capture_output=True)
    return primary, offsite


def repo_copy(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    return target


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB filesystem that fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def exist(paths: list[str]) -> bool:
    return bool(paths) and all(Path(p).exists() for p in paths)


def payload(repo: Path | str, **extra: Any) -> dict[str, Any]:
    return {
        "repository": {"url": str(repo)},
        "repository_password": PASSWORD,
        "host": "server-1",
        **extra,
    }


def recorder() -> tuple[list[tuple[int, str]], Any]:
    seen: list[tuple[int, str]] = []
    return seen, lambda percent, message: seen.append((percent, message))


async def test_point_in_time_restore_in_place_keeps_the_previous_state_until_finished(
    tmp_path: Path,
) -> None:
    root, repo = tmp_path / "vps", tmp_path / "repo"
    mailu = root / "mailu"
    messages = make_maildir(mailu)
    seen, progress = recorder()
    first = await backup.run(root, payload(repo), progress)
    assert first["repository_created"] is True and first["files_new"] >= len(messages)
    assert seen[-1][0] == 100 and any("bytes" in m for _, m in seen)
    at_first = tree_digest(mailu)
    assert not list(mailu.rglob("*.mailfleet-snapshot"))  # the consistent copies are gone

    # 1 % of the mail changes; the admin database too.
    rng = random.Random(1)
    for path in rng.sample(messages, len(messages) // 100):
        path.write_text(path.read_text() + "\nedited\n")
    (mailu / "mail" / "user0@example.net" / "new" / "fresh:2,").write_text("new mail\n")
    db = sqlite3.connect(mailu / "data" / "main.db")
    db.execute("UPDATE user SET quota = 99")
    db.commit()
    db.close()
    second = await backup.run(root, payload(repo), progress)
    assert second["repository_created"] is False
    assert second["files_new"] + second["files_changed"] <= len(messages) // 100 + 3
    at_second = tree_digest(mailu)
    assert at_second != at_first

    listed = (await backup.snapshots(root, payload(repo), progress))["snapshots"]
    assert [s["short_id"] for s in listed] == [first["short_id"], second["short_id"]]

    restored = await backup.restore(
        root, payload(repo, snapshot=first["short_id"], target="in_place",
                      snapshot_root=first["root"]), progress,
    )  # fmt: skip
    assert tree_digest(mailu) == at_first  # byte for byte, database included
    assert exist(restored["kept_aside"])
    back = {"restore_id": restored["restore_id"], "keep": "previous"}
    await backup.restore_finish(root, back, progress)
    assert tree_digest(mailu) == at_second
    assert not list(mailu.glob("*.mailfleet-previous-*"))
    with pytest.raises(CommandError, match="no restore"):
        await backup.restore_finish(root, back, progress)

    # A single mailbox, in place; then keep it.
    box = str(mailu / "mail" / "user3@example.net")
    one = await backup.restore(
        root, payload(repo, snapshot=first["short_id"], target="in_place", include=[box],
                      snapshot_root=first["root"]), progress,
    )  # fmt: skip
    assert one["restored"] == [box]
    await backup.restore_finish(
        root, {"restore_id": one["restore_id"], "keep": "restored"}, progress
    )
    assert not list((mailu / "mail").glob("*.mailfleet-previous-*"))

    # To another directory, leaving the live data alone.
    elsewhere = await backup.restore(
        root, payload(repo, snapshot=first["short_id"], target="/restore-check"), progress
    )
    assert elsewhere["in_place"] is False
    copy = root / "restore-check" / mailu.relative_to("/")
    assert tree_digest(copy) == at_first


async def test_a_restore_onto_a_new_address_keeps_the_files_rendered_for_it(
    tmp_path: Path, templates: tuple[Path, Path], mailu_engine: MailuEngine
) -> None:
    """Recovery onto a new VPS, on a real engine: the old server's snapshot holds its own
    rendered files, here crafted ones (a repository the tenant controls may hold anything:
    a compose file that mounts the host, an nginx include out of the tree); restored in
    place on a new server whose MailU was rendered for its own address, the mail comes back,
    the new server's rendered files stay, and MailU starts again bound to the new address."""
    old, new = tmp_path / "old", tmp_path / "new"
    repo = repo_copy(templates[0], tmp_path / "repo")
    _, progress = recorder()
    # The old server's MailU directory as its agent left it (its files bind the old
    # address; whether its containers ran does not change the snapshot).
    spec = parse_spec(PAYLOAD)
    for sub in data_directories(spec):
        (old / "mailu" / sub).mkdir(parents=True, exist_ok=True)
    (old / "mailu" / "mailu.env").write_text(render_env(spec))
    message = old / "mailu" / "mail" / "user@example.net" / "cur" / "1700000000.M1:2,S"
    message.parent.mkdir(parents=True)
    message.write_text("mail worth restoring\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (old / "mailu" / "docker-compose.yml").write_text(
        "services:\n  owned:\n    image: busybox\n    privileged: true\n    volumes: ['/:/host']\n"
    )
    (old / "mailu" / "overrides" / "nginx").rmdir()
    (old / "mailu" / "overrides" / "nginx").symlink_to(outside)
    (old / "mailu" / "certs" / "key.pem").write_text("crafted\n")
    snapshot = await backup.run(old, payload(repo), progress)

    await install(new, {**PAYLOAD, "bind_address": NEW_ADDRESS}, progress)
    mailu = new / "mailu"
    rendered = {n: (mailu / n).read_bytes() for n in ("docker-compose.yml", "mailu.env")}
    done = await backup.restore(
        new, payload(repo, snapshot=snapshot["short_id"], target="in_place",
                     snapshot_root=snapshot["root"]), progress,
    )  # fmt: skip
    moved = mailu / message.relative_to(old / "mailu")
    assert moved.read_text() == "mail worth restoring\n"
    for name, data in rendered.items():
        assert (mailu / name).read_bytes() == data, name
    assert (mailu / "mailu.env").stat().st_mode & 0o777 == 0o600
    assert (mailu / "overrides" / "nginx").is_dir()
    assert not (mailu / "overrides" / "nginx").is_symlink()
    assert not (mailu / "certs" / "key.pem").exists() and not list(outside.iterdir())

    # MailU came back with the new server's own file: bound to the new address.
    front = mailu_engine.engine.docker(
        "ps", "-q", "--filter", "label=com.docker.compose.service=front"
    ).stdout.split()
    bindings = json.loads(mailu_engine.engine.docker(
        "inspect", "--format", "{{json .HostConfig.PortBindings}}", *front
    ).stdout)  # fmt: skip
    assert bindings["25/tcp"] == [{"HostIp": NEW_ADDRESS, "HostPort": "25"}]
    assert "owned" not in mailu_engine.engine.docker("ps", "-a", "--format", "{{.Names}}").stdout
    await backup.restore_finish(new, {"restore_id": done["restore_id"], "keep": "restored"},
                                progress)  # fmt: skip


async def test_an_offsite_copy_holds_the_same_snapshot(
    tmp_path: Path, templates: tuple[Path, Path]
) -> None:
    root = tmp_path / "vps"
    make_maildir(root / "mailu", mailboxes=2, messages=20)
    repo = repo_copy(templates[0], tmp_path / "repo")
    offsite = repo_copy(templates[1], tmp_path / "offsite")
    extra = {"offsite": {"url": str(offsite)}, "offsite_password": PASSWORD}
    _, progress = recorder()
    result = await backup.run(root, payload(repo, **extra), progress)
    assert result["offsite_copied"] is True and result["repository_created"] is False
    there = await backup.snapshots(root, payload(offsite), progress)
    assert len(there["snapshots"]) == 1
    assert there["snapshots"][0]["paths"] == result["paths"]
    # Each repository's stored size, as restic itself counts it, for the storage bill.
    sizes = (result["repository_size"], result["offsite_size"])
    assert sizes == (raw_data_size(repo), raw_data_size(offsite)) and min(sizes) > 0
    # The bill takes one reading a day: the day's next backup skips ``restic stats``
    # (it cost more than an hourly incremental backup) unless the payload asks for it.
    again = await backup.run(root, payload(repo, **extra), progress)
    assert "repository_size" not in again and "offsite_size" not in again
    with pytest.raises(CommandError, match=r"^payload\.measure_size: "):
        await backup.run(root, payload(repo, measure_size="yes", **extra), progress)
    forced = await backup.run(root, payload(repo, measure_size=True, **extra), progress)
    assert forced["repository_size"] == raw_data_size(repo)
    assert len((await backup.snapshots(root, payload(repo), progress))["snapshots"]) == 3


def raw_data_size(repository: Path) -> int:
    """The bytes a repository stores, asked of restic directly."""
    env = {"PATH": os.environ["PATH"], "RESTIC_PASSWORD": PASSWORD}
    stats = subprocess.run(
        ["restic", "stats", "--repo", str(repository), "--json", "--mode", "raw-data",
         "--no-cache"], env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return int(json.loads(stats.stdout)["total_size"])


async def test_failures_are_clear_and_leave_the_snapshots_alone(
    tmp_path: Path, templates: tuple[Path, Path]
) -> None:
    root, repo = tmp_path / "vps", repo_copy(templates[0], tmp_path / "repo")
    make_maildir(root / "mailu", mailboxes=1, messages=5)
    _, progress = recorder()
    await backup.run(root, payload(repo), progress)
    wrong = {**payload(repo), "repository_password": "not the password"}
    with pytest.raises(CommandError, match="wrong repository password"):
        await backup.run(root, wrong, progress)
    closed = f"rest:http://127.0.0.1:{_closed_port()}/"
    with pytest.raises(CommandError, match="unreachable"):
        await backup.run(root, payload(closed), progress)
    with pytest.raises(CommandError, match="nothing to back up"):
        await backup.run(root, payload(repo, paths=["/no/such/dir"]), progress)
    with pytest.raises(CommandError, match=r"payload\.keep"):
        await backup.forget(root, payload(repo, keep={"fortnightly": 2}), progress)
    assert len((await backup.snapshots(root, payload(repo), progress))["snapshots"]) == 1
    check = await backup.check(root, payload(repo, read_data_subset="1/3"), progress)
    assert check["ok"] is True


def _closed_port() -> int:
    from tests.support.ports import free_port

    return free_port()


async def test_a_full_repository_disk_fails_clearly(
    tmp_path: Path, tmpfs: Path, templates: tuple[Path, Path]
) -> None:
    root = tmp_path / "vps"
    mailu = root / "mailu"
    make_maildir(mailu, mailboxes=1, messages=5)
    repo = tmpfs / "repo"
    shutil.copytree(templates[0], repo)
    _, progress = recorder()
    first = await backup.run(root, payload(repo), progress)
    (mailu / "mail" / "big").write_bytes(os.urandom(8 * 1024 * 1024))
    with pytest.raises(CommandError, match="full"):
        await backup.run(root, payload(repo), progress)
    listed = (await backup.snapshots(root, payload(repo), progress))["snapshots"]
    assert [s["short_id"] for s in listed] == [first["short_id"]]


RUNNER = """
import asyncio, json, sys
from pathlib import Path
from agent.backup import commands
payload = json.loads(sys.stdin.read())
def progress(percent, message):
    print(percent, message, flush=True)
asyncio.run(commands.run(Path(sys.argv[1]), payload, progress))
"""


def restic_processes(marker: str) -> list[int]:
    """restic processes for this repository, zombies included: restic's stale-lock check
    sees a dead holder that is not yet reaped as alive."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/stat").read_text().split(" ", 2)[1]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if comm == "(restic)" and (marker in cmdline or not cmdline):
            found.append(int(pid))
    return found


def kill_mid_backup(root: Path, body: dict[str, Any], marker: str) -> list[int]:
    """Run ``backup.run`` in its own process and SIGKILL it once restic reports progress;
    the restic processes still alive a few seconds later."""
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(body))
    process.stdin.close()
    try:
        deadline = time.monotonic() + 30
        for line in process.stdout:
            if "bytes" in line or time.monotonic() > deadline:
                break
        assert time.monotonic() <= deadline, "restic never reported progress"
    finally:
        process.kill()
        process.wait(10)
        process.stdout.close()
    deadline = time.monotonic() + 10
    while restic_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return restic_processes(marker)


async def test_killing_the_agent_mid_backup_leaves_a_clean_repository(
    tmp_path: Path, templates: tuple[Path, Path]
) -> None:
    root, repo = tmp_path / "vps", repo_copy(templates[0], tmp_path / "repo")
    mail = root / "mailu" / "mail"
    mail.mkdir(parents=True)
    (mail / "large").write_bytes(os.urandom(12 * 1024 * 1024))
    body = payload(repo, limit_upload_kib=1024)
    assert await asyncio.to_thread(kill_mid_backup, root, body, str(repo)) == []  # restic died
    assert list((repo / "locks").iterdir())  # ...leaving its lock behind

    _, progress = recorder()
    result = await backup.run(root, payload(repo), progress)  # the stale lock goes first
    assert result["total_bytes_processed"] == 12 * 1024 * 1024
    assert not list((repo / "locks").iterdir())
    # An operator's plain restic (an exclusive lock) is not refused by a dead one's lock.
    plain = await asyncio.to_thread(
        subprocess.run, ["restic", "check", "--repo", str(repo), "--no-cache"],
        capture_output=True, text=True,
        env={"PATH": os.environ["PATH"], "RESTIC_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    listed = (await backup.snapshots(root, payload(repo), progress))["snapshots"]
    assert [s["short_id"] for s in listed] == [result["short_id"]]


def expected_kept(times: list[datetime], keep: dict[str, int]) -> set[datetime]:
    """restic's documented policy: newest first, each rule keeps the newest snapshot of
    each of its last ``n`` buckets (hour, day, ISO week, month); kept by any rule, kept."""
    buckets = {
        "hourly": lambda t: t.strftime("%Y%m%d%H"),
        "daily": lambda t: t.strftime("%Y%m%d"),
        "weekly": lambda t: "{}{:02d}".format(*t.isocalendar()[:2]),
        "monthly": lambda t: t.strftime("%Y%m"),
    }
    left, last = dict(keep), dict.fromkeys(keep, "")
    kept = set()
    for t in sorted(times, reverse=True):
        for rule, bucket in buckets.items():
            if left.get(rule, 0) > 0 and bucket(t) != last[rule]:
                last[rule], left[rule] = bucket(t), left[rule] - 1
                kept.add(t)
    return kept


async def test_a_simulated_year_is_forgotten_exactly_as_the_policy_says(
    tmp_path: Path, templates: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "UTC")
    root, repo = tmp_path / "vps", repo_copy(templates[0], tmp_path / "repo")
    data = root / "mailu" / "mail"
    data.mkdir(parents=True)
    (data / "msg").write_text("hello\n")
    now = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    hours = [0, 1, 2, 3, 5, 26, 50, 74, 98, 240, 408, 576, 960, 1680, 2400, 4800, 7200, 8736]
    times = [now - timedelta(hours=h) for h in hours]
    env = {"PATH": os.environ["PATH"], "RESTIC_PASSWORD": PASSWORD, "TZ": "UTC"}

    def snapshot(when: datetime, host: str = "server-1", tag: str = "mailfleet") -> None:
        subprocess.run(
            ["restic", "backup", "--repo", str(repo), "--no-cache", "--host", host, "--tag",
             tag, "--time", when.strftime("%Y-%m-%d %H:%M:%S"), str(data)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip

    def make_all() -> None:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(snapshot, times))
            pool.submit(snapshot, now - timedelta(days=300), "other-server").result()
            pool.submit(snapshot, now - timedelta(days=300), "server-1", "manual").result()

    await asyncio.to_thread(make_all)
    keep = {"hourly": 3, "daily": 3, "weekly": 2, "monthly": 3}
    _, progress = recorder()
    before = raw_data_size(repo)
    result = await backup.forget(root, payload(repo, keep=keep), progress)
    assert result["repository_size"] == raw_data_size(repo) <= before  # measured after pruning
    listed = (await backup.snapshots(root, payload(repo), progress))["snapshots"]
    left = {
        datetime.fromisoformat(s["time"]).astimezone(UTC).replace(microsecond=0)
        for s in listed
        if s["hostname"] == "server-1" and s["tags"] == ["mailfleet"]
    }
    assert left == expected_kept(times, keep)
    assert len(result["removed"]) == len(times) - len(left) and result["pruned"] is True
    others = [(s["hostname"], s["tags"]) for s in listed if s["tags"] != ["mailfleet"]
              or s["hostname"] != "server-1"]  # fmt: skip
    assert sorted(others) == [("other-server", ["mailfleet"]), ("server-1", ["manual"])]


async def test_the_restore_drill_compares_a_sample_and_catches_corruption(
    tmp_path: Path, templates: tuple[Path, Path]
) -> None:
    root, repo = tmp_path / "vps", repo_copy(templates[0], tmp_path / "repo")
    messages = make_maildir(root / "mailu", mailboxes=2, messages=30)
    _, progress = recorder()
    await backup.run(root, payload(repo), progress)
    clean = await backup.drill(root, payload(repo, sample=1000), progress)
    # Every message compared; the database's consistent copy has no live twin to compare with.
    assert clean["compared"] >= len(messages)
    assert clean["restored"] == clean["compared"] + clean["changed_since"]
    assert not list((root / "var/lib/mailfleet-agent/drills").iterdir())  # scratch removed

    messages[0].write_text(messages[0].read_text() + "changed\n")  # newer: skipped, not wrong
    victim = messages[1]  # same size and time, other bytes: what bit rot in a backup looks like
    stat, text = victim.stat(), victim.read_text()
    victim.write_text(text[:-2] + ("x" if text[-2] != "x" else "y") + text[-1])
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(CommandError, match=r"content differs"):
        await backup.drill(root, payload(repo, sample=1000), progress)


def restic_environ(marker: str, deadline: float) -> dict[str, str]:
    """The environment of the running restic whose command line names ``marker``."""
    while time.monotonic() < deadline:
        for pid in restic_processes(marker):
            try:
                raw = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if raw:
                return dict(e.split("=", 1) for e in raw.decode().split("\0") if "=" in e)
        time.sleep(0.02)
    raise AssertionError("no restic process was seen running")


async def test_restic_runs_by_absolute_path_with_a_fixed_environment(
    tmp_path: Path, templates: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "bin"
    decoy.mkdir()
    (decoy / "restic").write_text(f"#!/bin/sh\ntouch {tmp_path / 'decoy-ran'}\nexit 1\n")
    (decoy / "restic").chmod(0o755)
    monkeypatch.setenv("PATH", f"{decoy}:{os.environ['PATH']}")
    monkeypatch.setenv("MAILFLEET_CANARY", "the agent's own environment")
    root, repo = tmp_path / "vps", repo_copy(templates[0], tmp_path / "repo")
    (root / "mailu" / "mail").mkdir(parents=True)
    (root / "mailu" / "mail" / "big").write_bytes(os.urandom(3 * 1024 * 1024))
    body = payload(repo, limit_upload_kib=512, repository_env={"AWS_ACCESS_KEY_ID": "AKIAX"})
    _, progress = recorder()
    running = asyncio.create_task(backup.run(root, body, progress))
    seen = await asyncio.to_thread(restic_environ, str(repo), time.monotonic() + 20)
    result = await running
    assert result["total_bytes_processed"] == 3 * 1024 * 1024
    assert not (tmp_path / "decoy-ran").exists()  # restic by absolute path, not the PATH's
    assert seen == {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": seen["HOME"], "TZ": "UTC",
        "RESTIC_PROGRESS_FPS": "2", "AWS_ACCESS_KEY_ID": "AKIAX",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"repository_env": {"LD_PRELOAD": "/tmp/evil.so"}}, "payload.repository_env.LD_PRELOAD"),
        ({"repository_env": {"PATH": "/tmp"}}, "payload.repository_env.PATH"),
        ({"repository_env": {"RESTIC_PASSWORD_COMMAND": "sh"}}, "payload.repository_env.RESTIC"),
        ({"offsite": {"url": "/o"}, "offsite_password": PASSWORD,
          "offsite_env": {"AWS_SHARED_CREDENTIALS_FILE": "/root/x"}},
         "payload.offsite_env.AWS_SHARED_CREDENTIALS_FILE"),
        ({"repository": {"url": "sftp:-oProxyCommand=sh:/r"}}, "payload.repository.url"),
        ({"repository": {"url": "rclone::sftp,ssh=sh:/r"}}, "payload.repository.url"),
        ({"repository": {"url": "/etc/cron.d/r"}}, "payload.repository.url"),
        ({"paths": ["/var/lib/mailfleet-agent"]}, "payload.paths"),
        ({"paths": ["/mailu/../etc"]}, "payload.paths"),
        ({"paths": ["/var"]}, "payload.paths"),
        ({"host": "--password-command=sh"}, "payload.host"),
    ],
)  # fmt: skip
async def test_payloads_that_would_run_code_or_read_secrets_are_refused(
    tmp_path: Path, extra: dict[str, Any], field: str
) -> None:
    root = tmp_path / "vps"
    (root / "mailu" / "mail").mkdir(parents=True)
    _, progress = recorder()
    with pytest.raises(CommandError, match=rf"^{field}"):
        await backup.run(root, {**payload(tmp_path / "repo"), **extra}, progress)
    assert not (tmp_path / "repo").exists()  # nothing ran


async def test_a_restore_never_writes_into_the_system_or_over_files(
    tmp_path: Path, templates: tuple[Path, Path]
) -> None:
    root, repo = tmp_path / "vps", repo_copy(templates[0], tmp_path / "repo")
    make_maildir(root / "mailu", mailboxes=1, messages=3)
    _, progress = recorder()
    first = await backup.run(root, payload(repo), progress)
    for target in ("/", "/etc/systemd/system/x.d", "/root/.ssh", "/usr/local/bin"):
        with pytest.raises(CommandError, match=r"^payload\.target"):
            await backup.restore(root, payload(repo, snapshot=first["short_id"], target=target),
                                 progress)  # fmt: skip
    (root / "etc").mkdir()
    (root / "mailu" / "link").symlink_to(root / "etc")  # e.g. restored from a crafted snapshot
    with pytest.raises(CommandError, match=r"^payload\.target"):
        await backup.restore(root, payload(repo, snapshot=first["short_id"],
                                           target="/mailu/link/cron.d"), progress)  # fmt: skip
    with pytest.raises(CommandError, match=r"^payload\.paths"):
        await backup.run(root, payload(repo, paths=["/mailu/link"]), progress)
    (root / "busy").mkdir()
    (root / "busy" / "file").write_text("kept")
    with pytest.raises(CommandError, match="not empty"):
        await backup.restore(root, payload(repo, snapshot=first["short_id"], target="/busy"),
                             progress)  # fmt: skip
    with pytest.raises(CommandError, match=r"^payload\.include"):
        await backup.restore(root, payload(repo, snapshot=first["short_id"], target="/new",
                                           include=["/mailu/*"]), progress)  # fmt: skip
    await backup.restore(root, payload(repo, snapshot=first["short_id"], target="/new"), progress)
    assert (root / "new").stat().st_mode & 0o777 == 0o700
    assert not list((root / "var/lib/mailfleet-agent/restores").glob("*"))


async def test_a_repository_on_s3_with_required_credentials(
    tmp_path: Path, s3_server: S3Server
) -> None:
    root = tmp_path / "vps"
    make_maildir(root / "mailu", mailboxes=1, messages=5)
    url = s3_server.repository()
    _, progress = recorder()
    first = await backup.run(root, payload(url, repository_env=s3_server.env), progress)
    assert first["repository_created"] is True and first["files_new"] >= 5
    bucket = url.rsplit("/", 1)[1]
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert "config" in keys and any(k.startswith("snapshots/") for k in keys)
    listed = await backup.snapshots(root, payload(url, repository_env=s3_server.env), progress)
    assert [s["short_id"] for s in listed["snapshots"]] == [first["short_id"]]
    wrong = {**s3_server.env, "AWS_SECRET_ACCESS_KEY": "not the secret"}
    with pytest.raises(CommandError, match="refused the backend credentials"):
        await backup.run(root, payload(url, repository_env=wrong), progress)


def test_the_consistent_copy_of_a_database_is_never_wider_than_the_database(
    tmp_path: Path,
) -> None:
    db = tmp_path / "main.db"
    sqlite3.connect(db).close()
    db.chmod(0o640)
    previous = os.umask(0o022)
    try:
        with sources.consistent_sqlite_copies([db]):
            copy = db.with_name(db.name + sources.SNAPSHOT_SUFFIX)
            assert copy.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(previous)
    assert not copy.exists()
