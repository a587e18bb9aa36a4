"""Publishing through octoDNS: desired state → plan → apply, MailFleet's values only.

octoDNS plans whole zones, so the desired zone handed to it is the zone as the provider
serves it, with only MailFleet's record sets changed; and within a record set only
MailFleet's values. octoDNS's ``OwnershipProcessor`` marks whole record sets, which does not
fit mail: the apex TXT set holds the customer's site verifications beside the SPF, the apex
MX set may hold a backup MX. So ownership is kept per value: ``previous`` (what MailFleet
published last time, stored with the domain) is taken out of each set, the new values put
in, and a set left empty is deleted. A foreign SPF at the apex is merged into MailFleet's
(one SPF record per name, RFC 7208), not dropped. Every change of a plan goes out in one
RFC 2136 update message (octodns-bind batches up to 1,000), applied whole or not at all.

octoDNS is synchronous; callers run these functions in a thread.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from control_plane.dns import desired
from control_plane.dns.checker import normalise_value
from control_plane.dns.record import Record
from control_plane.errors import MailFleetError

# dnspython (and the DoH client it brings: httpx2, h2) loads with the first lookup, not with serve.
if TYPE_CHECKING:
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

# octoDNS loads when DNS is planned or published, not with every serve start.
if TYPE_CHECKING:
    from octodns.provider.plan import Plan
    from octodns.zone import Zone

log = logging.getLogger(__name__)
KINDS = ("rfc2136", "cloudflare", "route53")


class DnsProviderError(MailFleetError):
    """The DNS provider refused or failed (zone unknown, TSIG key wrong, update refused)."""

    status = 502
    title = "DNS provider error"


@dataclass(frozen=True)
class Change:
    action: str  # create, update, delete
    name: str
    type: str
    ttl: int
    values: tuple[str, ...]  # after the change (empty for a delete)
    previous: tuple[str, ...]  # before it (empty for a create)


def provider(provider_id: str, kind: str, settings: dict[str, Any], secret: dict[str, str]) -> Any:
    """The octoDNS provider for a MailFleet DNS provider and its Vault secret."""
    if kind == "rfc2136":
        from octodns_bind import Rfc2136Provider

        return Rfc2136Provider(
            provider_id,
            host=settings["host"],
            port=int(settings.get("port", 53)),
            timeout=float(settings.get("timeout", 10)),
            key_name=settings.get("key_name"),
            key_secret=secret.get("key_secret"),
            key_algorithm=settings.get("key_algorithm", "hmac-sha256"),
        )
    if kind == "cloudflare":
        module = importlib.import_module("octodns_cloudflare")
        return module.CloudflareProvider(
            provider_id, token=secret["token"], account_id=settings.get("account_id")
        )
    if kind == "route53":
        module = importlib.import_module("octodns_route53")
        return module.Route53Provider(
            provider_id,
            access_key_id=secret["access_key_id"],
            secret_access_key=secret["secret_access_key"],
        )
    raise MailFleetError(f"unknown DNS provider kind {kind!r}")


def _relative(name: str, zone: str) -> str | None:
    if name == zone:
        return ""
    if name.endswith("." + zone):
        return name[: -len(zone) - 1]
    return None  # outside the zone: published elsewhere (or by the VPS provider: PTR)


def _octodns_data(record: Record) -> dict[str, Any]:
    """Presentation values → the shapes octoDNS's records take."""
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    if record.type == "TXT":
        # octoDNS keeps a TXT value as one text with ``;`` escaped and splits it itself.
        values: list[Any] = [desired.octodns_txt(v) for v in record.values]
        return {"type": "TXT", "ttl": record.ttl, "values": values}
    parsed = [
        dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(record.type), value)
        for value in record.values
    ]
    if record.type in ("CNAME", "PTR"):
        return {"type": record.type, "ttl": record.ttl, "value": parsed[0].to_text()}
    return {"type": record.type, "ttl": record.ttl, "values": [_value(r) for r in parsed]}


def _value(rdata: dns.rdata.Rdata) -> Any:
    from dns.rdtypes.ANY.CAA import CAA
    from dns.rdtypes.ANY.MX import MX

    if isinstance(rdata, MX):
        return {"preference": rdata.preference, "exchange": rdata.exchange.to_text()}
    if isinstance(rdata, CAA):
        return {"flags": rdata.flags, "tag": rdata.tag.decode(), "value": rdata.value.decode()}
    return rdata.to_text()


def desired_zone(zone: str, records: Sequence[Record]) -> Zone:
    from octodns.record import Record as OctoRecord
    from octodns.zone import Zone

    desired = Zone(zone + ".", [])
    for record in records:
        relative = _relative(record.name, zone)
        if relative is not None:
            desired.add_record(OctoRecord.new(desired, relative, _octodns_data(record)))
    return desired


Owned = dict[tuple[str, str], tuple[str, ...]]  # (name, type) → MailFleet's values


def merge(
    rtype: str, current: Sequence[str], previous: Sequence[str], ours: Sequence[str]
) -> list[str]:
    """The record set after MailFleet's change: the others' values, then ours."""
    mine = {normalise_value(rtype, v) for v in previous} | {normalise_value(rtype, v) for v in ours}
    theirs = [v for v in current if normalise_value(rtype, v) not in mine]
    ours = list(ours)
    spf = [i for i, v in enumerate(ours) if rtype == "TXT" and _is_spf(v)]
    if spf:
        foreign = [v for v in theirs if _is_spf(v)]
        theirs = [v for v in theirs if not _is_spf(v)]
        ours[spf[0]] = _merge_spf(ours[spf[0]], foreign)
    return [*theirs, *ours]


def _is_spf(value: str) -> bool:
    return normalise_value("TXT", value).lower().startswith("v=spf1")


def _merge_spf(ours: str, foreign: Sequence[str]) -> str:
    """Our SPF with the foreign SPFs' mechanisms added before our ``all``."""
    terms = normalise_value("TXT", ours).split()
    final = terms.pop() if terms and terms[-1].endswith("all") else "-all"
    for other in foreign:
        for term in normalise_value("TXT", other).split()[1:]:
            if not term.endswith("all") and term not in terms:
                terms.append(term)
    return '"' + " ".join([*terms, final]) + '"'


def plan(
    target: Any, zone: str, records: Sequence[Record], previous: Owned | None = None
) -> tuple[Plan | None, list[Change], Owned]:
    """What publishing ``records`` in ``zone`` would change; and what MailFleet will own.

    ``previous`` is what MailFleet owned after its last apply (empty at first)."""
    from octodns.record import Record as OctoRecord
    from octodns.zone import Zone

    previous = previous or {}
    existing = Zone(zone + ".", [])
    try:
        target.populate(existing, target=True, lenient=True)
    except Exception as exc:  # octoDNS and its providers raise many kinds; keep the words
        raise DnsProviderError(f"zone {zone}: {_reason(exc)}") from None
    current = {(r.name, r.type): r for r in map(_ours, existing.records)}
    wanted = {r.key: r for r in records if _relative(r.name, zone) is not None}
    keys = set(wanted) | {k for k in previous if _relative(k[0], zone) is not None}
    desired = Zone(zone + ".", [])
    for record in existing.records:
        if (_ours(record).name, record._type) not in keys:
            desired.add_record(record.copy(zone=desired))
    owned: Owned = {}
    for name, rtype in sorted(keys):
        ours = wanted.get((name, rtype))
        values = merge(
            rtype,
            current[(name, rtype)].values if (name, rtype) in current else (),
            previous.get((name, rtype), ()),
            ours.values if ours else (),
        )
        if not values:
            continue
        ttl = ours.ttl if ours else current[(name, rtype)].ttl
        merged = Record(name, rtype, ttl, tuple(values))
        desired.add_record(OctoRecord.new(desired, _relative(name, zone), _octodns_data(merged)))
        if ours:
            owned[(name, rtype)] = tuple(v for v in values if v in ours.values or _is_spf(v))
    try:
        planned = target.plan(desired)
    except Exception as exc:
        raise DnsProviderError(f"zone {zone}: {_reason(exc)}") from None
    return planned, _changes(planned), owned


def apply(target: Any, zone: str, planned: Plan | None) -> None:
    if planned is None:
        return
    try:
        target.apply(planned)
    except Exception as exc:
        raise DnsProviderError(f"zone {zone}: {_reason(exc)}") from None


def published(target: Any, zone: str) -> list[Record]:
    """What the provider serves in ``zone`` now (every record, the customer's too)."""
    from octodns.zone import Zone

    existing = Zone(zone + ".", [])
    try:
        target.populate(existing, target=True, lenient=True)
    except Exception as exc:
        raise DnsProviderError(f"zone {zone}: {_reason(exc)}") from None
    return [_ours(record) for record in existing.records]


def _ours(record: Any) -> Record:
    rrset = record.to_rrset()  # octoDNS's: name, _type, ttl, rdatas in presentation form
    name = str(rrset.name).rstrip(".").lower()
    return Record(name, rrset._type, int(rrset.ttl), tuple(sorted(rrset.rdatas)))


def _changes(planned: Plan | None) -> list[Change]:
    from octodns.record import Create, Delete, Update

    if planned is None:
        return []
    found = []
    for change in planned.changes:
        new = _ours(change.new) if change.new is not None else None
        old = _ours(change.existing) if change.existing is not None else None
        shown = new or old
        assert shown is not None
        action = {Create: "create", Update: "update", Delete: "delete"}[type(change)]
        found.append(
            Change(
                action,
                shown.name,
                shown.type,
                shown.ttl,
                new.values if new else (),
                old.values if old else (),
            )
        )
    return sorted(found, key=lambda c: (c.name, c.type))


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    lowered = text.lower()
    tsig = ("badsig", "badkey", "notauth", "signature", "tsig")
    if any(word in lowered for word in tsig):
        return f"the server refused the TSIG key ({text})"
    if "refused" in lowered:
        return f"the server refused ({text})"
    return text[:300]
