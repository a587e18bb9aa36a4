"""The daemon reads certificate dates and pins without ``cryptography`` (agent.der), and
makes keys and CSRs in a short-lived helper (agent.pki): both must agree with the library."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from agent import der, pki
from agent.identity import Credentials, TrustError, key_and_csr, pinned_ca


def certificate(not_before: datetime, not_after: datetime, rsa_key: bool = False) -> bytes:
    key = (
        rsa.generate_private_key(65537, 2048)
        if rsa_key
        else ec.generate_private_key(ec.SECP256R1())
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("before", "after", "rsa_key"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), False),
        # UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280); a longer key's lengths
        (datetime(1999, 12, 31, tzinfo=UTC), datetime(2051, 6, 1, 12, tzinfo=UTC), True),
    ],
)
def test_dates_and_pin_as_cryptography_reads_them(
    before: datetime, after: datetime, rsa_key: bool
) -> None:
    pem = certificate(before, after, rsa_key)
    credentials = Credentials("s", b"", pem + certificate(after, after + timedelta(1)), b"")
    assert (credentials.not_before, credentials.not_after) == (before, after)
    assert der.pem_pin(pem) == pki.spki_pin(x509.load_pem_x509_certificate(pem))


def test_not_a_certificate() -> None:
    with pytest.raises(der.DerError):
        der.validity(b"-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n")
    with pytest.raises(der.DerError):
        der.pem_pin(b"no PEM here")


def test_helper_makes_the_key_and_csr_and_reports_trust_errors() -> None:
    key_pem, csr_pem = asyncio.run(key_and_csr("mx1.example.test"))
    csr = x509.load_pem_x509_csr(csr_pem)
    key = serialization.load_pem_private_key(key_pem, None)
    assert csr.is_signature_valid and csr.public_key() == key.public_key()
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mx1.example.test"
    with pytest.raises(TrustError, match=r"cannot reach 127\.0\.0\.1:1"):
        asyncio.run(pinned_ca("127.0.0.1:1", "sha256:" + "0" * 64))
