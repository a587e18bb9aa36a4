"""The mail stack a server runs (MailU or none), its mail host name, and the command a
workflow step is waiting on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Servers made before MailU was managed keep running without it.
    op.add_column(
        "servers", sa.Column("mail_stack", sa.String(16), nullable=False, server_default="none")
    )
    op.add_column("servers", sa.Column("mail_hostname", sa.String(253), nullable=True))
    op.add_column("servers", sa.Column("step_command_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    for name in ("step_command_id", "mail_hostname", "mail_stack"):
        op.drop_column("servers", name)
