"""When each periodic job last ran on a timer round, shared by the replicas.

A timer round runs only the jobs no replica ran within the interval, so two replicas scan
for due work as often as one does (before, each ran every job every round).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.migrations.columns import moment

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "periodic_rounds",
        sa.Column("name", sa.String(length=100), nullable=False),
        moment("ran_at"),
        sa.Column("ran_by", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_periodic_rounds")),
    )


def downgrade() -> None:
    op.drop_table("periodic_rounds")
