"""DKIM keys per domain and selector (for rotation with an overlap), the server's rotation
schedule, and mail aliases.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import UTCDateTime
from control_plane.db.rls import disable_tenant_rls, enable_tenant_rls
from control_plane.migrations.columns import reference, tenant_row, timestamps

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SERVER_COLUMNS = (
    ("dkim_next_selector", sa.String(63)),
    ("dkim_switch_at", UTCDateTime()),
    ("dkim_retiring_selector", sa.String(63)),
    ("dkim_retire_at", UTCDateTime()),
)


def _domain_row(table: str, *columns: sa.Column[object]) -> None:
    """A tenant table hanging off a mail domain."""
    op.create_table(
        table,
        *tenant_row(),
        reference("domain_id", "mail_domains"),
        *columns,
        *timestamps(),
    )
    enable_tenant_rls(table)


def upgrade() -> None:
    # Plain ALTER TABLE on both databases (SQLite >= 3.35 drops columns natively): a batch
    # copy of mail_domains would cascade-delete its mailboxes.
    for name, type_ in _SERVER_COLUMNS:
        op.add_column("servers", sa.Column(name, type_, nullable=True))
    _domain_row(
        "dkim_keys",
        sa.Column("selector", sa.String(63), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.UniqueConstraint("domain_id", "selector", name="uq_dkim_keys_selector"),
    )
    _domain_row(
        "mail_aliases",
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("destinations", sa.Text(), nullable=False),
        sa.Column("comment", sa.String(255), nullable=False),
        sa.Column("command_id", sa.Uuid(), nullable=True),
        sa.UniqueConstraint("address", name="uq_mail_aliases_address"),
    )
    bind = op.get_bind()
    keys = sa.table(
        "dkim_keys",
        sa.column("id", sa.Uuid()),
        sa.column("tenant_id", sa.Uuid()),
        sa.column("domain_id", sa.Uuid()),
        sa.column("selector", sa.String()),
        sa.column("public_key", sa.Text()),
    )
    rows = bind.execute(
        sa.text("SELECT id, tenant_id, dkim_selector, dkim_public_key FROM mail_domains")
    ).all()
    if rows:
        op.bulk_insert(
            keys,
            [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": uuid.UUID(str(row.tenant_id)),
                    "domain_id": uuid.UUID(str(row.id)),
                    "selector": row.dkim_selector,
                    "public_key": row.dkim_public_key,
                }
                for row in rows
            ],
        )
    op.drop_column("mail_domains", "dkim_public_key")
    op.drop_column("mail_domains", "dkim_selector")


def downgrade() -> None:
    op.add_column(
        "mail_domains",
        sa.Column("dkim_selector", sa.String(63), nullable=False, server_default=""),
    )
    op.add_column(
        "mail_domains",
        sa.Column("dkim_public_key", sa.Text(), nullable=False, server_default=""),
    )
    op.execute(
        "UPDATE mail_domains SET dkim_selector = k.selector, dkim_public_key = k.public_key "
        "FROM dkim_keys AS k, servers AS s "
        "WHERE k.domain_id = mail_domains.id AND s.id = mail_domains.server_id "
        "AND k.selector = s.dkim_selector"
    )
    for table in ("mail_aliases", "dkim_keys"):
        disable_tenant_rls(table)
        op.drop_table(table)
    for name, _ in reversed(_SERVER_COLUMNS):
        op.drop_column("servers", name)
