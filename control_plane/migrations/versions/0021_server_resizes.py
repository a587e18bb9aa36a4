"""Server resizes: the durable workflow, its steps, and the server's plan price.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30
"""

from collections.abc import Sequence

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # issue 16: the resize helper writes this


def downgrade() -> None:
    pass
