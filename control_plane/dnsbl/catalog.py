"""The DNSBL catalog: which lists every address and mail domain is looked up on.

One setting, ``MAILFLEET_DNSBL_LISTS``, replaces the defaults below whole (air-gapped users
and the tests point it at their own zones): a JSON list of
``{"zone", "kind": "ip"|"domain", "name", "major", "weight", "removal_url"}``, and optionally
``"codes"`` (return code → meaning), ``"errors"`` (return codes that mean the list refused to
answer, e.g. URIBL's 127.0.0.1), ``"instructions"`` (how to ask for removal),
``"bits"`` (bitmask lists: bit of the last octet → sublist), ``"test_listed"`` /
``"test_unlisted"`` (RFC 5782 test points; default ``127.0.0.2`` /
``127.0.0.1`` for IP lists, ``test`` / ``invalid`` for domain lists).

``major`` lists are the ones receivers act on (a listing there auto-pauses the address,
see ``MAILFLEET_REPUTATION_AUTO_PAUSE``); ``weight`` is the list's share of the 0-100 score
(see ``service.score``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from control_plane.settings import Settings, parse_host_port

Kind = Literal["ip", "domain"]
# Spamhaus (and lists run the same way) answer these instead of a listing when they will not
# answer the question: never a verdict, always unknown.
SPAMHAUS_ERRORS = {
    "127.255.255.252": "typo in the DNSBL name (Spamhaus: query refused)",
    "127.255.255.254": "query through a public/open resolver (Spamhaus refuses those)",
    "127.255.255.255": "excessive number of queries (Spamhaus: rate limited)",
}
ERROR_NET = ipaddress.ip_network("127.255.255.0/24")
LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")


class DnsblList(BaseModel):
    """One list of the catalog, as ``MAILFLEET_DNSBL_LISTS`` spells it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    zone: str = Field(min_length=3, max_length=200)
    kind: Kind
    name: str = Field(min_length=1, max_length=100)
    major: bool = False
    weight: float = Field(default=1.0, ge=0, le=1000)
    removal_url: str | None = Field(default=None, max_length=500)
    instructions: str | None = Field(default=None, max_length=2000)
    codes: dict[str, str] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    bits: dict[int, str] = Field(default_factory=dict)  # bitmask lists: bit → sublist
    test_listed: str | None = Field(default=None, max_length=200)
    test_unlisted: str | None = Field(default=None, max_length=200)

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone = value.strip().rstrip(".").lower()
        labels = zone.split(".")
        if len(labels) < 2 or any(not 0 < len(label) < 64 for label in labels):
            raise ValueError(f"{value!r} is not a DNS zone name")
        return zone

    @property
    def check(self) -> str:
        """The incident check of this list (``dnsbl.<zone>``)."""
        return f"dnsbl.{self.zone}"

    @property
    def positive_test(self) -> str:
        return self.test_listed or ("127.0.0.2" if self.kind == "ip" else "test")

    @property
    def negative_test(self) -> str:
        return self.test_unlisted or ("127.0.0.1" if self.kind == "ip" else "invalid")

    def meaning(self, code: str) -> str:
        """What a listing's return code means on this list: catalogued (Spamhaus' codes are
        known for its zones, DQS ones included), else the sublists its last octet's bits
        name (SURBL, URIBL), else generic."""
        codes = self.codes or _known_codes(self.zone)
        if code in codes:
            return codes[code]
        last = int(code.rsplit(".", 1)[-1]) if code.rsplit(".", 1)[-1].isdigit() else 0
        named = [name for bit, name in sorted(self.bits.items()) if last & bit]
        return ", ".join(named) if named else f"listed (return code {code})"

    def error(self, code: str) -> str | None:
        """Why an answer is no verdict: the list refused or limited the query, or the answer
        is not a DNSBL code at all (a resolver that rewrites NXDOMAIN); None: a listing."""
        if code in self.errors:
            return self.errors[code]
        if code in SPAMHAUS_ERRORS:
            return SPAMHAUS_ERRORS[code]
        try:
            address = ipaddress.ip_address(code)
        except ValueError:
            return f"answer {code!r} is not an address"
        if address in ERROR_NET:
            return f"the list answered with its error code {code}"
        if address not in LOOPBACK_NET:
            return f"answer {code} is outside 127.0.0.0/8 (a resolver rewriting NXDOMAIN?)"
        return None

    def how_to_remove(self) -> str:
        """The removal instructions the delisting requests show."""
        if self.instructions:
            return self.instructions
        where = f" at {self.removal_url}" if self.removal_url else ""
        return (
            f"Fix what caused the listing first (an open relay, a compromised account, a "
            f"form that mails anyone), then ask {self.name} for removal{where}; say here "
            "when you have submitted it, and the address is rechecked until the list drops it."
        )


_ZEN_CODES = {
    "127.0.0.2": "SBL: Spamhaus Block List (a spam source or spam operation)",
    "127.0.0.3": "SBL CSS: Spamhaus CSS (low-reputation mail from this address)",
    "127.0.0.4": "XBL: exploited host (CBL: infected or hijacked sender)",
    "127.0.0.5": "XBL: exploited host",
    "127.0.0.6": "XBL: exploited host",
    "127.0.0.7": "XBL: exploited host",
    "127.0.0.9": "DROP: hijacked or criminal network (Don't Route Or Peer)",
    "127.0.0.10": "PBL: the ISP says this range should not send mail directly",
    "127.0.0.11": "PBL: Spamhaus says this range should not send mail directly",
}
_DBL_CODES = {
    "127.0.1.2": "spam domain",
    "127.0.1.4": "phishing domain",
    "127.0.1.5": "malware domain",
    "127.0.1.6": "botnet C&C domain",
    "127.0.1.102": "abused legitimate domain (spam)",
    "127.0.1.103": "abused legitimate spammed redirector",
    "127.0.1.104": "abused legitimate domain (phishing)",
    "127.0.1.105": "abused legitimate domain (malware)",
    "127.0.1.106": "abused legitimate domain (botnet C&C)",
}
_UCE = "http://www.uceprotect.net/en/rblcheck.php"


def _known_codes(zone: str) -> dict[str, str]:
    """Spamhaus' codes for its zones however they are reached (``zen.spamhaus.org``, or a
    DQS key's ``<key>.zen.dq.spamhaus.net``)."""
    if zone.endswith(("zen.spamhaus.org", "zen.dq.spamhaus.net")):
        return _ZEN_CODES
    if zone.endswith(("dbl.spamhaus.org", "dbl.dq.spamhaus.net")):
        return _DBL_CODES
    return {}


DEFAULT_LISTS: tuple[DnsblList, ...] = (
    DnsblList(zone="zen.spamhaus.org", kind="ip", name="Spamhaus ZEN", major=True, weight=30,
              removal_url="https://check.spamhaus.org/", codes=_ZEN_CODES),
    DnsblList(zone="b.barracudacentral.org", kind="ip", name="Barracuda", major=True, weight=20,
              removal_url="https://www.barracudacentral.org/rbl/removal-request"),
    DnsblList(zone="bl.spamcop.net", kind="ip", name="SpamCop", major=True, weight=15,
              removal_url="https://www.spamcop.net/bl.shtml",
              instructions="SpamCop listings expire by themselves 24 hours after the last "
              "report; stop what is sending the reported mail and wait."),
    DnsblList(zone="bl.mailspike.net", kind="ip", name="Mailspike", weight=10,
              removal_url="https://mailspike.org/iplookup.html"),
    DnsblList(zone="psbl.surriel.com", kind="ip", name="PSBL", weight=5,
              removal_url="https://psbl.org/remove"),
    DnsblList(zone="dnsbl-1.uceprotect.net", kind="ip", name="UCEPROTECT Level 1", weight=10,
              removal_url=_UCE),
    DnsblList(zone="dnsbl-2.uceprotect.net", kind="ip", name="UCEPROTECT Level 2", weight=3,
              removal_url=_UCE,
              instructions="Level 2 lists whole provider allocations for their neighbours' "
              "spam: ask the provider, there is no removal for one address."),
    DnsblList(zone="dbl.spamhaus.org", kind="domain", name="Spamhaus DBL", major=True,
              weight=30, removal_url="https://check.spamhaus.org/", codes=_DBL_CODES,
              test_listed="dbltest.com"),
    DnsblList(zone="multi.surbl.org", kind="domain", name="SURBL", weight=15,
              removal_url="https://www.surbl.org/surbl-analysis", test_listed="test.surbl.org",
              bits={8: "PH (phishing)", 16: "MW (malware)", 64: "ABUSE (spam)",
                    128: "CR (cracked site)"}),
    DnsblList(zone="multi.uribl.com", kind="domain", name="URIBL", weight=10,
              removal_url="https://admin.uribl.com/", test_listed="test.uribl.com",
              bits={2: "black", 4: "grey", 8: "red"},
              errors={"127.0.0.1": "query refused (URIBL blocks public resolvers and heavy "
                      "users)"}),
)  # fmt: skip


def parse_lists(raw: Sequence[dict[str, Any]]) -> tuple[DnsblList, ...]:
    """The catalog of ``MAILFLEET_DNSBL_LISTS``; ValueError naming the entry and field."""
    lists: list[DnsblList] = []
    for index, entry in enumerate(raw):
        try:
            lists.append(DnsblList.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"MAILFLEET_DNSBL_LISTS[{index}].{where}: {first['msg']}") from None
    zones = [item.zone for item in lists]
    if len(set(zones)) != len(zones):
        raise ValueError("MAILFLEET_DNSBL_LISTS: a zone is listed twice")
    return tuple(lists)


def catalog(settings: Settings) -> tuple[DnsblList, ...]:
    """The lists in force: the setting's when given, else the defaults."""
    if settings.dnsbl_lists is None:
        return DEFAULT_LISTS
    return parse_lists(settings.dnsbl_lists)


def lists_of(lists: Sequence[DnsblList], kind: Kind) -> tuple[DnsblList, ...]:
    return tuple(item for item in lists if item.kind == kind)


def find(lists: Sequence[DnsblList], zone: str) -> DnsblList | None:
    wanted = zone.strip().rstrip(".").lower()
    return next((item for item in lists if item.zone == wanted), None)


def resolvers(settings: Settings) -> tuple[tuple[str, int], ...]:
    """``MAILFLEET_DNSBL_RESOLVERS`` as (host, port); empty: the system's resolvers."""
    found = []
    for item in filter(None, (part.strip() for part in settings.dnsbl_resolvers.split(","))):
        found.append(parse_host_port(item) if item.count(":") == 1 or "]" in item else (item, 53))
    return tuple(found)
