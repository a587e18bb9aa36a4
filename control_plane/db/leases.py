"""Leases on rows that replicas share work over (provisioning steps, IP switch steps).

A claim is a lease, not an open transaction: it marks the row with this replica's id and an
expiry, renewed while the work runs, so a slow provider or agent call never holds a database
lock (on SQLite that would block every writer). A replica that dies leaves its leases to
lapse; another one then takes the work over. On PostgreSQL the claim is ``SELECT … FOR
UPDATE SKIP LOCKED``, so replicas claiming at the same moment take different rows; SQLite's
single writer (BEGIN IMMEDIATE) gives the same.

The leased table has ``id``, ``lease_owner`` and ``lease_expires_at`` columns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.engine import Database

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long letting go waits for cancelled work: work that does not answer cancellation (a
# call that swallows it) must not hold shutdown; its lease is released all the same.
RELEASE_WAIT_SECONDS = 10.0


def replica_id() -> str:
    """This process's name on the rows it leases (host, pid and a random part)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def unleased(table: Any, now: datetime) -> ColumnElement[bool]:
    """No lease on the row of ``table``, or one that has lapsed (its holder died)."""
    return or_(table.lease_expires_at.is_(None), table.lease_expires_at < now)


class Leases(Generic[T]):
    """This replica's leases on rows of ``model``; ``what`` names the work in logs."""

    def __init__(self, db: Database, model: type[T], seconds: float, what: str) -> None:
        self.db, self.model, self.what = db, model, what
        self.owner = replica_id()
        self.lease = timedelta(seconds=seconds)
        self._table: Any = model  # its columns, which a type variable cannot name

    async def claim(
        self,
        due: Callable[[datetime], Sequence[ColumnElement[bool]]],
        order_by: Any,
        limit: int,
        skip: Collection[uuid.UUID] = (),
    ) -> list[T]:
        """Lease up to ``limit`` rows that are ``due(now)``, unleased (or lapsed) and not in
        ``skip`` (what this replica runs already), in ``order_by`` order."""
        table = self._table

        async def take(session: AsyncSession) -> list[T]:
            now = utcnow()
            ids = list(
                (
                    await session.scalars(
                        select(table.id)
                        .where(*due(now), unleased(table, now), table.id.not_in(list(skip)))
                        .order_by(order_by)
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
            )
            if not ids:
                return []
            await session.execute(
                update(table)
                .where(table.id.in_(ids))
                .values(lease_owner=self.owner, lease_expires_at=now + self.lease)
                .execution_options(synchronize_session=False)
            )
            return list((await session.scalars(select(table).where(table.id.in_(ids)))).all())

        return await self.db.transact(take)

    async def keep(self, row_id: uuid.UUID) -> None:
        """Renew the lease on ``row_id`` every third of its length until cancelled (run it
        beside the work) or until the lease is found lost."""
        table = self._table
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)

            async def extend(session: AsyncSession) -> int:
                result: Any = await session.execute(
                    update(table)
                    .where(table.id == row_id, table.lease_owner == self.owner)
                    .values(lease_expires_at=utcnow() + self.lease)
                    .execution_options(synchronize_session=False)
                )
                return int(result.rowcount)

            try:
                if not await self.db.transact(extend):
                    log.warning("%s: lost the lease on %s", self.what, row_id)
                    return
            except Exception:
                log.exception("%s: renewing the lease on %s failed", self.what, row_id)

    async def take_back(self, session: AsyncSession, row_id: uuid.UUID) -> T | None:
        """The row locked with its lease ended, to record the work's outcome on; None when
        it changed hands meanwhile (the lease lapsed and another replica took it)."""
        table = self._table
        row = await session.scalar(
            select(table)
            .where(table.id == row_id, table.lease_owner == self.owner)
            .with_for_update()
        )
        if row is None:
            log.warning("%s: %s changed hands during its step; outcome dropped", self.what, row_id)
            return None
        row.lease_owner, row.lease_expires_at = None, None
        return row  # type: ignore[no-any-return]

    async def let_go(self, running: Iterable[asyncio.Task[None]]) -> None:
        """Cancel the running work and drop every lease of this replica for another one."""
        tasks = list(running)
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=RELEASE_WAIT_SECONDS)
            for task in stuck:
                log.warning("%s: %s did not stop when cancelled", self.what, task.get_name())
        table = self._table

        async def release(session: AsyncSession) -> None:
            await session.execute(
                update(table)
                .where(table.lease_owner == self.owner)
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )

        with contextlib.suppress(Exception):
            await self.db.transact(release)
