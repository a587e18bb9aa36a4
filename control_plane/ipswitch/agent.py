"""The IP switch's agent commands: the shared follower (``control_plane.workflows.agent``)
under the ``ipswitch`` idempotency prefix."""

from __future__ import annotations

from typing import Any

from control_plane.commands.models import Command
from control_plane.db.engine import Database
from control_plane.ipswitch.models import IpSwitch
from control_plane.workflows import agent as shared
from control_plane.workflows.agent import RUN_SECONDS, Pending, settle

PREFIX = "ipswitch"
__all__ = ["RUN_SECONDS", "Pending", "follow", "result", "settle"]


async def result(
    db: Database, switch: IpSwitch, kind: str, payload: dict[str, Any], label: str, expire: float
) -> dict[str, Any] | Pending:
    return await shared.result(db, switch, PREFIX, kind, payload, label, expire)


async def follow(
    db: Database,
    switch: IpSwitch,
    kind: str,
    payload: dict[str, Any],
    label: str,
    run: float,
    expire: float,
) -> Command | Pending:
    return await shared.follow(db, switch, PREFIX, kind, payload, label, run, expire)
