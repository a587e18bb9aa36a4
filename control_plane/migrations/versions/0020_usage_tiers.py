"""Usage tiers: rates and mail queue in raw samples, wider series names, hourly rollups, and
on PostgreSQL raw samples and 1-minute rollups range-partitioned by day.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30
"""

from collections.abc import Sequence

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # issue 16: the tiers helper writes this


def downgrade() -> None:
    pass
