"""A workflow's step row: one step in ``position`` order, with what it did (``detail``).

The workflow's own row carries the rest (state, error, the step's deadline and attempts,
``next_run_at``, the lease); each workflow adds the foreign key to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

STEP_STATES = ("pending", "running", "done", "failed", "rolled_back", "skipped")


class StepColumns:
    """The columns every step row has (mixed into a workflow's step model)."""

    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(24))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    detail: Mapped[str] = mapped_column(Text, default="")


@dataclass(frozen=True)
class Done:
    """The step did its work (``skipped``: it had none to do here)."""

    message: str
    changes: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
