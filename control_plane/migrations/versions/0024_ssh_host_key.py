"""The SSH host key a server's VPS showed on first contact (the agent's install over SSH).

Pinned then, so a later connection that meets another key is refused: a VPS whose address
was taken over, or a machine in the middle, never receives the agent's join token.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain nullable column: both PostgreSQL and SQLite add it in place.
    op.add_column("servers", sa.Column("ssh_host_key", sa.Text(), nullable=True))


def downgrade() -> None:
    # Not batch mode (it would rebuild ``servers`` on SQLite, cascading into the tables that
    # reference it); SQLite 3.35+ drops a plain column in place.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE servers DROP COLUMN ssh_host_key")
    else:
        op.drop_column("servers", "ssh_host_key")
