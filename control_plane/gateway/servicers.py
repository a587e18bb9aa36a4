"""gRPC handlers: thin layers over the enrollment and agent-session services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.enrollment import service as enrollment
from control_plane.errors import Forbidden, InvalidInput, MailFleetError, Unauthorized
from control_plane.gateway.identity import NoIdentity, PeerIdentity, peer_identity
from control_plane.gateway.sessions import SessionService, StreamClosed
from control_plane.settings import Settings
from control_plane.vault.pki import AgentPki, IssuedCertificate
from mailfleet.agent.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[object, object]

_STATUS = {
    Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
    Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
}


async def abort_with(context: Context, exc: MailFleetError) -> None:
    code = next((c for t, c in _STATUS.items() if isinstance(exc, t)), grpc.StatusCode.UNAVAILABLE)
    await context.abort(code, exc.detail)


def timestamp(value: object) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)  # type: ignore[arg-type]
    return stamp


def renew_response(issued: IssuedCertificate) -> agent_pb2.RenewResponse:
    return agent_pb2.RenewResponse(
        certificate_pem=issued.certificate_pem.encode(),
        ca_chain_pem=issued.ca_chain_pem.encode(),
        not_after=timestamp(issued.not_after),
    )


class EnrollmentServicer(agent_pb2_grpc.EnrollmentServicer):
    def __init__(self, db: Database, pki: AgentPki, settings: Settings) -> None:
        self.db, self.pki, self.settings = db, pki, settings

    async def Enroll(
        self, request: agent_pb2.EnrollRequest, context: Context
    ) -> agent_pb2.EnrollResponse:
        ttl = timedelta(seconds=self.settings.agent_certificate_ttl_seconds)
        try:
            enrolled = await self.db.transact(
                lambda session: enrollment.enroll(
                    session,
                    self.pki,
                    token=request.join_token,
                    csr_pem=request.csr_pem,
                    claimed_server_id=request.server_id,
                    agent_version=request.agent_version,
                    hostname=request.hostname,
                    certificate_ttl=ttl,
                )
            )
        except MailFleetError as exc:
            log.warning("enrollment from %s refused: %s", context.peer(), exc.detail)
            await abort_with(context, exc)
            raise  # unreachable: abort raises
        issued = enrolled.certificate
        return agent_pb2.EnrollResponse(
            server_id=str(enrolled.server_id),
            certificate_pem=issued.certificate_pem.encode(),
            ca_chain_pem=issued.ca_chain_pem.encode(),
            not_after=timestamp(issued.not_after),
        )


class AgentLinkServicer(agent_pb2_grpc.AgentLinkServicer):
    def __init__(self, db: Database, pki: AgentPki, settings: Settings, sessions: SessionService):
        self.db, self.pki, self.settings, self.sessions = db, pki, settings, sessions

    async def _admit(self, context: Context) -> PeerIdentity:
        try:
            peer = peer_identity(context)
        except NoIdentity as exc:
            log.warning("agent link refused for %s: %s", context.peer(), exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise

        server = await self.db.transact(
            lambda session: enrollment.admitted(session, peer.server_id, peer.serial, utcnow())
        )
        if server is None:
            log.warning(
                "agent link refused for server %s: certificate %s revoked or unknown",
                peer.server_id,
                peer.serial,
            )
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "certificate revoked or unknown")
        return peer

    async def RenewCertificate(
        self, request: agent_pb2.RenewRequest, context: Context
    ) -> agent_pb2.RenewResponse:
        peer = await self._admit(context)
        ttl = timedelta(seconds=self.settings.agent_certificate_ttl_seconds)
        try:
            issued = await self.db.transact(
                lambda session: enrollment.renew(
                    session,
                    self.pki,
                    server_id=peer.server_id,
                    csr_pem=request.csr_pem,
                    certificate_ttl=ttl,
                )
            )
        except MailFleetError as exc:
            await abort_with(context, exc)
            raise
        return renew_response(issued)

    async def Connect(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Context
    ) -> AsyncIterator[agent_pb2.ControlMessage]:
        peer = await self._admit(context)
        try:
            first = await asyncio.wait_for(anext(request_iterator), timeout=30)
        except (TimeoutError, StopAsyncIteration):
            first = agent_pb2.AgentMessage()
        if first.WhichOneof("body") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "send hello first")
        try:
            async for message in self.sessions.stream(peer, first.hello, request_iterator):
                yield message
        except StreamClosed as closed:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, closed.reason)
