"""The agent.toml a server's agent needs: addresses, the CA pin and a join token — nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.enrollment.service import create_join_token
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.vault.pki import AgentPki


@dataclass(frozen=True)
class JoinConfig:
    token: str
    expires_at: datetime
    ca_pin: str
    gateway_address: str
    enroll_address: str
    agent_toml: str


async def issue_join_config(
    session: AsyncSession,
    pki: AgentPki,
    settings: Settings,
    server: Server,
    addresses: tuple[str, str] | None = None,
) -> JoinConfig:
    """A fresh one-time token for ``server`` and everything its agent needs around it.

    ``addresses`` (agent link, enrollment) replace the advertised ones for machines that
    reach the control plane another way (the local provider's namespaces).
    """
    ca_pin = await pki.ca_pin()
    issued = await create_join_token(
        session, server, timedelta(seconds=settings.join_token_ttl_seconds)
    )
    gateway, enroll = addresses or (settings.advertised_gateway, settings.advertised_enroll)
    return JoinConfig(
        token=issued.token,
        expires_at=issued.expires_at,
        ca_pin=ca_pin,
        gateway_address=gateway,
        enroll_address=enroll,
        agent_toml=render_agent_toml(
            server_id=str(server.id),
            server_name=server.name,
            gateway_address=gateway,
            enroll_address=enroll,
            ca_pin=ca_pin,
            join_token=issued.token,
            expires_at=issued.expires_at,
        ),
    )


def render_agent_toml(
    *,
    server_id: str,
    server_name: str,
    gateway_address: str,
    enroll_address: str,
    ca_pin: str,
    join_token: str,
    expires_at: datetime,
) -> str:
    # json.dumps yields valid TOML basic strings (same escapes) for these values.
    return (
        f"# MailFleet agent for server {json.dumps(server_name)[1:-1]} ({server_id}).\n"
        f"# The join token is single use and expires at {expires_at.isoformat()}.\n"
        "[control_plane]\n"
        f"address = {json.dumps(gateway_address)}\n"
        f"enroll_address = {json.dumps(enroll_address)}\n"
        f"ca_pin = {json.dumps(ca_pin)}\n"
        f"join_token = {json.dumps(join_token)}\n"
    )
