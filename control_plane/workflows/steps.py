"""A workflow's rows: its own (``WorkflowColumns``: state, error, the current step's
command, deadline and attempts, ``next_run_at``, the lease) and its steps' (``StepColumns``:
one step in ``position`` order, with what it did in ``detail``). Each workflow adds its
subject and the steps' foreign key to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import new_id

STEP_STATES = ("pending", "running", "done", "failed", "rolled_back", "skipped")
# A workflow in these states holds its subject (one at a time per server: a partial unique
# index on this condition).
ACTIVE_STATES = ("running", "rolling_back")
ACTIVE_WHERE = text("state IN ('running', 'rolling_back')")


class WorkflowColumns:
    """The columns every workflow row has (mixed into a workflow's model), read and written
    by ``control_plane.workflows.runner``."""

    state: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text)
    step_command_id: Mapped[uuid.UUID | None]
    step_attempts: Mapped[int] = mapped_column(Integer, default=0)
    step_deadline_at: Mapped[datetime | None]
    next_run_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class StepColumns:
    """The columns every step row has (mixed into a workflow's step model)."""

    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(24))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    detail: Mapped[str] = mapped_column(Text, default="")


S = TypeVar("S", bound=StepColumns)


def step_rows(model: type[S], names: Sequence[str], now: datetime, **owner: Any) -> list[S]:
    """A new workflow's steps: the first running from ``now``, the rest pending; ``owner``
    names the tenant and the workflow row they belong to."""
    rows = []
    for position, name in enumerate(names):
        row = model(**{"id": new_id(), **owner})
        row.position, row.name, row.detail = position, name, ""
        row.state = "running" if position == 0 else "pending"
        row.started_at = now if position == 0 else None
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Done:
    """The step did its work (``skipped``: it had none to do here)."""

    message: str
    changes: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
