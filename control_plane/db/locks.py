"""Named locks that serialise work across replicas until the transaction ends.

PostgreSQL: a transaction-scoped advisory lock on the name's 64-bit hash
(``hashtextextended``), released at commit or rollback. SQLite has one writer at a time
and one process serving it, so there is nothing to take.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def hold(session: AsyncSession, name: str) -> None:
    """Wait for, then hold until this transaction ends, the lock called ``name`` (e.g.
    ``"busy:<server id>"``). Reads made after it see what the previous holder committed."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
            {"name": f"mailfleet:{name}"},
        )
