"""The agent's timing rules: gRPC's reconnect backoff and client-go's rotation window."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.backoff import Backoff
from agent.identity import Credentials
from agent.link import rotation_time


def test_backoff_follows_grpc_connection_backoff() -> None:
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.next() for _ in range(20)]
    expected = [min(1.0 * 1.6**i, 120.0) for i in range(20)]
    for delay, base in zip(delays, expected, strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert max(delays) <= 120 * 1.2
    assert delays[-1] >= 120 * 0.8  # capped, not growing forever
    backoff.reset()
    assert 0.8 <= backoff.next() <= 1.2


def test_jitter_spreads_reconnects() -> None:
    firsts = {round(Backoff(rng=random.Random(seed)).next(), 3) for seed in range(50)}
    assert len(firsts) > 40


def credentials(lifetime: timedelta) -> Credentials:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC).replace(microsecond=0)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + lifetime)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return Credentials(server_id="s", key_pem=b"", certificate_pem=pem, ca_pem=pem)


def test_rotation_happens_between_70_and_90_percent_of_the_lifetime() -> None:
    creds = credentials(timedelta(hours=24))
    rng = random.Random(3)
    points = [
        (rotation_time(creds, rng) - creds.not_before) / timedelta(hours=24) for _ in range(500)
    ]
    assert all(0.7 <= p <= 0.9 for p in points)
    assert max(points) - min(points) > 0.15  # spread, so a fleet does not renew at once
