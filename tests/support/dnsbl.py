"""DNSBL zones served by a real Knot on loopback, the catalog setting that points at them,
and resolvers that fail the ways real ones do (silence).

A zone lists addresses as RFC 5782 says: the reversed octets under the zone with an A record
in 127.0.0.0/8 and, optionally, a TXT reason; the test points 127.0.0.2 (``test`` for domain
lists) listed and 127.0.0.1 (``invalid``) not. The same knotd is the lookups' resolver:
it answers its own zones authoritatively and REFUSED for any zone it does not serve — a list
"whose server refuses" is simply a catalog zone the knotd does not have.
"""

from __future__ import annotations

import ipaddress
import json
import random
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.knot import zone_text


@dataclass(frozen=True)
class Listing:
    code: str = "127.0.0.2"
    reason: str | None = None


@dataclass(frozen=True)
class Zone:
    """A DNSBL zone: ``listed`` maps an address (or a domain) to its listing."""

    zone: str
    kind: str = "ip"
    listed: Mapping[str, Listing] = field(default_factory=dict)
    test_points: bool = True  # False: the positive test point is missing (a broken list)

    def text(self) -> str:
        records: list[str] = []
        entries = dict(self.listed)
        if self.test_points:
            point = "127.0.0.2" if self.kind == "ip" else "test"
            entries[point] = Listing("127.0.0.2", "RFC 5782 test point")
        for subject, listing in entries.items():
            name = owner(subject)
            records.append(f"{name} A {listing.code}")
            if listing.reason is not None:
                records.append(f"{name} TXT {json.dumps(listing.reason)}")
        return zone_text(self.zone, records=records)


def owner(subject: str) -> str:
    """The relative owner name of a listed address (reversed octets) or domain."""
    try:
        address = ipaddress.ip_address(subject)
    except ValueError:
        return subject
    return ".".join(reversed(str(address).split(".")))


def knot_zones(zones: Sequence[Zone]) -> dict[str, str]:
    return {f"{zone.zone}.": zone.text() for zone in zones}


def catalog(*entries: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``MAILFLEET_DNSBL_LISTS`` (as the setting's value) with test defaults filled in."""
    found = []
    for entry in entries:
        item = {"kind": "ip", "name": entry["zone"], "weight": 1, **entry}
        item.setdefault("removal_url", f"https://{item['zone']}/remove")
        found.append(item)
    return found


def addresses(count: int, seed: int | None = None) -> list[str]:
    """Distinct addresses in 198.18.0.0/16 (benchmark space; tests/ips takes 198.19/16),
    random unless ``seed``: tests sharing a database never plant on each other's addresses."""
    picker = random.Random(seed)
    network = ipaddress.ip_network("198.18.0.0/16")
    chosen: set[str] = set()
    while len(chosen) < count:
        chosen.add(str(network[picker.randrange(1, network.num_addresses - 1)]))
    return sorted(chosen)


@contextmanager
def silent_resolver() -> Iterator[tuple[str, int]]:
    """A UDP port on loopback that takes questions and never answers: the lookups time out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield ("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()
