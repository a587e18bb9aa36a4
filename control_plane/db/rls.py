"""Row-level security for tenant tables, used by migrations (PostgreSQL only).

Tenant-scoped sessions run as ``mailfleet_tenant`` (see tenancy.py); the policies below let
that role see and write only rows whose tenant column equals the transaction's
``mailfleet.tenant_id`` setting. With the setting absent, the role sees nothing at all.
"""

from __future__ import annotations

from alembic import op

from control_plane.db.tenancy import TENANT_ROLE, TENANT_SETTING

POLICY = "tenant_isolation"


def _is_postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


# Also run before restoring a dump into a new cluster, whose GRANTs name the role.
CREATE_TENANT_ROLE = f"""
    DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{TENANT_ROLE}') THEN
        CREATE ROLE {TENANT_ROLE} NOLOGIN NOINHERIT NOBYPASSRLS;
      END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END $$
"""


def ensure_tenant_role() -> None:
    """Create the cluster-wide role once and let the migrating user switch to it."""
    if not _is_postgres():
        return
    op.execute(CREATE_TENANT_ROLE)
    op.execute(f"GRANT {TENANT_ROLE} TO CURRENT_USER")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {TENANT_ROLE}")


def enable_tenant_rls(table: str, column: str = "tenant_id") -> None:
    if not _is_postgres():
        return
    current = f"NULLIF(current_setting('{TENANT_SETTING}', true), '')::uuid"
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {POLICY} ON {table} TO {TENANT_ROLE} "
        f"USING ({column} = {current}) WITH CHECK ({column} = {current})"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {TENANT_ROLE}")


def disable_tenant_rls(table: str) -> None:
    if not _is_postgres():
        return
    op.execute(f"REVOKE ALL ON {table} FROM {TENANT_ROLE}")
    op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
