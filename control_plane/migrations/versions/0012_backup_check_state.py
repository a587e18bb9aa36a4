"""A backup check's and drill's outcome is a column (ok, failed, unknown; NULL: never ran)
rather than a "could not run: " prefix on the stored error, so readers need not parse text.

Existing rows are carried over: an error with the prefix becomes ``unknown`` with the prefix
stripped, any other error ``failed``, a finished run without one ``ok``. Downgrade puts the
prefix back.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOT_RUN = "could not run: "  # the old marker, frozen here: the code no longer has it
_KINDS = ("check", "drill")


def _policies() -> sa.TableClause:
    return sa.table(
        "backup_policies",
        *[sa.column(f"last_{kind}_at", sa.DateTime()) for kind in _KINDS],
        *[sa.column(f"last_{kind}_error", sa.Text()) for kind in _KINDS],
        *[sa.column(f"last_{kind}_state", sa.String(16)) for kind in _KINDS],
    )


def upgrade() -> None:
    with op.batch_alter_table("backup_policies") as batch:
        for kind in _KINDS:
            batch.add_column(sa.Column(f"last_{kind}_state", sa.String(16), nullable=True))
    policies = _policies()
    for kind in _KINDS:
        at, error = policies.c[f"last_{kind}_at"], policies.c[f"last_{kind}_error"]
        state = policies.c[f"last_{kind}_state"]
        op.execute(
            policies.update()
            .where(error.startswith(NOT_RUN, autoescape=True))
            .values({state: "unknown", error: sa.func.substr(error, len(NOT_RUN) + 1)})
        )
        op.execute(
            policies.update().where(state.is_(None), error.is_not(None)).values({state: "failed"})
        )
        op.execute(policies.update().where(state.is_(None), at.is_not(None)).values({state: "ok"}))


def downgrade() -> None:
    policies = _policies()
    for kind in _KINDS:
        error, state = policies.c[f"last_{kind}_error"], policies.c[f"last_{kind}_state"]
        op.execute(
            policies.update()
            .where(state == "unknown")
            .values({error: sa.literal(NOT_RUN, sa.Text()) + sa.func.coalesce(error, "")})
        )
    with op.batch_alter_table("backup_policies") as batch:
        for kind in reversed(_KINDS):
            batch.drop_column(f"last_{kind}_state")
