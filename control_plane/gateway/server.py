"""The grpc.aio server: the mutual-TLS agent link and the TLS-only enrollment listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

import grpc

from control_plane.commands import handlers
from control_plane.db.engine import Database
from control_plane.db.notify import (
    COMMAND_SETTLED,
    COMMANDS_QUEUED,
    Listener,
    Wake,
    listens,
    wake_here,
)
from control_plane.gateway.certificate import GatewayCertificate
from control_plane.gateway.hub import AgentHub
from control_plane.gateway.servicers import AgentLinkServicer, EnrollmentServicer
from control_plane.gateway.sessions import SessionService
from control_plane.gateway.telemetry import GatewayTelemetry
from control_plane.metrics.ingest import MetricIngest
from control_plane.settings import Settings, parse_host_port
from control_plane.vault.pki import AgentPki
from mailfleet.agent.v1 import agent_pb2_grpc

log = logging.getLogger(__name__)

# Agents ping every 30 s; accept pings down to 10 s, so a stricter agent is not cut off.
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
]


def _uuid(payload: str | None) -> uuid.UUID | None:
    """A notification's id (None: none given, or not an id; a wake for everything)."""
    try:
        return uuid.UUID(payload) if payload else None
    except ValueError:
        return None


def hub_wakes(hub: AgentHub) -> dict[str, Wake]:
    """What a notification means to this replica's hub: work queued for an agent held here,
    and a command settled that a request here may wait for (``GET …/commands/{id}?
    wait_seconds``) — whether this replica sent it (woken on commit) or another did."""

    def queued(payload: str | None) -> None:
        hub.wake_dispatcher(_uuid(payload))

    def settled(payload: str | None) -> None:
        if (command_id := _uuid(payload)) is not None:
            hub.command_settled(command_id)

    return {COMMANDS_QUEUED: queued, COMMAND_SETTLED: settled}


def replica_listener(
    db: Database, hub: AgentHub, settings: Settings, telemetry: GatewayTelemetry
) -> Listener:
    """Other replicas' wake-ups for this replica's hub."""
    return Listener(
        db,
        hub_wakes(hub),
        retry_seconds=settings.notify_retry_seconds,
        on_notify=lambda channel: telemetry.notify_wakeups.labels(channel).inc(),
    )


class Gateway:
    """Both listeners; ``extra_hosts`` get the same two ports (the local provider's bridge
    address, where agents in network namespaces reach the host)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        pki: AgentPki,
        hub: AgentHub,
        extra_hosts: Sequence[str] = (),
    ) -> None:
        self.settings, self.db, self.pki, self.hub = settings, db, pki, hub
        self.listen = [(settings.grpc_addr, settings.enroll_addr)]
        for host in extra_hosts:
            shown = f"[{host}]" if ":" in host else host
            self.listen.append(
                (
                    f"{shown}:{parse_host_port(settings.grpc_addr)[1]}",
                    f"{shown}:{parse_host_port(settings.enroll_addr)[1]}",
                )
            )
        self.telemetry = GatewayTelemetry()
        self.certificate = GatewayCertificate(
            pki,
            self.certificate_names(),
            settings.gateway_certificate_ttl_seconds,
            on_issued=lambda issued: self.telemetry.certificate_expiry.set(
                issued.not_after.timestamp()
            ),
        )
        self.ingest = MetricIngest(
            db, raw_retention=timedelta(days=settings.metrics_raw_retention_days)
        )
        self.sessions = SessionService(db, hub, settings, self.ingest, self.telemetry, pki.vault)
        self.telemetry.watch_ingest(self.ingest)
        self._server: grpc.aio.Server | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._unsubscribe: list[Callable[[], None]] = []

    def certificate_names(self) -> list[str]:
        """Every name an agent may dial: the listen and advertised hosts, and the extra names."""
        addresses = [a for pair in self.listen for a in pair]
        addresses += [self.settings.advertised_gateway, self.settings.advertised_enroll]
        hosts = [parse_host_port(address)[0] for address in addresses]
        return [*self.settings.gateway_tls_names.split(","), *hosts]

    async def start(self) -> None:
        await self.certificate.issue()
        server = grpc.aio.server(options=SERVER_OPTIONS)
        agent_pb2_grpc.add_EnrollmentServicer_to_server(
            EnrollmentServicer(self.db, self.pki, self.settings), server
        )
        agent_pb2_grpc.add_AgentLinkServicer_to_server(
            AgentLinkServicer(self.db, self.pki, self.settings, self.sessions), server
        )
        for link, enroll in self.listen:
            if not server.add_secure_port(link, self.certificate.credentials(mutual=True)):
                raise OSError(f"cannot listen on {link}")
            if not server.add_secure_port(enroll, self.certificate.credentials(mutual=False)):
                raise OSError(f"cannot listen on {enroll}")
        await server.start()
        self._server = server
        self._unsubscribe = [
            handlers.on_wake(self.hub.wake_dispatcher),
            wake_here(hub_wakes(self.hub)),
        ]
        self._loops = [
            asyncio.create_task(self.sessions.maintain(self.settings.dispatch_poll_seconds)),
            asyncio.create_task(self.ingest.run()),
            asyncio.create_task(self.certificate.renew_forever()),
        ]
        if listens(self.db):
            listener = replica_listener(self.db, self.hub, self.settings, self.telemetry)
            self._loops.append(asyncio.create_task(listener.run()))
        for link, enroll in self.listen:
            log.info("agent gateway on %s (mutual TLS), enrollment on %s", link, enroll)

    async def stop(self, grace: float = 5.0) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._server is not None:
            await self._server.stop(grace)
        for task in self._loops:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.ingest.flush()
        await self.sessions.flush_heartbeats()
