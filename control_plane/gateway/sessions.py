"""What happens on an agent's stream, and the replica's loop that watches all of them.

Heartbeats are kept in memory and written in one batch a second, so 10,000 agents at one
heartbeat per 10 s cost one transaction a second rather than a thousand.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers, secrets
from control_plane.commands import service as commands
from control_plane.db.base import utcnow
from control_plane.db.engine import Database, to_completion
from control_plane.errors import MailFleetError
from control_plane.gateway.hub import AgentHub, AgentSession
from control_plane.gateway.identity import PeerIdentity
from control_plane.gateway.reports import Report, ReportWriter
from control_plane.gateway.telemetry import GatewayTelemetry
from control_plane.gateway.translate import (
    cancel_message,
    command_message,
    mail_counts_report,
    sample_rows,
)
from control_plane.metrics.ingest import MetricIngest
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from control_plane.waiting import woken
from mailfleet.agent.v1 import agent_pb2

log = logging.getLogger(__name__)
CAPABILITIES = frozenset({"heartbeat", "metrics", "commands", "mail_counts"})
MAIL_COUNTS = "mail_counts"  # the capability, and the kind of report its agents send


class StreamClosed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SessionService:
    def __init__(
        self,
        db: Database,
        hub: AgentHub,
        settings: Settings,
        ingest: MetricIngest,
        telemetry: GatewayTelemetry,
        vault: Vault,
    ) -> None:
        self.db, self.hub, self.settings, self.vault = db, hub, settings, vault
        self.ingest, self.telemetry = ingest, telemetry
        self._heartbeats: dict[uuid.UUID, datetime] = {}
        self._expiry: dict[uuid.UUID, datetime] = {}
        self._delivered_at: dict[uuid.UUID, float] = {}
        self._cancels_sent: set[uuid.UUID] = set()
        self.reports = ReportWriter(db)

    async def stream(
        self,
        peer: PeerIdentity,
        hello: agent_pb2.Hello,
        incoming: AsyncIterator[agent_pb2.AgentMessage],
    ) -> AsyncIterator[agent_pb2.ControlMessage]:
        """Serve one stream: what to send the agent, until it hangs up or is closed.

        Raises ``StreamClosed`` when the control plane ended it (revoked, expired, replaced).
        """
        agreed = sorted(CAPABILITIES & set(hello.capabilities))
        if not handlers.handles_reports(MAIL_COUNTS):  # no feature would store them
            agreed = [c for c in agreed if c != MAIL_COUNTS]
        tenant_id = await to_completion(self._record_hello(peer.server_id, hello, agreed))
        session = AgentSession(
            server_id=peer.server_id, tenant_id=tenant_id, certificate_serial=peer.serial
        )
        self.hub.register(session)
        self.telemetry.agents_connected.set(len(self.hub))
        self._expiry[peer.server_id] = peer.not_after
        log.info("agent of server %s connected (%s)", peer.server_id, hello.agent_version)
        session.send(
            agent_pb2.ControlMessage(
                hello=agent_pb2.HelloReply(
                    server_id=str(peer.server_id),
                    heartbeat_interval_ms=int(self.settings.heartbeat_interval_seconds * 1000),
                    metrics_interval_ms=int(self.settings.metrics_interval_seconds * 1000),
                    capabilities=agreed,
                    mail_counts_interval_ms=(
                        int(self.settings.mail_stats_interval_seconds * 1000)
                        if MAIL_COUNTS in agreed
                        else 0
                    ),
                )
            )
        )
        await self._deliver([peer.server_id], redeliver=True)
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._read(session, incoming)),
            asyncio.create_task(self._store_metrics(session)),
        ]
        for task in tasks:  # the agent hung up, or storing failed: end the stream
            task.add_done_callback(lambda _: session.end())
        try:
            while (message := await session.outbox.get()) is not None:
                yield message
            if session.closed.is_set():
                raise StreamClosed(session.close_reason)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.info("stream of %s ended: %r", peer.server_id, task.exception())
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.hub.unregister(session)
            self.telemetry.agents_connected.set(len(self.hub))
            if self.hub.get(peer.server_id) is None:  # not replaced by a newer stream
                self._expiry.pop(peer.server_id, None)
                await self._record_disconnect(peer.server_id)
            log.info("agent of server %s disconnected", peer.server_id)

    async def _record_disconnect(self, server_id: uuid.UUID) -> None:
        """Tell the features at once (health checks the server now); never fails the close."""
        if not handlers.handles_event(handlers.AGENT_DISCONNECTED):
            return

        async def record(session: AsyncSession) -> None:
            await handlers.agent_event(session, handlers.AGENT_DISCONNECTED, server_id)

        try:
            await self.db.transact(record)
        except Exception:
            log.exception("recording that the agent of server %s disconnected failed", server_id)

    async def _record_hello(
        self, server_id: uuid.UUID, hello: agent_pb2.Hello, capabilities: list[str]
    ) -> uuid.UUID:
        async with self.db.session() as session:
            await session.execute(
                update(Server)
                .where(Server.id == server_id)
                .values(
                    agent_version=hello.agent_version[:64] or None,
                    hostname=hello.hostname[:255] or None,
                    capabilities=",".join(capabilities),
                    last_heartbeat_at=utcnow(),
                )
            )
            tenant_id = await session.scalar(select(Server.tenant_id).where(Server.id == server_id))
            await handlers.agent_event(session, handlers.AGENT_CONNECTED, server_id)
        assert tenant_id is not None  # admitted just before
        return tenant_id

    async def _read(
        self, session: AgentSession, incoming: AsyncIterator[agent_pb2.AgentMessage]
    ) -> None:
        async for message in incoming:
            kind = message.WhichOneof("body")
            if kind == "heartbeat":
                self._heartbeats[session.server_id] = utcnow()
                self.telemetry.heartbeats.inc()
            elif kind == "metrics":
                session.metric_batches.put_nowait(message.metrics)
            elif kind == "command_update":
                await self._command_update(session, message.command_update)
            elif kind == "mail_counts":
                await self._agent_report(
                    session.server_id, MAIL_COUNTS, mail_counts_report(message.mail_counts)
                )
            elif kind == "hello":
                log.warning("server %s sent a second hello; ignored", session.server_id)

    async def _store_metrics(self, session: AgentSession) -> None:
        """Store batches in arrival order, several at a time; ack the newest once committed."""
        while True:
            batches = [await session.metric_batches.get()]
            while not session.metric_batches.empty():
                batches.append(session.metric_batches.get_nowait())
            rows = [
                row
                for batch in batches
                for row in sample_rows(session.tenant_id, session.server_id, batch)
            ]
            await self.ingest.submit(rows)  # raises if the commit failed: the stream ends
            self.telemetry.metric_batches.inc(len(batches))
            self.telemetry.metric_samples.inc(len(rows))
            newest = max(batch.sequence for batch in batches)
            session.send(agent_pb2.ControlMessage(metric_ack=agent_pb2.MetricAck(sequence=newest)))

    async def _agent_report(self, server_id: uuid.UUID, kind: str, report: dict[str, Any]) -> None:
        """Store a report the agent sent unasked; a failure is logged and never ends the
        stream (the agent's next report carries the same whole-day figures)."""

        async def store(db_session: AsyncSession) -> None:
            await handlers.agent_report(db_session, kind, server_id, report)

        try:
            await self.db.transact(store)
        except Exception:
            log.exception("storing the %s report of server %s failed", kind, server_id)

    async def _command_update(
        self, session: AgentSession, update_: agent_pb2.CommandUpdate
    ) -> None:
        try:
            command_id = uuid.UUID(update_.id)
        except ValueError:
            log.warning("server %s reported on a malformed command id", session.server_id)
            return
        known = await self.reports.submit(Report(session.server_id, command_id, update_))
        if known:
            log.debug("command %s settled", command_id)
            self.hub.command_settled(command_id)
            started = self._delivered_at.pop(command_id, None)
            if started is not None:
                self.telemetry.command_round_trip.observe(time.monotonic() - started)
            self._cancels_sent.discard(command_id)
            session.send(agent_pb2.ControlMessage(command_ack=agent_pb2.CommandAck(id=update_.id)))

    async def _claim(
        self, server_ids: list[uuid.UUID], redeliver: bool
    ) -> tuple[list[commands.Delivery], list[tuple[uuid.UUID, uuid.UUID]]]:
        async with self.db.session() as db_session:
            deliveries = await commands.claim_for_delivery(
                db_session, server_ids, redeliver=redeliver
            )
            return deliveries, await commands.pending_cancels(db_session, server_ids)

    async def _deliver(self, server_ids: list[uuid.UUID], *, redeliver: bool = False) -> None:
        if not server_ids:
            return
        deliveries, cancels = await to_completion(self._claim(server_ids, redeliver))
        for delivery in deliveries:
            log.debug("delivering command %s", delivery.command_id)
            session = self.hub.get(delivery.server_id)
            if session is None:
                continue  # it left meanwhile; the command is re-sent at its next hello
            try:
                payload = await secrets.resolve(
                    self.vault,
                    delivery.server_id,
                    delivery.tenant_id,
                    delivery.payload,
                    owns_domain=functools.partial(self._owns_domain, delivery.tenant_id),
                )
            except MailFleetError as exc:  # Vault down, or the secret is gone: say so
                await self._fail_undeliverable(delivery, exc.detail)
                continue
            self._delivered_at.setdefault(delivery.command_id, time.monotonic())
            session.send(command_message(replace(delivery, payload=payload)))
            self.telemetry.commands_sent.inc()
            if delivery.attempt == 1:
                waited = (utcnow() - delivery.queued_at).total_seconds()
                self.telemetry.command_dispatch.observe(max(0.0, waited))
        for server_id, command_id in cancels:
            if redeliver or command_id not in self._cancels_sent:
                self._send_cancel(server_id, command_id)

    async def _owns_domain(self, tenant_id: uuid.UUID, name: str) -> bool:
        async with self.db.session() as db_session:
            return await handlers.domain_owned_by(db_session, name, tenant_id)

    async def _fail_undeliverable(self, delivery: commands.Delivery, reason: str) -> None:
        log.warning("command %s cannot be delivered: %s", delivery.command_id, reason)

        async def fail(db_session: AsyncSession) -> bool:
            return await commands.record_result(
                db_session,
                delivery.server_id,
                delivery.command_id,
                "failed",
                None,
                f"could not deliver: {reason}",
            )

        await self.db.transact(fail)
        self.hub.command_settled(delivery.command_id)

    def _send_cancel(self, server_id: uuid.UUID, command_id: uuid.UUID) -> None:
        session = self.hub.get(server_id)
        if session is not None:
            session.send(cancel_message(command_id))
            self._cancels_sent.add(command_id)

    async def flush_heartbeats(self) -> int:
        beats, self._heartbeats = self._heartbeats, {}
        if not beats:
            return 0
        # A Core executemany, not the ORM's bulk update by primary key: a server deleted since
        # its last beat is simply not there (the ORM would raise StaleDataError for it).
        servers = cast("Table", Server.__table__)
        statement = (
            update(servers)
            .where(servers.c.id == bindparam("beat_server"))
            .values(last_heartbeat_at=bindparam("beat_at"))
        )
        async with self.db.session() as session:
            await session.execute(
                statement,
                [{"beat_server": server_id, "beat_at": at} for server_id, at in beats.items()],
            )
        return len(beats)

    async def close_revoked_and_expired(self, since: datetime) -> None:
        """Close streams of agents revoked (by any replica) or whose certificate ran out."""
        now = utcnow()
        for server_id, not_after in list(self._expiry.items()):
            if not_after <= now:
                self.hub.close(server_id, "certificate expired")
        connected = set(self.hub.connected())
        if not connected:
            return
        async with self.db.session() as session:
            revoked = (
                await session.scalars(select(Server.id).where(Server.revoked_at >= since))
            ).all()
        for server_id in connected.intersection(revoked):
            self.hub.close(server_id, "agent revoked")

    async def expire_commands(self) -> None:
        async with self.db.session() as session:
            cancels = await commands.expire_overdue(session, utcnow())
        for server_id, command_id in cancels:
            self._send_cancel(server_id, command_id)
            self._delivered_at.pop(command_id, None)
            self.hub.command_settled(command_id)

    async def maintain(self, interval: float = 1.0) -> None:
        """The replica's watch loop; runs until cancelled. Woken early when work arrives."""
        checked = utcnow() - timedelta(minutes=1)
        last_full = 0.0
        while True:
            await woken(self.hub.dispatch_wanted, interval)
            full = time.monotonic() - last_full >= interval
            wanted = self.hub.take_wanted()
            try:
                log.debug("dispatch pass")
                # Woken: the servers with new work; each interval, every held one (the
                # safety net for a wake-up lost between replicas).
                await self._deliver(self.hub.connected() if full else wanted)
                if full:
                    started = utcnow()
                    await self.flush_heartbeats()
                    await self.close_revoked_and_expired(checked - timedelta(seconds=5))
                    await self.expire_commands()
                    checked, last_full = started, time.monotonic()
            except Exception:
                log.exception("gateway maintenance failed; retrying")
