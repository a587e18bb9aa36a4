"""The provisioning workflow: what each step does, as a function of the server's row.

States::

    requested → creating → booting → [installing_agent] → enrolling → ready
         (any of them) ──DELETE──→ deprovisioning → (row deleted)
         (any step) ──error / timeout──→ failed (failed_step kept; retry or delete)

A step looks at the server as stored and returns an outcome (``Advance``, ``Wait``,
``Fail``, ``Deleted``); the runner (``runner.py``) applies it under the server's lease.
Steps are idempotent, so a step cut short by a crash simply runs again:

- requested: the admin SSH key pair exists in Vault (made once, check-and-set).
- creating: the instance is ordered under a name derived from the server id; a provider
  that already has an instance of that name returns it instead of renting a second
  (``Provider.create``'s contract). With the ``cloud-init`` bootstrap a fresh join token goes
  into its user data; with ``ssh`` it gets none.
- booting: polls the provider until the instance runs and has an address.
- installing_agent (``ssh`` bootstrap only): connects as root with the server's key from
  Vault, pins the host key on first contact, writes ``agent.toml`` with a fresh join token
  and runs the install script, its output recorded as events (``ssh_install.py``).
- enrolling: waits until the agent has enrolled and its stream is up (first heartbeat).
- deprovisioning: terminates every instance of the server's name (so one ordered just
  before a crash is found too), ends its metering spans (``costs.meter``), revokes the
  agent, destroys the server's Vault secrets, then deletes the row (its history with it;
  the ledger stays).

Metering: the runner opens the server's span of its plan when the instance id is
recorded (the VPS exists and is billed from then).

``manual`` servers skip to ``enrolling`` and wait there without a deadline: a person
installs their agent. Adopted (``ssh``) servers start at ``installing_agent`` with the
credential their owner gave (``ssh_adopt.py``); a refused credential fails the step at once.
Deleting an adopted server *forgets* it: its DNS records are withdrawn, its agent revoked
(the gateway refuses it from then on) and its secrets (the credential) destroyed, but the
machine is never touched: no provider call, nothing uninstalled, MailU's data kept.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.costs import meter
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.dns import service as dns_service
from control_plane.dns.publish import DnsProviderError
from control_plane.enrollment import service as enrollment
from control_plane.enrollment.agent_config import issue_join_config
from control_plane.errors import MailFleetError, NotFound
from control_plane.ips import provider_ips
from control_plane.mail import stack
from control_plane.mail.models import MailDomain
from control_plane.provisioning import events, ssh
from control_plane.provisioning.bootstrap import render_user_data
from control_plane.provisioning.providers.base import ProviderError, ProviderNotFound
from control_plane.provisioning.registry import (
    ADOPTED,
    MANUAL,
    OWNED_BY_CUSTOMER,
    ProviderRegistry,
)
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.tls import service as tls_service
from control_plane.tls.acme_issue import AcmeError
from control_plane.vault.client import Vault
from control_plane.vault.pki import AgentPki

if TYPE_CHECKING:
    from control_plane.provisioning import ssh_install

log = logging.getLogger(__name__)

MANUAL_BACKSTOP_SECONDS = 300.0
PROVISION_STEPS = (
    "requested",
    "creating",
    "booting",
    "installing_agent",
    "enrolling",
    "installing_mail",
    "dns",
    "tls",
)
OUTPUT_LINES = 500  # install output lines recorded as events per attempt; the rest counted
ACTIVE_STATES = (*PROVISION_STEPS, "deprovisioning")
ALL_STATES = (*ACTIVE_STATES, "ready", "failed")


@dataclass(frozen=True)
class Advance:
    to: str
    message: str
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Wait:
    """Not yet; look again later. ``message`` is recorded when it differs from the last."""

    message: str
    seconds: float | None = None
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fail:
    reason: str


@dataclass(frozen=True)
class Retry:
    """Failed in a way that may pass (provider busy, Vault down): back off and run again."""

    message: str
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deleted:
    message: str


Outcome = Advance | Wait | Retry | Fail | Deleted


def error_outcome(exc: MailFleetError) -> Retry | Fail:
    """A step that raised one of our errors: a provider's refusal fails it unless it may pass;
    anything else of ours (Vault down, a conflict) is tried again. Also the IP switch's."""
    if isinstance(exc, ProviderError):
        return Retry(exc.message) if exc.retryable else Fail(exc.message)
    return Retry(exc.detail)


def instance_name(server_id: uuid.UUID) -> str:
    """The provider-side name: unique per server, so ``create`` is idempotent across crashes."""
    return f"mf-{server_id}"


def step_timeout(settings: Settings, state: str) -> float | None:
    """How long a step may take in all (None: no deadline)."""
    return {
        "requested": settings.provision_create_timeout_seconds,
        "creating": settings.provision_create_timeout_seconds,
        "booting": settings.provision_boot_timeout_seconds,
        "installing_agent": settings.provision_install_timeout_seconds,
        "enrolling": settings.provision_enroll_timeout_seconds,
        "installing_mail": settings.provision_mail_timeout_seconds,
        "dns": settings.provision_dns_timeout_seconds,
        "tls": settings.provision_tls_timeout_seconds,
        "deprovisioning": settings.provision_deprovision_timeout_seconds,
    }.get(state)


def enter(server: Server, state: str, settings: Settings) -> None:
    """Move ``server`` into ``state``: a fresh step, due now, with the step's own deadline
    (none for manual servers, which wait on a person)."""
    now = utcnow()
    server.state, server.state_changed_at, server.step_attempts = state, now, 0
    server.step_command_id = None
    timeout = step_timeout(settings, state) if server.provider != MANUAL else None
    server.step_deadline_at = now + timedelta(seconds=timeout) if timeout else None
    server.next_step_at = now if state in ACTIVE_STATES else None


class Workflow:
    """The steps, with everything they touch."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        vault: Vault,
        pki: AgentPki,
        streams: handlers.Streams,
        providers: ProviderRegistry,
    ) -> None:
        self.settings, self.db, self.vault, self.pki = settings, db, vault, pki
        self.streams, self.providers = streams, providers

    async def step(self, server: Server) -> Outcome:
        handler = {
            "requested": self._requested,
            "creating": self._creating,
            "booting": self._booting,
            "installing_agent": self._installing_agent,
            "enrolling": self._enrolling,
            "installing_mail": self._installing_mail,
            "dns": self._dns,
            "tls": self._tls,
            "deprovisioning": self._deprovisioning,
        }[server.state]
        return await handler(server)

    async def _requested(self, server: Server) -> Outcome:
        await self.providers.get(server.provider, field="provider")
        public_key = await ssh.ensure_admin_key(self.vault, server.tenant_id, server.id)
        return Advance("creating", "admin SSH key ready", {"ssh_public_key": public_key})

    async def _creating(self, server: Server) -> Outcome:
        entry = await self.providers.get(server.provider, field="provider")
        if server.region is None or server.plan is None or server.ssh_public_key is None:
            return Fail("the order has no region, plan or SSH key")
        user_data = ""
        if entry.bootstrap == "cloud-init":
            user_data = render_user_data(await self._join_config(server), entry.install)
        issued = ssh.IssuedAdminKey(self.vault, server.tenant_id, server.id)
        instance = await entry.provider.create(
            instance_name(server.id),
            server.region,
            server.plan,
            user_data,
            server.ssh_public_key,
            issued,
        )
        # A provider that issued the key itself (Hostwinds) replaced the pair made here.
        pair = await ssh.read_admin_key(self.vault, server.tenant_id, server.id)
        public_key = pair.public_key if pair is not None else server.ssh_public_key
        return Advance(
            "booting",
            f"instance {instance.id} ordered from {server.provider}",
            {
                "instance_id": instance.id,
                "ipv4": instance.ipv4[0] if instance.ipv4 else None,
                "ssh_public_key": public_key,
            },
        )

    async def _booting(self, server: Server) -> Outcome:
        entry = await self.providers.get(server.provider, field="provider")
        if server.instance_id is None:
            return Fail("no instance was recorded for this server")
        try:
            instance = await entry.provider.get(server.instance_id)
        except ProviderNotFound:
            return Fail(f"instance {server.instance_id} disappeared at {server.provider}")
        if instance.status in ("error", "terminated"):
            return Fail(f"instance {instance.id} is {instance.status} at {server.provider}")
        failure = await entry.provider.boot_failure(instance.id)
        if failure is not None:
            return Fail(failure)
        if instance.status == "running" and instance.ipv4:
            if entry.bootstrap == "ssh":
                return Advance(
                    "installing_agent",
                    f"instance {instance.id} running at {instance.ipv4[0]}; "
                    "installing its agent over SSH",
                    {"ipv4": instance.ipv4[0]},
                )
            return Advance(
                "enrolling",
                f"instance {instance.id} running at {instance.ipv4[0]}; waiting for its agent",
                {"ipv4": instance.ipv4[0]},
            )
        return Wait(f"instance {instance.id} is {instance.status}")

    async def _join_config(self, server: Server) -> str:
        """A fresh ``agent.toml`` (new join token) for the server's provider's addresses."""
        entry = await self.providers.get(server.provider, field="provider")
        addresses = (entry.gateway_address, entry.enroll_address)

        async def join(session: AsyncSession) -> str:
            row = await session.get(Server, server.id)
            if row is None:
                raise NotFound("server", server.id)
            issued = await issue_join_config(session, self.pki, self.settings, row, addresses)
            return issued.agent_toml

        return await self.db.transact(join)

    async def _installing_agent(self, server: Server) -> Outcome:
        """The agent's install over SSH (``ssh_install``): one attempt per run; while sshd
        cannot be reached, again later for ``provision_ssh_connect_seconds``. A refusal fails
        the step with its reason, to be retried once its cause is fixed."""
        entry = await self.providers.get(server.provider, field="provider")
        if server.ipv4 is None:
            return Fail("no address was recorded for this server")
        # asyncssh loads with the first install, not with every ``serve`` start.
        from control_plane.provisioning import ssh_install

        adopted = server.provider == ADOPTED
        login = await ssh.read_login(self.vault, server.tenant_id, server.id, adopted)
        if login is None:
            return Fail("the server's SSH credential is missing from Vault")
        target = ssh_install.Target(
            server.ipv4, login.private_key, server.ssh_host_key, password=login.password
        )
        del login  # the credential lives on only inside the SSH client
        output = _OutputEvents(self.db, server.id)

        async def pin(host_key: str) -> None:
            async def record(session: AsyncSession) -> None:
                row = await session.get(Server, server.id)
                if row is not None and row.ssh_host_key is None:
                    row.ssh_host_key = host_key
                    events.record(session, row, "progress", f"SSH host key pinned: {host_key}")

            await self.db.transact(record)

        try:
            await ssh_install.install_agent(
                target,
                lambda: self._join_config(server),
                entry.install,
                on_first_key=pin,
                on_line=output.line,
            )
        except ssh_install.CredentialRefused as exc:
            if adopted:  # the machine is up and says no: waiting will not change that
                return Fail(f"{exc.detail}; replace the credential (PUT …/ssh-credential)")
            return self._unreachable(server, exc)
        except ssh_install.Unreachable as exc:
            return self._unreachable(server, exc)
        except ssh_install.InstallFailed as exc:
            await output.finish()
            return Fail(exc.detail)
        await output.finish()
        return Advance("enrolling", "agent installed over SSH; waiting for it to enroll")

    def _unreachable(self, server: Server, exc: ssh_install.Unreachable) -> Outcome:
        """Not logged in yet: again later, until ``provision_ssh_connect_seconds`` passed."""
        limit = self.settings.provision_ssh_connect_seconds
        entered = server.state_changed_at or utcnow()
        if (utcnow() - entered).total_seconds() < limit:
            return Retry(f"SSH not reachable yet: {exc.detail}")
        tries = server.step_attempts + 1
        return Fail(
            f"could not log in over SSH within {limit:.0f} s ({tries} attempts): {exc.detail}"
        )

    async def _enrolling(self, server: Server) -> Outcome:
        if server.revoked_at is not None:
            return Fail("the agent was revoked before it came online")
        if server.enrolled_at is None:
            failure = await self._boot_failure(server)
            if failure is not None:
                return Fail(failure)
            # A manual server waits on a person, for as long as it takes: the nudge
            # (``nudge.py``) wakes it when the agent connects; the poll is a backstop.
            seconds = MANUAL_BACKSTOP_SECONDS if server.provider == MANUAL else None
            return Wait("waiting for the agent to enroll", seconds)
        if server.last_heartbeat_at is None:
            return Wait("agent enrolled; waiting for its stream to connect")
        version = server.agent_version or "unknown version"
        following = "installing_mail" if server.mail_stack == "mailu" else "ready"
        if following == "ready":  # no dns step to record its addresses on the way
            await provider_ips.learn_at_provisioning(self.db, self.providers, server)
        return Advance(following, f"agent {version} enrolled and connected")

    async def _boot_failure(self, server: Server) -> str | None:
        """The provider's word that the VPS's boot failed: fail now, not at the deadline."""
        if server.provider == MANUAL or server.instance_id is None:
            return None
        provider = (await self.providers.get(server.provider, field="provider")).provider
        return await provider.boot_failure(server.instance_id)

    async def _installing_mail(self, server: Server) -> Outcome:
        """Queue ``mailu.install`` once per entry into this step, then follow the command."""
        if server.step_command_id is None:
            secrets_path = await stack.ensure_mailu_secrets(self.vault, server)
            entered = server.state_changed_at.timestamp() if server.state_changed_at else 0
            key = f"workflow:installing_mail:{entered:.6f}:{server.step_attempts}"

            async def queue(session: AsyncSession) -> uuid.UUID:
                row = await session.get(Server, server.id)
                if row is None:
                    raise NotFound("server", server.id)
                command = await commands.queue_system_command(
                    session,
                    row,
                    "mailu.install",
                    stack.install_payload(row, secrets_path),
                    stack.INSTALL_SECONDS,
                    idempotency_key=key,
                )
                return command.id

            command_id = await self.db.transact(queue)
            handlers.wake(server.id)
            return Wait("installing MailU", changes={"step_command_id": command_id})
        async with self.db.session() as session:
            command = await session.get(Command, server.step_command_id)
        if command is None:
            return Retry("the MailU install command is gone; queueing it again")
        if command.state == "succeeded":
            return Advance("dns", "MailU installed and healthy", {"step_command_id": None})
        if command.state == "failed" and (command.error or "").startswith("interrupted"):
            # The agent restarted mid-install (crash, reboot, upgrade): install is
            # idempotent, so run it again rather than failing the server.
            return Retry(
                "the agent restarted during the install; installing again",
                {"step_command_id": None},
            )
        if command.state in ("failed", "timed_out", "cancelled"):
            return Fail(f"MailU install {command.state}: {command.error or 'no reason given'}")
        return Wait(f"installing MailU: {command.progress_message or command.state}")

    async def _dns(self, server: Server) -> Outcome:
        """Reverse DNS through the VPS provider (forward-confirmed once the mail host's A is
        published), then the records of the server's domains (after a recovery: at its new
        address)."""
        # The IP inventory first: the records below publish its addresses.
        await provider_ips.learn_at_provisioning(self.db, self.providers, server)
        ptr = f"reverse DNS is the customer's to set ({server.provider} server)"
        if server.provider not in OWNED_BY_CUSTOMER and server.instance_id and server.ipv4:
            host = server.mail_hostname or ""
            provider = (await self.providers.get(server.provider, field="provider")).provider
            try:
                await provider.set_reverse_dns(server.instance_id, server.ipv4, host)
            except ProviderError as exc:
                if exc.retryable:
                    return Retry(f"setting reverse DNS: {exc.detail}")
                return Fail(f"setting reverse DNS of {server.ipv4} to {host}: {exc.detail}")
            ptr = f"PTR {server.ipv4} → {host}"
            await provider_ips.record_ptr(self.db, server.id, server.ipv4, host)
        count, error = await self._each_published_domain(server, dns_service.apply)
        if error is not None:
            return Retry(f"publishing DNS: {error}")
        if not count:
            return Advance(
                "tls", f"{ptr}; no domain of this server publishes through a DNS provider yet"
            )
        return Advance("tls", f"{ptr}; DNS records of {count} domain(s) published")

    async def _each_published_domain(
        self, server: Server, work: Callable[[AsyncSession, Vault, MailDomain], Awaitable[Any]]
    ) -> tuple[int, str | None]:
        """``work`` on each domain of the server that publishes DNS, each in a transaction of
        its own; how many, and the DNS provider's refusal if one stopped it."""
        async with self.db.session() as session:
            ids = await dns_service.published_domains(session, server.id)
        for domain_id in ids:

            async def one(session: AsyncSession, domain_id: uuid.UUID = domain_id) -> None:
                domain = await session.get(MailDomain, domain_id)
                if domain is not None:
                    await work(session, self.vault, domain)

            try:
                await self.db.transact(one)
            except DnsProviderError as exc:
                return len(ids), exc.detail
        return len(ids), None

    async def _tls(self, server: Server) -> Outcome:
        """The mail host's certificate by ACME DNS-01, when a DNS provider serves its zone."""
        try:
            cert = await tls_service.issue_for_server(self.db, self.vault, self.settings, server.id)
        except tls_service.NoZone as exc:
            return Advance("ready", f"certificate not issued: {exc.detail}")
        except (AcmeError, DnsProviderError) as exc:
            return Retry(f"issuing the certificate: {exc.detail}")
        return Advance(
            "ready", f"certificate for {cert.names} valid until {cert.not_after:%Y-%m-%d}"
        )

    async def _deprovisioning(self, server: Server) -> Outcome:
        # MailFleet's DNS records of the server's domains go first (the domains go with it).
        _, error = await self._each_published_domain(server, dns_service.withdraw)
        if error is not None:
            return Retry(f"removing DNS records: {error}")
        if server.provider not in OWNED_BY_CUSTOMER:  # the customer's machine is left as it is
            provider = (await self.providers.get(server.provider, field="provider")).provider
            doomed = {server.instance_id} if server.instance_id else set()
            name = instance_name(server.id)
            doomed |= {i.id for i in await provider.list() if i.name == name}
            for instance_id in sorted(doomed):
                await provider.terminate(instance_id)
                log.info("server %s: instance %s terminated", server.id, instance_id)
        terminated = utcnow()  # billing of the VPS and its addresses ends here

        async def revoke(session: AsyncSession) -> list[str]:
            await meter.close_server(session, server.id, terminated)
            row = await session.get(Server, server.id)
            return await enrollment.revoke_agent(session, row) if row is not None else []

        serials = await self.db.transact(revoke)
        self.streams.close(server.id, "server deprovisioned")
        await enrollment.revoke_in_vault(self.pki, serials)
        await ssh.delete_server_secrets(self.vault, server.tenant_id, server.id)
        if server.provider == ADOPTED:
            return Deleted(
                f"server {server.name} forgotten; the machine at {server.ipv4} was left running "
                "(its agent revoked, its SSH credential destroyed)"
            )
        return Deleted(f"server {server.name} deprovisioned")


class _OutputEvents:
    """An install's output as the server's events (``output``), one per line as it comes,
    up to ``OUTPUT_LINES``; the number of lines left out is recorded at the end."""

    def __init__(self, db: Database, server_id: uuid.UUID) -> None:
        self.db, self.server_id, self.seen = db, server_id, 0

    async def line(self, text: str) -> None:
        self.seen += 1
        if self.seen <= OUTPUT_LINES and text.strip():
            await self._record(text)

    async def finish(self) -> None:
        if self.seen > OUTPUT_LINES:
            await self._record(f"… {self.seen - OUTPUT_LINES} more lines of output not kept")

    async def _record(self, message: str) -> None:
        async def add(session: AsyncSession) -> None:
            row = await session.get(Server, self.server_id)
            if row is not None:
                events.record(session, row, "output", message)

        await self.db.transact(add)
