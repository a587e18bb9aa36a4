"""Throwaway PostgreSQL databases on the local server (127.0.0.1:5432)."""

from __future__ import annotations

import os
import secrets

import asyncpg

ADMIN_DSN = os.environ.get(
    "MAILFLEET_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def create_database(prefix: str = "mailfleet_test") -> str:
    """Create an empty database and return its SQLAlchemy URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
