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
        region=server.region,
        plan=server.plan,
        plan_monthly_price=server.plan_monthly_price,
        plan_currency=server.plan_currency,
        state=server.state,
        state_changed_at=server.state_changed_at,
        failed_step=server.failed_step,
        failure_reason=server.failure_reason,
        instance_id=server.instance_id,
        ipv4=server.ipv4,
        mail_stack=server.mail_stack,
        mail_hostname=server.mail_hostname,
        ssh_public_key=server.ssh_public_key,
        ssh_host_key=server.ssh_host_key,
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
