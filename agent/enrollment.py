"""First contact: trust the control plane by its CA pin, trade the join token for a certificate."""

from __future__ import annotations

import logging
import socket

import grpc

from agent import __version__
from agent.config import AgentConfig
from agent.identity import Credentials, IdentityStore, key_and_csr, pem_pin, pinned_ca
from mailfleet.agent.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)
ENROLL_TIMEOUT_SECONDS = 30


class EnrollmentError(Exception):
    """Enrollment cannot succeed without someone acting (a new join token, a fixed pin)."""


async def enroll(config: AgentConfig, store: IdentityStore) -> Credentials:
    token = config.join_token
    if not token or store.token_spent(token):
        raise EnrollmentError("not enrolled and no unused join token in the config")
    ca_pem = await pinned_ca(config.enroll_address, config.ca_pin)
    hostname = socket.gethostname()
    key_pem, csr_pem = await key_and_csr(hostname)
    channel = grpc.aio.secure_channel(
        config.enroll_address, grpc.ssl_channel_credentials(root_certificates=ca_pem)
    )
    try:
        response = await agent_pb2_grpc.EnrollmentStub(channel).Enroll(
            agent_pb2.EnrollRequest(
                join_token=token,
                csr_pem=csr_pem,
                agent_version=__version__,
                hostname=hostname,
                server_id=store.server_id(),
            ),
            timeout=ENROLL_TIMEOUT_SECONDS,
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            store.mark_token_spent(token)  # never retry a token the control plane refused
            raise EnrollmentError(f"enrollment refused: {exc.details()}") from None
        raise
    finally:
        await channel.close()
    if pem_pin(response.ca_chain_pem) != config.ca_pin:
        raise EnrollmentError("the control plane answered with a CA that does not match the pin")
    credentials = Credentials(
        server_id=response.server_id,
        key_pem=key_pem,
        certificate_pem=response.certificate_pem,
        ca_pem=response.ca_chain_pem,
    )
    store.save(credentials)
    store.mark_token_spent(token)
    log.info(
        "enrolled as server %s; certificate valid until %s",
        credentials.server_id,
        credentials.not_after.isoformat(),
    )
    return credentials
