"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

import control_plane.db.models  # noqa: F401  (registers every model)
from control_plane.db.tenancy import SESSION_TENANT_KEY
from control_plane.files import create_private
from control_plane.settings import Settings, SettingsError

log = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the driver so "BEGIN IMMEDIATE" below is ours:
    # it claims the write lock up front, avoiding SQLite's read-then-write upgrade deadlock.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA foreign_keys=ON",
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA busy_timeout=10000",
    ):
        cursor.execute(pragma)
    cursor.close()


# A pooled PostgreSQL connection idle this long is pinged before it is handed out again.
IDLE_PING_SECONDS = 10.0


class _IdlePing:
    """Ping a pooled connection at checkout only if it sat idle ``seconds`` or more.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout, and on asyncpg a ping is three
    round trips (BEGIN, ``;``, ROLLBACK): with a checkout per API request, key check and
    gateway write, that was several round trips per message for nothing, since a connection
    handed back milliseconds ago is alive. What a ping guards against — PostgreSQL
    restarted, a firewall dropping idle sessions — kills connections that sat in the pool;
    those are still pinged, and a dead one is replaced before anyone gets it (raising
    ``DisconnectionError`` makes the pool discard it and check out another). A connection
    that dies in the busy window fails its one statement, which SQLAlchemy reports as a
    disconnect and answers by invalidating the pool (every older connection is replaced).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def checkin(self, _dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < self.seconds:
            return
        try:
            dbapi_connection.ping()
        except Exception as error:
            raise exc.DisconnectionError(f"a pooled connection was dead: {error!r}") from error


T = TypeVar("T")


def _report(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("database work finished after its caller left, and failed: %r", task.exception())


async def to_completion(work: Coroutine[Any, Any, T]) -> T:
    """Finish database work even if the caller is cancelled (a stream closing mid-write).

    An abandoned transaction would hold SQLite's write lock (BEGIN IMMEDIATE) until its
    connection is reclaimed, and every other writer would wait on it.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_report)
        raise


class Database:
    """One engine per process; sessions are short and always inside a transaction."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        echo: bool = False,
        idle_ping_seconds: float = IDLE_PING_SECONDS,
    ) -> None:
        sa_url = make_url(url)
        if password is not None:
            sa_url = sa_url.set(password=password)
        options: dict[str, Any] = {"echo": echo}
        if sa_url.get_backend_name() == "sqlite":
            if sa_url.database and sa_url.database != ":memory:":
                # SQLite creates files with the umask (0644) and gives -wal/-shm the
                # database's mode: an empty 0600 file first (SQLite takes it as empty).
                Path(sa_url.database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                create_private(Path(sa_url.database))
            options["connect_args"] = {"timeout": 10}
        else:
            options.update(pool_size=10, max_overflow=20, pool_recycle=1800)
            options["connect_args"] = {"timeout": 10, "command_timeout": 60}
        self.url = sa_url
        self.backend_pids = set()
        self.engine = create_async_engine(sa_url, **options)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(
                self.engine.sync_engine,
                "begin",
                lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"),
            )
        else:
            pinger = _IdlePing(idle_ping_seconds)
            pool = self.engine.sync_engine.pool
            event.listen(pool, "checkin", pinger.checkin)
            event.listen(pool, "checkout", pinger.checkout)
            event.listen(pool, "connect", self._remember_backend)
            event.listen(pool, "close", self._forget_backend)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    # PostgreSQL backend pids of this engine's open connections: a LISTEN/NOTIFY listener
    # knows its own replica's notifications by them (control_plane.db.notify).
    backend_pids: set[int]

    def _remember_backend(self, dbapi_connection: Any, record: Any) -> None:
        pid = int(dbapi_connection.driver_connection.get_server_pid())
        record.info["backend_pid"] = pid
        self.backend_pids.add(pid)

    def _forget_backend(self, _dbapi_connection: Any, record: Any) -> None:
        self.backend_pids.discard(record.info.pop("backend_pid", None))

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        password = None
        if settings.database_password_file is not None:
            try:
                password = settings.database_password_file.read_text().strip()
            except OSError as exc:
                raise SettingsError(
                    f"MAILFLEET_DATABASE_PASSWORD_FILE: cannot read it: {exc.strerror}"
                ) from None
        return cls(settings.resolved_database_url, password=password)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A system session: sees every tenant. For admin routes and background services."""
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def tenant_session(self, tenant_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
        """A session that can only see and write ``tenant_id``'s rows."""
        scoped = self._sessions(info={SESSION_TENANT_KEY: tenant_id})
        async with scoped as session, session.begin():
            yield session

    async def transact(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``work`` in one system transaction that finishes even if the caller is cancelled."""

        async def run() -> T:
            async with self.session() as session:
                return await work(session)

        return await to_completion(run())

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
