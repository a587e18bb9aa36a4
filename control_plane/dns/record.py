"""One DNS record set as MailFleet wants it: the currency between the desired-state
computation, the publisher (octoDNS) and the propagation checker."""

from __future__ import annotations

from dataclasses import dataclass

RecordType = str  # "A", "AAAA", "MX", "TXT", "CNAME", "CAA", "PTR", "NS", "SOA"


@dataclass(frozen=True, order=True)
class Record:
    """A record set: owner ``name`` (absolute, lower case, no trailing dot), ``type``,
    ``ttl`` and its ``values`` in presentation form, sorted.

    Values are what a resolver would show: ``"10 mx1.example.net."`` for MX, the text of a TXT
    record with its 255-byte strings already split and quoted (``'"v=spf1 …" "…"'``),
    ``'0 issue "letsencrypt.org"'`` for CAA, an address for A/AAAA.
    """

    name: str
    type: RecordType
    ttl: int
    values: tuple[str, ...]
    purpose: str = ""  # why MailFleet wants it: "spf", "dkim:mf202611", "dmarc", "mx", …

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.type)
