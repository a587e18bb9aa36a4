"""The control plane's own state (database and a raft-backed OpenBao) into restic and back."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select

from control_plane.backups.state import StateBackupError, backup_state, restore_state
from control_plane.db import migrate
from control_plane.db.engine import Database
from control_plane.settings import Settings
from control_plane.tenants.models import Tenant
from control_plane.vault.client import Vault
from control_plane.vault.local import LocalOpenBao
from tests.support.moto import S3Server
from tests.support.ports import free_port
from tests.support.postgres import create_database, drop_database


@pytest_asyncio.fixture
async def own_db(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A database of its own (the restore replaces everything in it)."""
    postgres = database_url.startswith("postgresql")
    url = await create_database() if postgres else f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}"
    database = Database(url)
    await migrate.upgrade(database)
    try:
        yield database
    finally:
        await database.dispose()
        if postgres:
            await drop_database(url)


@pytest_asyncio.fixture
async def raft_vault(tmp_path: Path) -> AsyncIterator[Vault]:
    """The embedded OpenBao MailFleet runs by default: integrated raft storage."""
    local = LocalOpenBao(tmp_path / "home", f"127.0.0.1:{free_port(pairs=True)}")
    try:
        creds = await local.start()
        vault = Vault(creds.url, token=creds.token, kv_mount="mailfleet")
        await vault.ensure_kv_mount()
        yield vault
        vault.close()
    finally:
        local.stop()


async def tenant_names(db: Database) -> set[str]:
    async with db.session() as session:
        return set((await session.scalars(select(Tenant.name))).all())


async def test_database_and_vault_come_back_as_they_were(
    own_db: Database, raft_vault: Vault, tmp_path: Path
) -> None:
    password = tmp_path / "state.pass"
    password.write_text("state-repository-password\n")
    settings = Settings(
        home=tmp_path, state_backup_repository=str(tmp_path / "state-repo"),
        state_backup_password_file=password,
    )  # fmt: skip
    async with own_db.session() as session:
        session.add(Tenant(name="kept"))
    await raft_vault.put("admin/probe", {"value": "before"})

    stored = await backup_state(settings, own_db, raft_vault)
    assert set(stored) == {"database", "vault"}
    middle = datetime.now(UTC)

    async with own_db.session() as session:
        session.add(Tenant(name=f"later-{uuid.uuid4().hex[:6]}"))
        kept = await session.scalar(select(Tenant).where(Tenant.name == "kept"))
        assert kept is not None
        await session.delete(kept)
    await raft_vault.put("admin/probe", {"value": "after"})
    await backup_state(settings, own_db, raft_vault)  # a newer backup exists too

    restored = await restore_state(settings, own_db, raft_vault, middle)
    assert restored == stored
    if own_db.dialect == "sqlite":  # the swapped-in database is the owner's only
        assert os.stat(str(own_db.url.database)).st_mode & 0o777 == 0o600
    assert await tenant_names(own_db) == {"kept"}
    assert await raft_vault.get("admin/probe") == {"value": "before"}

    too_early = datetime(2001, 1, 1, tzinfo=UTC)
    with pytest.raises(StateBackupError, match="no backup of"):
        await restore_state(settings, own_db, raft_vault, too_early)
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the password")
    with pytest.raises(StateBackupError, match="wrong password"):
        await backup_state(
            settings.model_copy(update={"state_backup_password_file": wrong}), own_db, raft_vault
        )


def env_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


async def test_a_remote_repository_gets_its_credentials_from_the_env_file(
    own_db: Database, raft_vault: Vault, tmp_path: Path, s3_server: S3Server
) -> None:
    password = tmp_path / "state.pass"
    password.write_text("state-repository-password\n")
    url = s3_server.repository()
    good = env_file(
        tmp_path / "s3.env",
        f"# moto on loopback\nAWS_ACCESS_KEY_ID={s3_server.access_key}\n\n"
        f"AWS_SECRET_ACCESS_KEY={s3_server.secret_key}\n",
    )
    settings = Settings(
        home=tmp_path, state_backup_repository=url, state_backup_password_file=password,
        state_backup_env_file=good,
    )  # fmt: skip
    async with own_db.session() as session:
        session.add(Tenant(name="remote"))
    assert set(await backup_state(settings, own_db, raft_vault)) == {"database", "vault"}
    bucket = url.rsplit("/", 1)[1]
    listed = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert sum(o["Key"].startswith("snapshots/") for o in listed) == 2
    async with own_db.session() as session:
        session.add(Tenant(name="after"))
    await restore_state(settings, own_db, raft_vault, None)
    assert await tenant_names(own_db) == {"remote"}

    for text, mode, words in (
        (good.read_text().replace("AWS_SECRET_ACCESS_KEY=", "AWS_SECRET_ACCESS_KEY=x"), 0o600,
         "signature"),
        (good.read_text(), 0o644, "readable by others"),
        ("PATH=/tmp\n", 0o600, "PATH"),
        ("AWS_SHARED_CREDENTIALS_FILE=/root/.aws/credentials\n", 0o600,
         "AWS_SHARED_CREDENTIALS_FILE"),
        ("AWS_ACCESS_KEY_ID\n", 0o600, "line 1"),
    ):  # fmt: skip
        bad = env_file(tmp_path / "bad.env", text, mode)
        with pytest.raises(StateBackupError, match=words):
            await backup_state(
                settings.model_copy(update={"state_backup_env_file": bad}), own_db, raft_vault
            )
