"""What a backup reads, and how it stays consistent without stopping mail.

The MailU data root is crash-consistent by construction except for its SQLite databases:
Maildir delivers by writing a file in ``tmp/`` and renaming it into ``new/`` (a snapshot
sees a message whole or not at all), Postfix moves queue files by rename, Redis writes
``dump.rdb`` to a temporary file and renames it. A SQLite file copied while the admin
writes can be torn, so each one named in ``sqlite`` is first copied with SQLite's online
backup API (a consistent copy taken page by page, writers wait only for the page being
read) to ``<db>.mailfleet-snapshot``; restic stores the copy instead of the live file, and a
restore puts it back under the database's name. Mail keeps flowing throughout.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.config import under_root
from agent.errors import CommandError
from agent.mailu.install import COMPOSE_FILE, ENV_FILE, mailu_dir
from mailfleet.restic import readable_path_problem

SNAPSHOT_SUFFIX = ".mailfleet-snapshot"
MAILU_ENTRIES = (
    "data", "dkim", "mail", "mailqueue", "filter", "redis", "certs", "overrides", "webmail",
    "dav", COMPOSE_FILE, ENV_FILE,
)  # fmt: skip
MAILU_SQLITE = ("data/main.db", "webmail/roundcube.db")


def default_paths(root: Path) -> list[Path]:
    return [mailu_dir(root) / entry for entry in MAILU_ENTRIES]


def default_sqlite(root: Path) -> list[Path]:
    return [mailu_dir(root) / name for name in MAILU_SQLITE]


def _absolute_list(root: Path, payload: dict[str, Any], key: str) -> list[Path] | None:
    raw = payload.get(key)
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise CommandError(f"payload.{key}: a list of absolute paths")
    return [placed(root, p, readable_path_problem, f"payload.{key}") for p in raw]


def placed(root: Path, path: str, check: Callable[[str], str | None], field: str) -> Path:
    """``path`` on this machine, checked as given and again where its symlinks lead: a
    restored symlink must not carry a later backup or restore into ``/etc``."""
    problem = check(path)
    if problem is None:
        real = Path(os.path.realpath(under_root(root, Path(path))))
        try:
            problem = check(str(Path("/") / real.relative_to(os.path.realpath(root))))
        except ValueError:
            problem = "leads outside the server's filesystem"
    if problem is not None:
        raise CommandError(f"{field}: {path!r}: {problem}")
    return under_root(root, Path(path))


def chosen_paths(root: Path, payload: dict[str, Any]) -> list[Path]:
    """The paths to back up that exist (MailU's data root by default)."""
    wanted = _absolute_list(root, payload, "paths") or default_paths(root)
    present = [p for p in wanted if p.exists()]
    if not present:
        shown = ", ".join(str(p) for p in wanted[:3])
        raise CommandError(f"nothing to back up: none of the paths exist ({shown}, …)")
    return present


def chosen_sqlite(root: Path, payload: dict[str, Any]) -> list[Path]:
    listed = _absolute_list(root, payload, "sqlite")
    return [p for p in (default_sqlite(root) if listed is None else listed) if p.is_file()]


@contextmanager
def consistent_sqlite_copies(databases: list[Path]) -> Iterator[list[str]]:
    """Online-backup copies of each database for the snapshot; yields restic ``--exclude``
    arguments for the live files. The copies are removed afterwards, whatever happens."""
    made: list[Path] = []
    excludes: list[str] = []
    try:
        for db in databases:
            copy = db.with_name(db.name + SNAPSHOT_SUFFIX)
            source = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
            try:
                _private_file(copy)  # the copy holds what the database holds: 0600 at once
                made.append(copy)
                target = sqlite3.connect(copy)
                try:
                    source.backup(target)
                finally:
                    target.close()
                _same_mode_and_owner(copy, db)  # restored under the database's name
            except sqlite3.Error as exc:
                raise CommandError(f"consistent copy of {db.name} failed: {exc}") from None
            finally:
                source.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                excludes += ["--exclude", f"{db}{suffix}"]
        yield excludes
    finally:
        for copy in made:
            copy.unlink(missing_ok=True)


def _private_file(path: Path) -> None:
    """An empty file only the owner may read, replacing any earlier leftover."""
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))


def _same_mode_and_owner(copy: Path, db: Path) -> None:
    """The copy as the database is: a restore puts it back in the database's place."""
    info = db.stat()
    with contextlib.suppress(PermissionError):
        os.chown(copy, info.st_uid, info.st_gid)
    os.chmod(copy, stat.S_IMODE(info.st_mode))


def put_back_sqlite_copies(tree: Path) -> None:
    """In a restored tree, every ``<db>.mailfleet-snapshot`` becomes ``<db>`` again."""
    for copy in tree.rglob("*" + SNAPSHOT_SUFFIX):
        copy.replace(copy.with_name(copy.name.removesuffix(SNAPSHOT_SUFFIX)))
