"""An agent's status is derived, never stored: it follows from enrollment and the last heartbeat."""

from __future__ import annotations

from datetime import datetime, timedelta

from control_plane.servers.models import Server
from control_plane.servers.schemas import AgentStatus, ServerOut


def agent_status(server: Server, now: datetime, unknown_after: timedelta) -> AgentStatus:
    if server.agent_state == "revoked":
        return "revoked"
    if server.last_heartbeat_at is None:
        return "pending"
    return "online" if now - server.last_heartbeat_at <= unknown_after else "unknown"


def server_out(server: Server, now: datetime, unknown_after: timedelta) -> ServerOut:
    return ServerOut(
        id=server.id,
        tenant_id=server.tenant_id,
        workspace_id=server.workspace_id,
        name=server.name,
        provider=server.provider,
        status=agent_status(server, now, unknown_after),
        agent_version=server.agent_version,
        hostname=server.hostname,
        capabilities=[c for c in server.capabilities.split(",") if c],
        enrolled_at=server.enrolled_at,
        last_heartbeat_at=server.last_heartbeat_at,
        certificate_serial=server.certificate_serial,
        certificate_expires_at=server.certificate_not_after,
        created_at=server.created_at,
        updated_at=server.updated_at,
    )
