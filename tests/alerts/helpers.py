"""One alerts object of each kind for the tenancy walk in tests/control_plane."""

from __future__ import annotations

import httpx


async def walk_objects(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """``channel_id``, ``policy_id`` and ``notification_id`` owned by the caller's tenant."""
    channel = await client.post(
        "/api/v1/alert-channels", json={"name": "victim-feed", "kind": "in_app"}, headers=headers
    )
    assert channel.status_code == 201, channel.text
    channel_id = channel.json()["id"]
    policy = await client.post(
        "/api/v1/escalation-policies",
        json={"name": "victim-policy", "steps": [{"channel_ids": [channel_id]}]},
        headers=headers,
    )
    assert policy.status_code == 201, policy.text
    sent = await client.post(f"/api/v1/alert-channels/{channel_id}/test", headers=headers)
    assert sent.status_code == 200, sent.text
    return {
        "channel_id": channel_id,
        "policy_id": policy.json()["id"],
        "notification_id": sent.json()["notification_id"],
    }
