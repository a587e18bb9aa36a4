"""Cost tracking: the price catalog, the metering ledger, budgets, provider invoices; a
domain's workspace, a tenant's cost split, a workspace's markup.

The ledger starts with what is already known: a span per server that has a plan (from its
creation, at its current plan) and per IP address (assigned … released), so a database
upgraded mid-month bills the month so far.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import Money
from control_plane.db.rls import enable_tenant_rls
from control_plane.db.tenancy import TENANT_ROLE
from control_plane.migrations.columns import (
    drop_tenant_tables,
    moment,
    reference,
    tenant_row,
    timestamps,
)

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_TABLES = ("meter_spans", "meter_readings", "budgets", "budget_alerts")
RATE = 6


def _ledger_identity() -> list[sa.Column[object]]:
    return [
        sa.Column("server_id", sa.Uuid(), nullable=False),
        sa.Column("server_name", sa.String(200), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.String(32), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "prices",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", Money(RATE), nullable=False),
        sa.Column("included_gb", sa.Integer(), nullable=True),
        moment("effective_from"),
        moment("effective_to", nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        moment("created_at"),
        sa.UniqueConstraint(
            "provider", "kind", "item", "effective_from", name="uq_prices_provider_kind_item_from"
        ),
    )
    op.create_index("ix_prices_lookup", "prices", ["provider", "kind", "item", "effective_from"])
    if op.get_bind().dialect.name == "postgresql":  # the catalog is public: tenants rate by it
        op.execute(f"GRANT SELECT ON prices TO {TENANT_ROLE}")
    op.create_table(
        "meter_spans",
        *tenant_row(),
        *_ledger_identity(),
        sa.Column("resource", sa.String(16), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        moment("started_at"),
        moment("ended_at", nullable=True),
    )
    op.create_index(
        "ix_meter_spans_tenant_time", "meter_spans", ["tenant_id", "started_at", "ended_at"]
    )
    op.create_index("ix_meter_spans_server", "meter_spans", ["server_id", "resource"])
    op.create_table(
        "meter_readings",
        *tenant_row(),
        *_ledger_identity(),
        sa.Column("resource", sa.String(24), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        moment("recorded_at"),
        sa.UniqueConstraint(
            "server_id", "resource", "item", "day", name="uq_meter_readings_server_resource_day"
        ),
    )
    op.create_index("ix_meter_readings_tenant_day", "meter_readings", ["tenant_id", "day"])
    op.create_table(
        "budgets",
        *tenant_row(),
        *timestamps(),
        reference("workspace_id", "workspaces", nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("thresholds", sa.String(100), nullable=False),
    )
    for name, column, where in (
        ("uq_budgets_workspace", "workspace_id", "workspace_id IS NOT NULL"),
        ("uq_budgets_tenant", "tenant_id", "workspace_id IS NULL"),
    ):
        condition = sa.text(where)
        op.create_index(name, "budgets", [column], unique=True,
                        postgresql_where=condition, sqlite_where=condition)  # fmt: skip
    op.create_table(
        "budget_alerts",
        *tenant_row(),
        reference("budget_id", "budgets"),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("basis", sa.String(8), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        moment("fired_at"),
        sa.UniqueConstraint(
            "budget_id", "month", "basis", "threshold", name="uq_budget_alerts_once"
        ),
    )
    op.create_table(
        "provider_invoices",
        sa.Column("id", sa.Uuid(), primary_key=True),
        *timestamps(),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", Money(), nullable=False),
        sa.Column("tolerance_percent", Money(), nullable=False),
        sa.Column("imported_by", sa.String(300), nullable=True),
    )
    op.create_table(
        "provider_invoice_lines",
        sa.Column("id", sa.Uuid(), primary_key=True),
        reference("invoice_id", "provider_invoices"),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("invoiced", Money(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("server_id", sa.Uuid(), nullable=True),
        sa.Column("expected", Money(), nullable=True),
        sa.Column("variance", Money(), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
    )
    for table in TENANT_TABLES:
        enable_tenant_rls(table)

    # On SQLite, batch mode rebuilds mail_domains to add a column with a foreign key
    # (db/migrate.py turns foreign keys off meanwhile, so nothing cascades).
    with op.batch_alter_table("mail_domains") as batch:
        batch.add_column(sa.Column("workspace_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            "fk_mail_domains_workspace_id_workspaces", "workspaces", ["workspace_id"], ["id"],
            ondelete="SET NULL",
        )  # fmt: skip
        batch.create_index("ix_mail_domains_workspace_id", ["workspace_id"])
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(
            sa.Column("cost_split", sa.String(16), nullable=False, server_default="mailboxes")
        )
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("markup_percent", Money(), nullable=True))
        batch.add_column(sa.Column("markup_fixed", Money(), nullable=True))
    _backfill()


def _backfill() -> None:
    """Domains take their server's workspace; the ledger opens with what is held now."""
    op.execute(
        "UPDATE mail_domains SET workspace_id = "
        "(SELECT servers.workspace_id FROM servers WHERE servers.id = mail_domains.server_id)"
    )
    bind = op.get_bind()
    servers = sa.table(
        "servers", sa.column("id", sa.Uuid()), sa.column("tenant_id", sa.Uuid()),
        sa.column("workspace_id", sa.Uuid()), sa.column("name", sa.String()),
        sa.column("provider", sa.String()), sa.column("plan", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )  # fmt: skip
    ips = sa.table(
        "ip_addresses", sa.column("server_id", sa.Uuid()), sa.column("address", sa.String()),
        sa.column("provider", sa.String()),
        sa.column("assigned_at", sa.DateTime(timezone=True)),
        sa.column("released_at", sa.DateTime(timezone=True)),
    )  # fmt: skip
    import uuid as _uuid
    from datetime import UTC

    from control_plane.db.base import new_id

    def _utc(value: object) -> object:
        if value is None or getattr(value, "tzinfo", True) is not None:
            return value
        return value.replace(tzinfo=UTC)  # type: ignore[attr-defined]

    spans = sa.table(
        "meter_spans", sa.column("id", sa.Uuid()), sa.column("tenant_id", sa.Uuid()),
        sa.column("server_id", sa.Uuid()), sa.column("server_name", sa.String()),
        sa.column("workspace_id", sa.Uuid()), sa.column("provider", sa.String()),
        sa.column("resource", sa.String()), sa.column("item", sa.String()),
        sa.column("started_at", moment("started_at").type),
        sa.column("ended_at", moment("ended_at").type),
    )  # fmt: skip
    known: dict[_uuid.UUID, sa.Row[object]] = {}
    rows: list[dict[str, object]] = []
    for server in bind.execute(sa.select(servers).where(servers.c.plan.is_not(None))):
        known[server.id] = server
        rows.append({
            "id": new_id(), "tenant_id": server.tenant_id, "server_id": server.id,
            "server_name": server.name, "workspace_id": server.workspace_id,
            "provider": server.provider, "resource": "server", "item": server.plan,
            "started_at": _utc(server.created_at), "ended_at": None,
        })  # fmt: skip
    for ip in bind.execute(sa.select(ips)):  # every address: rating bills those beyond one
        server = known.get(ip.server_id)
        if server is None:
            continue
        rows.append({
            "id": new_id(), "tenant_id": server.tenant_id, "server_id": server.id,
            "server_name": server.name, "workspace_id": server.workspace_id,
            "provider": ip.provider, "resource": "ip", "item": ip.address,
            "started_at": _utc(ip.assigned_at), "ended_at": _utc(ip.released_at),
        })  # fmt: skip
    if rows:
        op.bulk_insert(spans, rows)


def downgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("markup_fixed")
        batch.drop_column("markup_percent")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("cost_split")
    with op.batch_alter_table("mail_domains") as batch:
        batch.drop_index("ix_mail_domains_workspace_id")
        batch.drop_constraint("fk_mail_domains_workspace_id_workspaces", type_="foreignkey")
        batch.drop_column("workspace_id")
    op.drop_table("provider_invoice_lines")
    op.drop_table("provider_invoices")
    drop_tenant_tables(TENANT_TABLES)
    op.drop_index("ix_prices_lookup", "prices")
    op.drop_table("prices")
