"""Two walls between tenants: ORM scoping (both databases), row-level security (PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.db.engine import Database
from control_plane.db.tenancy import TENANT_ROLE, TENANT_SETTING, CrossTenantWrite
from control_plane.tenants.models import Tenant
from control_plane.workspaces.models import Workspace


async def two_tenants(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    async with db.session() as session:
        a, b = Tenant(name=f"a-{uuid.uuid4()}"), Tenant(name=f"b-{uuid.uuid4()}")
        session.add_all([a, b])
        await session.flush()
        session.add_all(
            [Workspace(tenant_id=t.id, name=f"ws-{i}") for t in (a, b) for i in range(2)]
        )
        return a.id, b.id


async def test_orm_queries_without_a_filter_see_only_the_current_tenant(db: Database) -> None:
    a, b = await two_tenants(db)
    foreign = await _any_workspace_of(db, b)
    async with db.tenant_session(a) as session:
        owners = set((await session.scalars(select(Workspace.tenant_id))).all())
        tenants = (await session.scalars(select(Tenant.id))).all()
        by_pk = await session.get(Workspace, foreign)
    assert owners == {a}
    assert tenants == [a]
    assert by_pk is None


async def test_orm_bulk_update_cannot_touch_another_tenant(db: Database) -> None:
    a, b = await two_tenants(db)
    async with db.tenant_session(a) as session:
        await session.execute(update(Workspace).values(description="touched"))
    async with db.session() as session:
        rows = (
            await session.execute(
                select(Workspace.tenant_id, Workspace.description).where(
                    Workspace.tenant_id.in_([a, b])
                )
            )
        ).all()
    assert {(t, d) for t, d in rows} == {(a, "touched"), (b, "")}


async def test_tenant_session_refuses_to_write_another_tenants_row(db: Database) -> None:
    a, b = await two_tenants(db)
    with pytest.raises(CrossTenantWrite):
        async with db.tenant_session(a) as session:
            session.add(Workspace(tenant_id=b, name="smuggled"))
    async with db.session() as session:
        smuggled = await session.scalar(select(Workspace).where(Workspace.name == "smuggled"))
    assert smuggled is None


async def _any_workspace_of(db: Database, tenant_id: uuid.UUID) -> uuid.UUID:
    async with db.session() as session:
        found = await session.scalar(select(Workspace.id).where(Workspace.tenant_id == tenant_id))
    assert found is not None
    return found


def postgres_only(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature")


async def test_raw_sql_without_tenant_filter_returns_only_own_rows(db: Database) -> None:
    postgres_only(db)
    a, _ = await two_tenants(db)
    async with db.tenant_session(a) as session:
        workspaces = set((await session.scalars(text("SELECT tenant_id FROM workspaces"))).all())
        tenants = set((await session.scalars(text("SELECT id FROM tenants"))).all())
        role = await session.scalar(text("SELECT current_user"))
    assert role == TENANT_ROLE
    assert workspaces == {a}
    assert tenants == {a}


async def _select_as_tenant(conn: AsyncConnection, tenant_id: uuid.UUID) -> set[uuid.UUID]:
    await conn.execute(text(f"SET LOCAL ROLE {TENANT_ROLE}"))
    await conn.execute(
        text("SELECT set_config(:n, :v, true)"), {"n": TENANT_SETTING, "v": str(tenant_id)}
    )
    return set((await conn.scalars(text("SELECT tenant_id FROM workspaces"))).all())


async def test_the_policy_is_what_holds_the_wall(db: Database) -> None:
    """Without the policy the same unfiltered query no longer returns the tenant's own rows."""
    postgres_only(db)
    a, _ = await two_tenants(db)
    async with db.engine.connect() as conn:
        async with conn.begin() as tx:
            await conn.execute(text("DROP POLICY tenant_isolation ON workspaces"))
            assert await _select_as_tenant(conn, a) == set()  # RLS on, no policy: deny all
            await tx.rollback()
        async with conn.begin() as tx:
            await conn.execute(text("ALTER TABLE workspaces DISABLE ROW LEVEL SECURITY"))
            assert len(await _select_as_tenant(conn, a)) > 1  # no RLS: every tenant leaks
            await tx.rollback()
        async with conn.begin() as tx:
            assert await _select_as_tenant(conn, a) == {a}  # policy back: only its own
            await tx.rollback()


async def test_rls_refuses_inserting_rows_for_another_tenant(db: Database) -> None:
    postgres_only(db)
    a, b = await two_tenants(db)
    with pytest.raises(Exception, match="row-level security"):
        async with db.tenant_session(a) as session:
            await session.execute(
                text(
                    "INSERT INTO workspaces (id, tenant_id, name, description)"
                    " VALUES (:i, :t, 'x', '')"
                ),
                {"i": uuid.uuid4(), "t": b},
            )


async def test_no_tenant_setting_means_no_rows(db: Database) -> None:
    postgres_only(db)
    await two_tenants(db)
    async with db.engine.connect() as conn, conn.begin() as tx:
        await conn.execute(text(f"SET LOCAL ROLE {TENANT_ROLE}"))
        assert (await conn.scalars(text("SELECT id FROM workspaces"))).all() == []
        await tx.rollback()
