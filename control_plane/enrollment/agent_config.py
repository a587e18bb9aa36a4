"""The agent.toml a server's agent needs: addresses, the CA pin and a join token — nothing else."""

from __future__ import annotations

import json
from datetime import datetime


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
