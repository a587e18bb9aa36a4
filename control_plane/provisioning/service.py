"""Ordering, deleting and retrying servers: the workflow's entry points for API and CLI."""

from __future__ import annotations

import uuid

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.errors import Conflict, InvalidInput
from control_plane.mail import dkim
from control_plane.provisioning import events, ssh, ssh_adopt
from control_plane.provisioning.registry import (
    ADOPTED,
    MANUAL,
    OWNED_BY_CUSTOMER,
    ProviderRegistry,
)
from control_plane.provisioning.workflow import enter
from control_plane.servers import service as servers
from control_plane.servers.models import Server
from control_plane.servers.schemas import ServerCreate
from control_plane.settings import Settings
from control_plane.vault.client import Vault


async def order_server(
    session: AsyncSession,
    providers: ProviderRegistry,
    settings: Settings,
    tenant_id: uuid.UUID,
    data: ServerCreate,
    replacing: Server | None = None,
) -> Server:
    """Record a new server and start its workflow; an unknown provider/region/plan is a 422,
    and so is an adoption's bad address or credential (``ssh_adopt``), before any write.
    ``replacing``: the server a recovery rebuilds (its machine may be adopted again)."""
    plan, adoption = None, None
    if data.provider == ADOPTED:
        await providers.get(ADOPTED)  # a 422 where adoption is switched off
        adoption = ssh_adopt.checked(data.address, data.ssh_private_key, data.ssh_password)
    else:
        credential = (data.ssh_private_key, data.ssh_password)
        ssh_adopt.refuse_fields(data.provider, data.address, *credential)
    if data.provider in OWNED_BY_CUSTOMER:
        kind = "a manual" if data.provider == MANUAL else "an adopted"
        for name in ("region", "plan"):
            if getattr(data, name) is not None:
                raise InvalidInput(f"{kind} server takes no {name}", field=f"body.{name}")
    else:
        plan = await providers.check_order(data.provider, data.region, data.plan)
    if adoption is not None:
        await ssh_adopt.address_free(session, settings, tenant_id, adoption.address, replacing)
    server = await servers.create_server(session, tenant_id, data)
    if plan is not None:  # the price it is ordered at; a resize records the next one
        server.plan_monthly_price, server.plan_currency = plan.monthly_price, plan.currency
    if server.mail_stack == "mailu":
        server.dkim_selector = dkim.default_selector(utcnow())
    if adoption is not None:
        await ssh_adopt.start(session, providers.vault, settings, server, adoption)
        return server
    if data.provider == MANUAL:
        enter(server, "enrolling", settings)
        events.record(session, server, "state", "registered; waiting for its agent to enroll")
    else:
        enter(server, "requested", settings)
        where = f"{data.provider} {data.region}, plan {data.plan}"
        events.record(session, server, "state", f"requested from {where}")
    await session.flush()
    return server


async def deprovision(session: AsyncSession, server: Server, settings: Settings) -> Server:
    """Start tearing the server down (also cancels a provisioning under way). Idempotent."""
    if server.state != "deprovisioning":
        enter(server, "deprovisioning", settings)
        server.failed_step = server.failure_reason = None
        events.record(session, server, "state", "deprovisioning requested")
        await session.flush()
    return server


async def retry(session: AsyncSession, server: Server, settings: Settings) -> Server:
    """Run a failed server's failed step again, with a fresh deadline."""
    if server.state != "failed" or server.failed_step is None:
        raise Conflict(f"server {server.id} is {server.state}; only a failed server is retried")
    step = server.failed_step
    enter(server, step, settings)
    server.failed_step = server.failure_reason = None
    events.record(session, server, "state", f"retrying {step}")
    await session.flush()
    return server


async def replace_ssh_credential(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    server: Server,
    key: SecretStr | None,
    password: SecretStr | None,
) -> Server:
    """An adopted server's new SSH credential (the old one was refused, or changed): into
    Vault, never shown again; an install that failed runs again with it, which is what
    replacing it is for."""
    if server.provider != ADOPTED:
        raise Conflict(
            f"server {server.id} is not an adopted machine (provider {server.provider}); "
            "its SSH key is MailFleet's own (rotate it)"
        )
    checked = ssh_adopt.login(key, password)
    server.ssh_public_key = checked.public_key
    events.record(session, server, "note", "SSH credential replaced")
    await session.flush()
    await ssh_adopt.keep_login(vault, server, checked)
    if server.state == "failed" and server.failed_step == "installing_agent":
        await retry(session, server, settings)
    return server


async def clear_ssh_host_key(session: AsyncSession, server: Server) -> Server:
    """Forget the pinned SSH host key after a legitimate reinstall of the machine: the next
    login pins the key it meets then. Admin only (routes), audited, and an event names the
    key forgotten, so a pin is never dropped silently."""
    pinned = server.ssh_host_key
    if pinned is None:
        raise Conflict(f"server {server.id} has no SSH host key pinned")
    server.ssh_host_key = None
    import asyncssh  # only here, not with every API start

    fingerprint = asyncssh.import_public_key(pinned).get_fingerprint()
    events.record(
        session, server, "note", f"SSH host key pin {fingerprint} cleared; the next login pins anew"
    )
    await session.flush()
    return server


async def rotate_ssh_key(
    session: AsyncSession, vault: Vault, server: Server
) -> tuple[ssh.SshKeyPair, Command]:
    """A new admin key pair: written to Vault (a new version; the old one stays readable in
    the history until the agent confirms), then installed on the VPS by its agent, which
    replaces MailFleet's line in root's authorized_keys and keeps the customer's own."""
    if server.state != "ready":
        raise Conflict(f"server {server.id} is {server.state}; its key is rotated once ready")
    pair = await ssh.rotate_admin_key(vault, server.tenant_id, server.id)
    command = await commands.queue_system_command(
        session, server, "ssh.authorize", {"public_key": pair.public_key}, run_seconds=60
    )
    server.ssh_public_key, server.ssh_key_downloaded_at = pair.public_key, None
    events.record(session, server, "note", f"admin SSH key rotated; command {command.id}")
    await session.flush()
    return pair, command


async def take_ssh_key(session: AsyncSession, vault: Vault, server: Server) -> ssh.SshKeyPair:
    """The admin private key, handed out once; afterwards only a rotation makes a new one."""
    if server.ssh_key_downloaded_at is not None:
        raise Conflict(
            f"the SSH key of server {server.id} was already downloaded; rotate it for a new one"
        )
    pair = await ssh.read_admin_key(vault, server.tenant_id, server.id)
    if pair is None:
        raise Conflict(f"server {server.id} has no SSH key yet (state {server.state})")
    server.ssh_key_downloaded_at = utcnow()
    events.record(session, server, "note", "admin SSH private key downloaded")
    await session.flush()
    return pair
