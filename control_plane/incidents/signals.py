"""What a watcher tells the incident machinery: one subject's check is ok, failing or unknown.

Health checks send them for servers; later features (IP listings, budgets, forecasts) send
them for IPs, domains, workspaces and tenants (budgets), and get the same incidents, grouping
and escalation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from control_plane.servers.models import Server

SubjectKind = Literal["server", "ip", "domain", "workspace", "tenant"]


@dataclass(frozen=True)
class Signal:
    """A confirmed observation (the sender has applied its own flap guard).

    ``failing`` opens an incident for (subject, check) or keeps it open; ``ok`` resolves it;
    ``unknown`` with severity ``critical`` (e.g. three unknowns in a row) counts as failing;
    any other ``unknown`` changes nothing.
    """

    tenant_id: uuid.UUID
    subject_kind: SubjectKind
    subject_id: str
    check: str
    state: Literal["ok", "failing", "unknown"]
    severity: Literal["critical", "warning", "info"]
    summary: str
    server_id: uuid.UUID | None = None  # the server it concerns: grouping, silences, inhibition
    workspace_id: uuid.UUID | None = None
    # When the failure was first seen, if before now (a flap guard's first sighting): the
    # incident dates from it, and so does its group window — the re-check's wait is not
    # added again before the first notification.
    since: datetime | None = None


def server_signal(
    server: Server,
    check: str,
    state: Literal["ok", "failing", "unknown"],
    severity: Literal["critical", "warning", "info"],
    summary: str,
    since: datetime | None = None,
) -> Signal:
    """A check of a server, with what grouping, silences and routing read (its tenant,
    workspace and id); every watcher of servers builds its signals here."""
    return Signal(
        tenant_id=server.tenant_id,
        subject_kind="server",
        subject_id=str(server.id),
        check=check,
        state=state,
        severity=severity,
        summary=summary[:1000],
        server_id=server.id,
        workspace_id=server.workspace_id,
        since=since,
    )
