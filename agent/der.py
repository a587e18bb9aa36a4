"""The few X.509 fields the long-running agent reads, from DER with the standard library.

Checking its certificate's dates at each connect and a CA's pin must not keep the
``cryptography`` package (≈ 9 MiB resident) loaded in a process that idles for months; key,
CSR and signature work runs in a short-lived helper (``agent.pki``) instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime

_BEGIN, _END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
_UTC_TIME, _GENERALIZED_TIME, _VERSION = 0x17, 0x18, 0xA0


class DerError(ValueError):
    """Not a certificate this reader understands."""


def first_certificate(pem: bytes) -> bytes:
    """The DER of the first certificate in ``pem`` (a chain's first is its leaf or CA)."""
    start = pem.find(_BEGIN)
    end = pem.find(_END, start)
    if start < 0 or end < 0:
        raise DerError("no PEM certificate")
    try:
        return base64.b64decode(b"".join(pem[start + len(_BEGIN) : end].split()), validate=True)
    except binascii.Error as exc:
        raise DerError(f"PEM certificate is not base64: {exc}") from None


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the element at ``at``."""
    if at + 2 > len(der):
        raise DerError("truncated")
    tag, length, at = der[at], der[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        length, at = int.from_bytes(der[at : at + size], "big"), at + size
    if at + length > len(der):
        raise DerError("truncated")
    return tag, at, at + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, value start, value end) of each element in ``der[start:end]``."""
    found = []
    while start < end:
        tag, value, after = _element(der, start)
        found.append((tag, start, value, after))
        start = after
    return found


def _tbs_fields(der: bytes) -> list[tuple[int, int, int, int]]:
    """TBSCertificate's fields from serialNumber on (the optional version dropped)."""
    cert_start = _element(der, 0)[1]
    _, tbs_start, tbs_end = _element(der, cert_start)
    fields = _children(der, tbs_start, tbs_end)
    fields = fields[1:] if fields and fields[0][0] == _VERSION else fields
    if len(fields) < 6:
        raise DerError("TBSCertificate too short")
    return fields  # serial, signature, issuer, validity, subject, subjectPublicKeyInfo, …


def _time(tag: int, text: str) -> datetime:
    if tag == _UTC_TIME:  # YYMMDDHHMMSSZ; RFC 5280: 50-99 are 19xx
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME:
        raise DerError(f"validity time has tag {tag:#x}")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def validity(pem: bytes) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) of the first certificate in ``pem``, in UTC."""
    der = first_certificate(pem)
    _, _, start, end = _tbs_fields(der)[3]
    (before_tag, _, b0, b1), (after_tag, _, a0, a1) = _children(der, start, end)[:2]
    return _time(before_tag, der[b0:b1].decode()), _time(after_tag, der[a0:a1].decode())


def spki_pin_of_der(der: bytes) -> str:
    """``sha256:<hex>`` of the certificate's SubjectPublicKeyInfo (the pin agent.toml holds)."""
    _, element, _, end = _tbs_fields(der)[5]
    return f"sha256:{hashlib.sha256(der[element:end]).hexdigest()}"


def pem_pin(pem: bytes) -> str:
    """The pin of the first certificate in ``pem``."""
    return spki_pin_of_der(first_certificate(pem))
