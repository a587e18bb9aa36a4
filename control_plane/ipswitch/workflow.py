"""The IP switch's steps: what each does, and what its undo does.

Steps, in order (``STEPS``)::

    preconditions → ptr → dns → snat → egress → drain  ⇒ succeeded  (→ withdraw, later)
    any of them fails ⇒ rolling_back: every earlier done step undone, last first ⇒ rolled_back
    an undo fails ⇒ failed (the switch's ``error`` says exactly what is left)

Each step looks at the switch as stored and returns an outcome (``Done``, ``Wait``,
``Retry``, ``Fail``); the runner (``runner.py``) records it under the switch's lease. Every
step is idempotent, so one cut short by a crash runs again: provider calls set a value
(setting it twice is setting it once), DNS publishing computes the zone from the inventory,
and agent commands are queued under an idempotency key derived from the switch, the step and
the attempt (a re-run finds the command it queued before the crash).

Undo: ``ptr`` sets the PTR the new address had before (none before: nothing to restore),
``dns`` withdraws the new address (unless it was published before the switch) and publishes
again, ``snat`` sets the SNAT the agent reported before the switch (``null``: the kernel's
default source, the main address). A failed ``snat`` whose command reached the agent is
undone too (one that timed out may have been applied); one still queued is cancelled, so an
agent back later never runs it. A failed ``dns`` takes the new address out again itself.
``preconditions`` and ``egress`` change nothing; ``drain`` is the last step, so nothing
after it can fail into a rollback.

FCrDNS: the PTR is what the provider accepted; the forward half is read back from the zone
the DNS provider serves (the mail host's A record must hold the new address). A mail host
outside the server's DNS-managed zones is the customer's: said so, as unknown.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.dns import service as dns_service
from control_plane.dns.publish import DnsProviderError
from control_plane.errors import MailFleetError, NotFound
from control_plane.health import outbound
from control_plane.ips import service as ips
from control_plane.ips.models import IpAddress
from control_plane.ipswitch import agent
from control_plane.ipswitch.models import IpSwitch, IpSwitchStep
from control_plane.mail.models import MailDomain
from control_plane.provisioning.providers.base import Provider, ProviderError
from control_plane.provisioning.registry import OWNED_BY_CUSTOMER, ProviderRegistry
from control_plane.provisioning.workflow import Fail, Retry, Wait
from control_plane.servers.models import Server
from control_plane.settings import Settings, parse_host_port
from control_plane.vault.client import Vault
from control_plane.workflows.steps import Done

STEPS = ("preconditions", "ptr", "dns", "snat", "egress", "drain", "withdraw")
UNDOABLE = ("ptr", "dns", "snat")
SNAT_SET, SNAT_SHOW = "network.snat.set", "network.snat.show"
AGENT_KINDS = (SNAT_SET, SNAT_SHOW, outbound.KIND)
ACTOR = ips.CONTROL_PLANE
PURPOSE = "ip-switch"


Outcome = Done | Wait | Retry | Fail


class Workflow:
    """The steps, with everything they touch."""

    def __init__(
        self, settings: Settings, db: Database, vault: Vault, providers: ProviderRegistry
    ) -> None:
        self.settings, self.db, self.vault, self.providers = settings, db, vault, providers

    async def forward(self, switch: IpSwitch, step: IpSwitchStep) -> Outcome:
        outcome: Outcome = await getattr(self, f"_{step.name}")(switch, step)
        return outcome

    async def undo(self, switch: IpSwitch, step: IpSwitchStep) -> Outcome:
        outcome: Outcome = await getattr(self, f"_undo_{step.name}")(switch)
        return outcome

    # -- forward ---------------------------------------------------------------------------

    async def _preconditions(self, switch: IpSwitch, step: IpSwitchStep) -> Outcome:
        """The new address is on the VPS (provider and agent agree), clean and not paused;
        the old one still sends. Learns the SNAT to restore on rollback."""
        if switch.step_command_id is None:
            server, to_row, from_row = await self._rows(switch)
            if server.agent_state != "enrolled" or server.revoked_at is not None:
                return Fail("the server has no enrolled agent to switch its SNAT")
            problem = usable_problem(to_row) or _sending_problem(from_row, switch.from_ip)
            if problem:
                return Fail(problem)
            provider = await self._provider(server)
            if provider is not None and server.instance_id:
                listed = await provider.list_ips(server.instance_id)
                if switch.to_ip not in listed:
                    return Fail(
                        f"{switch.to_ip} is not an address of instance {server.instance_id} at "
                        f"{server.provider} (it has {', '.join(listed) or 'none'})"
                    )
        found = await agent.result(self.db, switch, SNAT_SHOW, {}, "show", self._expire)
        if not isinstance(found, dict):
            return found
        addresses = [str(a) for a in found.get("addresses") or []]
        if switch.to_ip not in addresses:
            return Fail(
                f"{switch.to_ip} is not on the VPS's interfaces (the agent sees "
                f"{', '.join(addresses) or 'none'})"
            )
        _, to_row, _ = await self._rows(switch)
        previous = found.get("to_ip")
        ports = found.get("ports") or []
        return Done(
            f"{switch.to_ip} is on the VPS and usable; SNAT before the switch: "
            f"{previous or 'none (the main address)'}",
            {
                "previous_snat": previous,
                "snat_ports": json.dumps(ports) if previous else None,
                "previous_ptr": to_row.ptr,
                "to_was_published": to_row.dns_published,
            },
        )

    async def _ptr(self, switch: IpSwitch, step: IpSwitchStep) -> Outcome:
        server, _, _ = await self._rows(switch)
        provider = await self._provider(server)
        if provider is None or not server.instance_id:
            return Done("reverse DNS is the customer's to set (manual server)", skipped=True)
        host = server.mail_hostname
        if not host:
            return Fail("the server has no mail host name to point the PTR at")
        outcome = await self._set_ptr(provider, server, switch.to_ip, host)
        return outcome or Done(f"PTR {switch.to_ip} → {host}")

    async def _dns(self, switch: IpSwitch, step: IpSwitchStep) -> Outcome:
        """Publish the new address (A of the mail host, SPF ip4:) with the old one, then
        check forward confirmation in what the DNS provider serves."""
        await self._published(switch, switch.to_ip, True)
        done, error = await self._apply_domains(switch.server_id)
        outcome: Outcome
        if error is not None:
            outcome = Fail(f"publishing DNS: {error}")
        elif not done:
            return Done(
                f"{switch.to_ip} marked published; no domain of this server publishes through "
                "a DNS provider (the mail host's A record and SPF are the customer's to add; "
                "forward-confirmed reverse DNS: unknown)"
            )
        else:
            outcome = await self._fcrdns(switch, done)
        if isinstance(outcome, Fail) and not switch.to_was_published:
            # A failed step is not undone by the rollback: take the address out again now.
            outcome = Fail(outcome.reason + await self._unpublish_to(switch, done))
        return outcome

    async def _snat(self, switch: IpSwitch, step: IpSwitchStep) -> Outcome:
        ports = self._ports()
        found = await agent.result(
            self.db, switch, SNAT_SET, {"to_ip": switch.to_ip, "ports": ports}, "set", self._expire
        )
        if not isinstance(found, dict):
            return found
        if found.get("to_ip") != switch.to_ip:
            return Fail(f"the agent reports SNAT to {found.get('to_ip')}, not {switch.to_ip}")
        return Done(
            f"outbound tcp/{', '.join(str(p) for p in ports)} leaves from {switch.to_ip} "
            f"(was {found.get('previous') or 'the main address'})"
        )

    async def _egress(self, switch: IpSwitch, step: IpSwitchStep) -> Outcome:
        """A probe from the VPS through the same path must reach the observer from the new
        address; anything else (another address, no answer, no observer) fails."""
        observer = self.settings.smtp_observer_advertised
        if observer is None:
            return Fail(
                "no SMTP observer is configured (MAILFLEET_SMTP_OBSERVER_ADDR): the new "
                "address's egress cannot be verified"
            )
        server, _, _ = await self._rows(switch)
        timeout = self.settings.health_outbound_timeout_seconds
        payload = {**outbound.probe_payload(server, observer, timeout), "purpose": PURPOSE}
        command = await agent.follow(
            self.db, switch, outbound.KIND, payload, "probe", timeout, self._expire
        )
        if not isinstance(command, Command):
            return command
        verdict = outbound.judge("succeeded", command.result, None, switch.to_ip, observer)
        if verdict.state != "ok":
            return Fail(f"egress check: {verdict.detail}")
        return Done(verdict.detail)

    async def _drain(self, switch: IpSwitch, step: IpSwitchStep) -> Outcome:
        """The roles move now; the old address's connections still open finish meanwhile."""
        async with self.db.session() as session:
            to_row = await _live(session, switch.server_id, switch.to_ip)
            from_row = await _live(session, switch.server_id, switch.from_ip)
            now = utcnow()
            for row, role in ((from_row, "standby"), (to_row, "sending")):
                if row is not None:
                    await ips.set_role(session, row, role, ACTOR, now)
        started = step.started_at or utcnow()
        left = self.settings.ip_switch_drain_seconds - (utcnow() - started).total_seconds()
        if left > 0:
            return Wait(f"{switch.to_ip} sends; {switch.from_ip} draining", left)
        return Done(f"{switch.to_ip} is the sending address; {switch.from_ip} is standby")

    async def _withdraw(self, switch: IpSwitch, step: IpSwitchStep) -> Outcome:
        async with self.db.session() as session:
            row = await _live(session, switch.server_id, switch.from_ip)
            if row is None:
                return Done(f"{switch.from_ip} is no longer on the server", skipped=True)
            if row.role == "sending":
                return Done(f"{switch.from_ip} sends again; it stays in DNS", skipped=True)
        await self._published(switch, switch.from_ip, False)
        _, error = await self._apply_domains(switch.server_id)
        if error is not None:
            return Retry(f"withdrawing {switch.from_ip} from DNS: {error}")
        return Done(f"{switch.from_ip} withdrawn from the A record and SPF")

    # -- undo ------------------------------------------------------------------------------

    async def _undo_ptr(self, switch: IpSwitch) -> Outcome:
        if switch.previous_ptr is None:
            return Done(f"{switch.to_ip} had no PTR before the switch; nothing to restore")
        server, _, _ = await self._rows(switch)
        provider = await self._provider(server)
        if provider is None or not server.instance_id:
            return Done("reverse DNS is the customer's (manual server)")
        outcome = await self._set_ptr(provider, server, switch.to_ip, switch.previous_ptr)
        return outcome or Done(f"PTR {switch.to_ip} → {switch.previous_ptr} restored")

    async def _undo_dns(self, switch: IpSwitch) -> Outcome:
        if switch.to_was_published:
            return Done(f"{switch.to_ip} was published before the switch; it stays")
        await self._published(switch, switch.to_ip, False)
        _, error = await self._apply_domains(switch.server_id)
        if error is not None:
            return Retry(f"withdrawing {switch.to_ip} from DNS: {error}")
        return Done(f"{switch.to_ip} withdrawn from the A record and SPF")

    async def _undo_snat(self, switch: IpSwitch) -> Outcome:
        ports = json.loads(switch.snat_ports) if switch.snat_ports else self._ports()
        payload = {"to_ip": switch.previous_snat, "ports": ports}
        found = await agent.result(self.db, switch, SNAT_SET, payload, "unset", self._expire)
        if not isinstance(found, dict):
            return found
        back = switch.previous_snat or "the main address (no SNAT)"
        return Done(f"outbound mail leaves from {back} again")

    # -- building blocks -------------------------------------------------------------------

    @property
    def _expire(self) -> float:
        return self.settings.ip_switch_step_timeout_seconds

    def _ports(self) -> list[int]:
        observer = self.settings.smtp_observer_advertised
        port = parse_host_port(observer)[1] if observer else 25
        return sorted({25, port})

    async def _rows(self, switch: IpSwitch) -> tuple[Server, IpAddress, IpAddress | None]:
        async with self.db.session() as session:
            server = await session.get(Server, switch.server_id)
            if server is None:
                raise NotFound("server", switch.server_id)
            to_row = await _live(session, switch.server_id, switch.to_ip)
            if to_row is None:
                raise StepFailed(f"{switch.to_ip} is no longer an address of the server")
            return server, to_row, await _live(session, switch.server_id, switch.from_ip)

    async def _provider(self, server: Server) -> Provider | None:
        if server.provider in OWNED_BY_CUSTOMER:
            return None
        return (await self.providers.get(server.provider, field="provider")).provider

    async def _set_ptr(
        self, provider: Provider, server: Server, address: str, host: str
    ) -> Outcome | None:
        assert server.instance_id is not None
        try:
            await provider.set_reverse_dns(server.instance_id, address, host)
        except ProviderError as exc:
            if exc.retryable:
                return Retry(f"setting the PTR of {address}: {exc.message}")
            return Fail(f"setting the PTR of {address} to {host}: {exc.message}")
        except ValueError as exc:
            return Fail(f"setting the PTR of {address} to {host}: {exc}")
        async with self.db.session() as session:
            row = await _live(session, server.id, address)
            if row is not None:
                await ips.set_ptr(session, row, host, ACTOR, utcnow())
        return None

    async def _published(self, switch: IpSwitch, address: str, published: bool) -> None:
        async with self.db.session() as session:
            row = await _live(session, switch.server_id, address)
            if row is not None:
                await ips.set_dns_published(session, row, published, ACTOR, utcnow())

    async def _apply_domains(self, server_id: uuid.UUID) -> tuple[list[MailDomain], str | None]:
        """Publish each DNS-managed domain of the server (each in its own transaction);
        the domains done, and the provider's refusal that stopped the rest."""
        async with self.db.session() as session:
            ids = await dns_service.published_domains(session, server_id)
        done: list[MailDomain] = []
        for domain_id in ids:

            async def one(session: AsyncSession, domain_id: uuid.UUID = domain_id) -> None:
                domain = await session.get(MailDomain, domain_id)
                if domain is not None:
                    await dns_service.apply(session, self.vault, domain)
                    done.append(domain)

            try:
                await self.db.transact(one)
            except DnsProviderError as exc:
                return done, exc.detail
        return done, None

    async def _unpublish_to(self, switch: IpSwitch, done: list[MailDomain]) -> str:
        """A failed ``dns`` step takes the new address out again at once (the domains
        already published with it are published again without it)."""
        await self._published(switch, switch.to_ip, False)
        if not done:
            return ""
        _, error = await self._apply_domains(switch.server_id)
        return f"; withdrawing {switch.to_ip} again also failed: {error}" if error else ""

    async def _fcrdns(self, switch: IpSwitch, domains: list[MailDomain]) -> Outcome:
        """Forward confirmation as the DNS provider serves it: the PTR's name (the mail
        host) has an A record holding the new address."""
        async with self.db.session() as session:
            server = await session.get(Server, switch.server_id)
            host = (server.mail_hostname if server else None) or ""
            for domain in domains:
                _, rows = await dns_service.compare(session, self.vault, domain)
                for record, _status, served in rows:
                    if record.type == "A" and record.name == host.lower():
                        if switch.to_ip not in (served or ()):
                            return Fail(
                                f"the A record of {host} served by {domain.name}'s DNS provider "
                                f"does not hold {switch.to_ip} (it holds "
                                f"{', '.join(served or ()) or 'nothing'}): FCrDNS would not hold"
                            )
                        return Done(
                            f"{switch.to_ip} published for {len(domains)} domain(s); FCrDNS "
                            f"holds: PTR {switch.to_ip} → {host}, A {host} ∋ {switch.to_ip}"
                        )
        return Done(
            f"{switch.to_ip} published for {len(domains)} domain(s); the mail host {host} is "
            "outside their zones, so its A record (and FCrDNS) is the customer's: unknown"
        )


class StepFailed(MailFleetError):
    """The switch cannot go on (its address is gone): fails the step, no retry."""


async def _live(session: AsyncSession, server_id: uuid.UUID, address: str) -> IpAddress | None:
    for row in await ips.live_ips(session, server_id):
        if row.address == address:
            return row
    return None


def usable_problem(row: IpAddress) -> str | None:
    """Why ``row`` cannot take over sending (None: it can)."""
    if row.listing == "listed":
        return f"{row.address} is listed on a DNSBL"
    if row.paused_at is not None:
        return f"{row.address} is paused: {row.paused_reason or 'no reason given'}"
    if row.role == "retired":
        return f"{row.address} is retired"
    return None


def _sending_problem(row: IpAddress | None, address: str) -> str | None:
    if row is None:
        return f"{address} is no longer an address of the server"
    if row.role != "sending":
        return f"{address} is no longer the sending address (it is {row.role})"
    return None
