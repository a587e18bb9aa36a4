"""SQLite runs as the only replica: a second ``serve`` on the same file is refused in one
line naming the first one's pid (control_plane.db.single_replica)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from control_plane.db.single_replica import AnotherReplica, only_replica
from control_plane.settings import Settings
from tests.support.ports import free_port
from tests.support.processes import run_cli


def test_a_second_serve_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "shared" / "mailfleet.db"
    url = f"sqlite+aiosqlite:///{database}"
    first = Settings(home=tmp_path / "first", database_url=url)
    with only_replica(first):  # the first serve, as far as the file is concerned
        with pytest.raises(AnotherReplica, match=f"pid {os.getpid()}"), only_replica(first):
            pass
        env = {
            "MAILFLEET_HOME": str(tmp_path / "second"),  # another home, the same file
            "MAILFLEET_DATABASE_URL": url,
            "MAILFLEET_API_ADDR": f"127.0.0.1:{free_port()}",
            "MAILFLEET_VAULT_ADDR": "http://127.0.0.1:9",  # never reached
        }
        refused = run_cli("serve", env=env, timeout=60)
        assert refused.returncode == 2, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert f"(pid {os.getpid()})" in lines[0]
        assert "only replica" in lines[0]
        assert str(database) in lines[0]
    with only_replica(first):  # released when its holder let go
        pass


def test_postgresql_takes_no_lock(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url="postgresql+asyncpg://u@127.0.0.1/db")
    with only_replica(settings), only_replica(settings):
        assert not list(tmp_path.iterdir())
