"""Who is on the other end of a mutual-TLS stream: the server id its certificate names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from control_plane.vault.pki import serial_of


@dataclass(frozen=True)
class PeerIdentity:
    server_id: uuid.UUID
    serial: str
    not_after: datetime


class NoIdentity(Exception):
    pass


def peer_identity(context: grpc.aio.ServicerContext[object, object]) -> PeerIdentity:
    """The verified client certificate's identity; TLS already checked it chains to our CA."""
    pems = list(context.auth_context().get("x509_pem_cert") or [])
    if not pems:
        raise NoIdentity("a client certificate is required")
    pem = pems[0]
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        server_id = uuid.UUID(str(names[0].value))
    except (IndexError, ValueError):
        raise NoIdentity("the certificate does not name a server") from None
    return PeerIdentity(
        server_id=server_id, serial=serial_of(pem), not_after=cert.not_valid_after_utc
    )
