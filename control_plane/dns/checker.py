"""DNS propagation checker: asks every authoritative server of a zone (and, optionally, some
recursive resolvers) for each record set MailFleet wants, and says per server whether it
already serves it, is still catching up (with an ETA derived from the zone's TTLs) or is wrong.

Why per server and not one lookup: a resolver only shows one server's view, and the cases that
need different answers to the user (wait for a secondary, wait for a cache, fix the source) are
only told apart by comparing each server's SOA serial with the newest one seen.

Zone apexes: ``check`` takes them as ``zones``; without them it derives them from the desired
names: each desired name with no other desired name above it is an apex (``example.com`` for
``example.com`` MX, ``_dmarc.example.com`` and ``mf._domainkey.example.com``). A mail domain
always has records at its apex (MX, SPF); if a derived "apex" is really a name inside the zone,
the SOA query still works: the serial is then read from the SOA that an authoritative server
puts in the authority section of its NODATA/NXDOMAIN answer.

Statuses and ETAs (an ETA is an upper bound, from the TTLs involved):

- authoritative, other values or none, SOA serial behind the highest serial seen for the zone:
  ``stale``; ETA the SOA refresh of its copy (retried every SOA retry if the primary is away).
- authoritative and current: NXDOMAIN/NODATA is ``missing``, other values ``different``: no
  ETA, someone has to publish or fix the record.
- resolver with other values while a current authoritative server has the desired ones:
  ``stale``; ETA the remaining TTL of its answer, or for a cached NXDOMAIN/NODATA the TTL of the
  SOA in its answer (the remaining negative-cache time), else the zone's min(SOA TTL, MINIMUM);
  plus the refresh of a stale secondary it may ask next. When the authoritative servers are
  wrong too (or none answered) a resolver's other answer is ``missing``/``different``.
- no usable answer: ``error`` (``timeout``, ``REFUSED``, ``SERVFAIL``, ``truncated``, …), no ETA.

Time bound: every attempt is cut off after ``timeout``, so a check lasts at most about
``query_budget / concurrency × timeout`` (every attempt timing out, in full waves); in practice
a dead server adds ``(1 + retries) × timeout`` (see UNRESPONSIVE_AFTER below).

Query bound: each (question, server) pair gets at most ``1 + retries`` attempts (a TCP retry
after a truncated UDP answer is one of them), so a check sends at most
``(1 + retries) × (records × (authoritative + resolvers) + zones × authoritative)`` queries:
records × servers × (1 + retries), counting each zone's SOA as one more record on the
authoritative servers. A server that timed out ``UNRESPONSIVE_AFTER`` times in a row with no
answer in between is not asked again in this check, so a dead nameserver costs one round of
timeouts rather than one per record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, cast

from control_plane.dns.record import Record

# dnspython (and the DoH client it brings: httpx2, h2) loads with the first lookup, not with serve.
if TYPE_CHECKING:
    import dns.asyncquery
    import dns.asyncresolver
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.rdtypes.ANY.NS
    import dns.rdtypes.ANY.SOA
    import dns.rdtypes.txtbase
    import dns.resolver
    import dns.rrset

__all__ = [
    "UNRESPONSIVE_AFTER",
    "AuthoritativeLookupError",
    "CheckReport",
    "Eta",
    "Nameserver",
    "RecordReport",
    "ServerResult",
    "Status",
    "ZoneSerial",
    "check",
    "describe_eta",
    "find_authoritative",
    "normalise_value",
]

UNRESPONSIVE_AFTER = 8  # consecutive timeouts after which a server is given up for this check
EDNS_PAYLOAD = 1232  # DNS Flag Day 2020: avoids IP fragmentation; larger answers come over TCP
_TXT_TYPES = frozenset({"TXT", "SPF"})
# Types whose presentation is case-insensitive as a whole (names, addresses, numbers): CAA and
# TXT carry case-sensitive text and are left alone.
_CASELESS_TYPES = frozenset(
    {"A", "AAAA", "MX", "CNAME", "NS", "PTR", "SOA", "SRV", "DNAME", "TLSA", "SSHFP", "DS"}
)

Role = Literal["authoritative", "resolver"]


class AuthoritativeLookupError(RuntimeError):
    """The NS set of a zone (or its nameservers' addresses) could not be looked up."""


class Status(enum.StrEnum):
    """Per record and server; a record's overall status is the worst of its servers'
    (``matching`` < ``stale`` < ``error`` < ``missing`` < ``different``)."""

    MATCHING = "matching"  # serves exactly the desired set of values
    STALE = "stale"  # other values (or none) but behind: a lagging secondary or a cache
    ERROR = "error"  # no usable answer: timeout, REFUSED, SERVFAIL, … (see ``error``)
    MISSING = "missing"  # NXDOMAIN/NODATA on a server that is current: never published
    DIFFERENT = "different"  # other values on a current server: wrong at the source


_SEVERITY = {
    Status.MATCHING: 0,
    Status.STALE: 1,
    Status.ERROR: 2,
    Status.MISSING: 3,
    Status.DIFFERENT: 4,
}


@dataclass(frozen=True, order=True)
class Nameserver:
    """One address of one authoritative nameserver (a name with two addresses is two)."""

    name: str
    address: str
    port: int = 53


@dataclass(frozen=True)
class Eta:
    """When a non-matching record should match by itself: an upper bound from TTLs."""

    seconds: int
    phrase: str  # "within 5 minutes", "up to 1 hour", "up to 24 hours"
    reason: str  # which TTL it comes from

    @classmethod
    def of(cls, seconds: int, reason: str) -> Eta:
        seconds = max(0, int(seconds))
        return cls(seconds=seconds, phrase=describe_eta(seconds), reason=reason)


@dataclass(frozen=True)
class ZoneSerial:
    """The SOA one authoritative server has for one zone: its serial decides who is stale, its
    timers (refresh, retry, negative TTL) give the ETAs."""

    zone: str
    server: str
    address: str
    port: int
    serial: int | None
    refresh: int | None = None
    retry: int | None = None
    minimum: int | None = None
    soa_ttl: int | None = None
    error: str | None = None

    @property
    def negative_ttl(self) -> int | None:
        """How long resolvers cache NXDOMAIN/NODATA (RFC 2308: min of SOA TTL and MINIMUM)."""
        if self.minimum is None or self.soa_ttl is None:
            return None
        return min(self.minimum, self.soa_ttl)


@dataclass(frozen=True)
class ServerResult:
    """One record set as one server answered it; streamed through ``on_progress``."""

    name: str
    type: str
    server: str  # the nameserver's name, or "resolver"
    address: str
    port: int
    role: Role
    status: Status
    found: tuple[str, ...] = ()  # normalised values the server returned
    rcode: str | None = None  # NOERROR, NXDOMAIN, … (None: no answer)
    ttl: int | None = None  # TTL of the answer (a resolver's is the remaining one)
    serial: int | None = None  # the zone's SOA serial on this server (authoritative only)
    error: str | None = None  # for ``error``: "timeout", "REFUSED", "SERVFAIL", …
    detail: str = ""
    eta: Eta | None = None
    queries: int = 0  # attempts sent for this answer
    tcp: bool = False  # answered over TCP (the UDP answer was truncated)

    def to_dict(self) -> dict[str, object]:
        return cast(dict[str, object], _jsonable(self))


@dataclass
class RecordReport:
    """One desired record set and every server's view of it."""

    record: Record
    zone: str
    expected: tuple[str, ...]  # the desired values, normalised
    results: list[ServerResult] = field(default_factory=list)

    @property
    def status(self) -> Status:
        return max(
            (r.status for r in self.results), key=_SEVERITY.__getitem__, default=Status.ERROR
        )

    @property
    def eta(self) -> Eta | None:
        """The latest ETA of its stale servers; None when matching, or when a server will not
        match by itself (missing, different, error: someone has to act or look)."""
        if any(_SEVERITY[r.status] >= _SEVERITY[Status.ERROR] for r in self.results):
            return None
        return max((r.eta for r in self.results if r.eta is not None), key=_eta_key, default=None)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.record.name,
            "type": self.record.type,
            "ttl": self.record.ttl,
            "purpose": self.record.purpose,
            "zone": self.zone,
            "expected": list(self.expected),
            "status": self.status.value,
            "eta": _jsonable(self.eta),
            "results": [r.to_dict() for r in self.results],
        }


@dataclass
class CheckReport:
    """The outcome of one ``check``: per record, per server, plus the serials seen."""

    records: list[RecordReport]
    serials: list[ZoneSerial]
    queries_sent: int
    query_budget: int  # the most queries this check was allowed to send
    duration_seconds: float

    @property
    def propagated(self) -> bool:
        """True when every server serves every desired record set (errors count as not)."""
        return all(r.status is Status.MATCHING for r in self.records)

    @property
    def eta(self) -> Eta | None:
        """When everything should match by itself; None when propagated or when some record
        needs action (missing, different, error)."""
        if self.propagated or any(
            r.eta is None and r.status is not Status.MATCHING for r in self.records
        ):
            return None
        return max((r.eta for r in self.records if r.eta is not None), key=_eta_key, default=None)

    @property
    def counts(self) -> dict[str, int]:
        """How many server results have each status."""
        counts = {status.value: 0 for status in Status}
        for record in self.records:
            for result in record.results:
                counts[result.status.value] += 1
        return counts

    def to_dict(self) -> dict[str, object]:
        return {
            "propagated": self.propagated,
            "eta": _jsonable(self.eta),
            "counts": self.counts,
            "queries_sent": self.queries_sent,
            "query_budget": self.query_budget,
            "duration_seconds": round(self.duration_seconds, 3),
            "serials": [_jsonable(s) for s in self.serials],
            "records": [r.to_dict() for r in self.records],
        }


def _eta_key(eta: Eta) -> int:
    return eta.seconds


def _jsonable(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def describe_eta(seconds: int) -> str:
    """A human phrase for an upper bound in seconds: minutes when under an hour ("within 5
    minutes"), hours up to two days ("up to 1 hour", "up to 24 hours"), days beyond."""
    if seconds <= 0:
        return "now"
    if seconds < 3600:
        minutes = math.ceil(seconds / 60)
        nice = next(m for m in (1, 2, 5, 10, 15, 20, 30, 45, 60) if m >= minutes)
        return "within 1 minute" if nice == 1 else f"within {nice} minutes"
    hours = math.ceil(seconds / 3600)
    if hours <= 48:
        return "up to 1 hour" if hours == 1 else f"up to {hours} hours"
    return f"up to {math.ceil(seconds / 86400)} days"


# --- normalisation -----------------------------------------------------------------------------


def normalise_value(rdtype: str, value: str) -> str:
    """One value in the form values are compared in, so that equal data in another spelling
    matches: TXT as its character-strings joined (however they are split), names absolute and
    lower case (``10 MX1.example.net`` → ``10 mx1.example.net.``). A TXT value not starting with
    a quote is taken as the text itself. Raises ValueError for a value that does not parse."""
    import dns.exception
    import dns.name
    import dns.rdata
    import dns.rdataclass

    rdtype = rdtype.upper()
    if rdtype in _TXT_TYPES and not value.lstrip().startswith('"'):
        return value.strip()
    try:
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False
        )
    except (dns.exception.DNSException, ValueError) as exc:
        raise ValueError(f"cannot parse {rdtype} value {value!r}: {exc}") from exc
    return _rdata_text(rdata)


def _rdata_text(rdata: dns.rdata.Rdata) -> str:
    import dns.rdatatype
    import dns.rdtypes.txtbase

    rdtype = dns.rdatatype.to_text(rdata.rdtype)
    if isinstance(rdata, dns.rdtypes.txtbase.TXTBase):
        return b"".join(rdata.strings).decode("utf-8", "backslashreplace")
    text = rdata.to_text(origin=None, relativize=False)
    return text.lower() if rdtype in _CASELESS_TYPES else text


def _found_values(
    response: dns.message.Message, qname: dns.name.Name, rdtype: str
) -> tuple[str, ...]:
    """The answer's values for exactly ``qname``/``rdtype``; a CNAME in its place shows up as
    ``CNAME target.`` so that it reads as a different value, not as missing."""
    import dns.rdataclass
    import dns.rdatatype

    wanted = dns.rdatatype.from_text(rdtype)
    rrset = response.get_rrset(response.answer, qname, dns.rdataclass.IN, wanted)
    if rrset is not None:
        return tuple(sorted({_rdata_text(rd) for rd in rrset}))
    cname = response.get_rrset(response.answer, qname, dns.rdataclass.IN, dns.rdatatype.CNAME)
    if cname is not None and wanted != dns.rdatatype.CNAME:
        return tuple(sorted({f"CNAME {_rdata_text(rd)}" for rd in cname}))
    return ()


def _answer_ttl(response: dns.message.Message, qname: dns.name.Name, rdtype: str) -> int | None:
    import dns.rdataclass
    import dns.rdatatype

    wanted = dns.rdatatype.from_text(rdtype)
    for candidate in (wanted, dns.rdatatype.CNAME):
        rrset = response.get_rrset(response.answer, qname, dns.rdataclass.IN, candidate)
        if rrset is not None:
            return int(rrset.ttl)
    return None


def _authority_soa(response: dns.message.Message) -> dns.rrset.RRset | None:
    import dns.rdatatype

    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return rrset
    return None


# --- serials and zones -------------------------------------------------------------------------


def _serial_behind(serial: int, other: int) -> bool:
    """RFC 1982 serial arithmetic: ``serial`` is older than ``other`` (wraps at 2**32)."""
    return serial != other and (
        (serial < other and other - serial < 2**31) or (serial > other and serial - other > 2**31)
    )


def _is_behind(serial: ZoneSerial, highest: int | None) -> bool:
    return (
        serial.serial is not None and highest is not None and _serial_behind(serial.serial, highest)
    )


def _highest(serials: Iterable[int | None]) -> int | None:
    highest: int | None = None
    for serial in serials:
        if serial is not None and (highest is None or _serial_behind(highest, serial)):
            highest = serial
    return highest


def _absolute(name: str) -> dns.name.Name:
    import dns.name

    return dns.name.from_text(name.lower().rstrip(".") + ".")


def _enclosing(name: dns.name.Name) -> Iterator[dns.name.Name]:
    """``name`` and every name above it, deepest first (the root excluded)."""
    import dns.name

    for _ in range(len(name.labels)):
        if name == dns.name.root:
            return
        yield name
        name = name.parent()


def _assign_zones(records: Sequence[Record], zones: Sequence[str]) -> dict[tuple[str, str], str]:
    """Each record's zone apex: the deepest of ``zones`` containing it, or, without ``zones``,
    the deepest desired name above or at it that has no desired name above itself. Walks up
    each name (a few labels) rather than comparing every name with every zone: fleet checks
    pass thousands of both."""
    names = {_absolute(r.name) for r in records}
    if zones:
        apexes = {_absolute(z) for z in zones}
    else:
        apexes = {n for n in names if not any(p in names for p in list(_enclosing(n))[1:])}
    assigned: dict[tuple[str, str], str] = {}
    for record in records:
        zone = next((z for z in _enclosing(_absolute(record.name)) if z in apexes), None)
        if zone is None:
            raise ValueError(f"{record.name} is in none of the zones {sorted(map(str, apexes))}")
        assigned[record.key] = zone.to_text(omit_final_dot=True)
    return assigned


# --- querying ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    server: str
    address: str
    port: int
    role: Role


@dataclass
class _Reply:
    response: dns.message.Message | None
    error: str | None = None
    detail: str = ""
    attempts: int = 0
    tcp: bool = False


class _Querier:
    """Sends the queries of one check: a timeout on every attempt, a bounded number of
    attempts, servers that stopped answering given up, and a count of what was sent. (The
    number in flight is bounded by check's fixed pool of workers.)"""

    def __init__(self, timeout: float, retries: int, payload: int) -> None:
        self.timeout = timeout
        self.attempts = 1 + retries
        self.payload = payload
        self.sent = 0
        self._timeouts: dict[tuple[str, int], int] = {}

    def _unresponsive(self, target: _Target) -> bool:
        return self._timeouts.get((target.address, target.port), 0) >= UNRESPONSIVE_AFTER

    async def _send(
        self, query: dns.message.Message, target: _Target, tcp: bool
    ) -> dns.message.Message:
        import dns.asyncquery

        self.sent += 1
        if tcp:
            return await dns.asyncquery.tcp(
                query, target.address, timeout=self.timeout, port=target.port
            )
        return await dns.asyncquery.udp(
            query,
            target.address,
            timeout=self.timeout,
            port=target.port,
            ignore_unexpected=True,
            raise_on_truncation=True,
        )

    async def ask(self, qname: dns.name.Name, rdtype: str, target: _Target) -> _Reply:
        """A usable answer (NOERROR/NXDOMAIN; authoritative from an authoritative server) or
        the reason there is none. Timeouts, transport errors and SERVFAIL are retried; other
        rcodes (REFUSED, NOTAUTH, …) are an answer in themselves."""
        import dns.exception
        import dns.flags
        import dns.message
        import dns.rcode

        key = (target.address, target.port)
        reply = _Reply(None, "timeout", "not queried")
        for _ in range(self.attempts):
            if self._unresponsive(target):
                reply.error = "timeout"
                reply.detail = (
                    f"not asked: the server did not answer its last {UNRESPONSIVE_AFTER} "
                    "queries in this check"
                )
                return reply
            query = dns.message.make_query(qname, rdtype, use_edns=0, payload=self.payload, flags=0)
            if target.role == "resolver":
                query.flags |= dns.flags.RD
            reply.attempts += 1
            try:
                response = await self._send(query, target, reply.tcp)
            except dns.message.Truncated:
                reply.tcp = True
                reply.error = "truncated"
                reply.detail = "the UDP answer was truncated and no attempt was left for TCP"
                continue
            except dns.exception.Timeout:
                self._timeouts[key] = self._timeouts.get(key, 0) + 1
                reply.error = "timeout"
                reply.detail = f"no answer within {self.timeout:g} s ({reply.attempts} tries)"
                continue
            except ConnectionRefusedError:
                reply.error, reply.detail = "connection refused", "TCP connection refused"
                continue
            except (OSError, EOFError, dns.exception.DNSException) as exc:
                reply.error, reply.detail = "bad response", f"{type(exc).__name__}: {exc}"
                continue
            self._timeouts[key] = 0
            rcode = response.rcode()
            if rcode == dns.rcode.SERVFAIL:
                reply.error, reply.detail = "SERVFAIL", "the server failed to answer (SERVFAIL)"
                continue
            if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                name = dns.rcode.to_text(rcode)
                reply.error, reply.detail = name, f"the server answered {name}"
                return reply
            if target.role == "authoritative" and not response.flags & dns.flags.AA:
                reply.error = "not authoritative"
                reply.detail = "the answer lacks the AA flag: the server does not serve the zone"
                return reply
            reply.response, reply.error, reply.detail = response, None, ""
            return reply
        return reply


def _zone_serial(zone: str, target: _Target, reply: _Reply) -> ZoneSerial:
    import dns.rdataclass
    import dns.rdatatype
    import dns.rdtypes.ANY.SOA

    base = ZoneSerial(zone, target.server, target.address, target.port, serial=None)
    if reply.response is None:
        return dataclasses.replace(base, error=f"{reply.error}: {reply.detail}")
    response = reply.response
    rrset = response.get_rrset(
        response.answer, _absolute(zone), dns.rdataclass.IN, dns.rdatatype.SOA
    ) or _authority_soa(response)
    if rrset is None or not rrset:
        return dataclasses.replace(base, error="no SOA in the answer")
    soa = cast(dns.rdtypes.ANY.SOA.SOA, rrset[0])
    return dataclasses.replace(
        base,
        serial=int(soa.serial),
        refresh=int(soa.refresh),
        retry=int(soa.retry),
        minimum=int(soa.minimum),
        soa_ttl=int(rrset.ttl),
    )


# --- classification ----------------------------------------------------------------------------


def _base_result(record: Record, target: _Target, reply: _Reply) -> ServerResult:
    import dns.rcode

    response = reply.response
    return ServerResult(
        name=record.name,
        type=record.type.upper(),
        server=target.server,
        address=target.address,
        port=target.port,
        role=target.role,
        status=Status.ERROR,
        rcode=dns.rcode.to_text(response.rcode()) if response is not None else None,
        error=reply.error,
        detail=reply.detail,
        queries=reply.attempts,
        tcp=reply.tcp,
    )


def _classify_authoritative(
    record: Record,
    expected: frozenset[str],
    target: _Target,
    reply: _Reply,
    serial: ZoneSerial,
    highest: int | None,
) -> ServerResult:
    result = dataclasses.replace(_base_result(record, target, reply), serial=serial.serial)
    if reply.response is None:
        return result
    qname = _absolute(record.name)
    found = _found_values(reply.response, qname, record.type)
    result = dataclasses.replace(
        result, found=found, ttl=_answer_ttl(reply.response, qname, record.type), error=None
    )
    if set(found) == expected:
        return dataclasses.replace(result, status=Status.MATCHING, detail="")
    nothing = "NXDOMAIN" if result.rcode == "NXDOMAIN" else "NODATA"
    if _is_behind(serial, highest):
        refresh, retry = serial.refresh or 0, serial.retry or 0
        eta = Eta.of(
            refresh,
            f"secondary refresh: SOA refresh {refresh} s (then every {retry} s while the "
            "primary cannot be reached), unless a NOTIFY gets it there sooner",
        )
        detail = f"serial {serial.serial} is behind {highest}: the zone has not been transferred"
        return dataclasses.replace(result, status=Status.STALE, eta=eta, detail=detail)
    unknown = "" if serial.serial is not None else " (its SOA serial is unknown)"
    if not found:
        detail = f"{nothing} on a server that is current{unknown}: the record is not published"
        return dataclasses.replace(result, status=Status.MISSING, detail=detail)
    detail = f"other values on a server that is current{unknown}: wrong at the source"
    return dataclasses.replace(result, status=Status.DIFFERENT, detail=detail)


def _classify_resolver(
    record: Record,
    expected: frozenset[str],
    target: _Target,
    reply: _Reply,
    source: bool | None,
    stale_eta: Eta | None,
    negative_ttl: int | None,
) -> ServerResult:
    """``source``: whether a current authoritative server serves the desired values (None: no
    authoritative server answered). Only then is a resolver's other answer an old cached one."""
    result = _base_result(record, target, reply)
    if reply.response is None:
        return result
    response = reply.response
    qname = _absolute(record.name)
    found = _found_values(response, qname, record.type)
    ttl = _answer_ttl(response, qname, record.type)
    result = dataclasses.replace(result, found=found, ttl=ttl, error=None)
    if set(found) == expected:
        return dataclasses.replace(result, status=Status.MATCHING, detail="")
    if source is not True:
        why = (
            "no authoritative server answered: an old cached answer cannot be told from a wrong one"
            if source is None
            else "the authoritative servers do not serve the desired values either"
        )
        status = Status.DIFFERENT if found else Status.MISSING
        return dataclasses.replace(result, status=status, detail=why)
    if found:
        held, reason = ttl, f"the old answer's remaining TTL ({ttl} s)"
    elif (soa := _authority_soa(response)) is not None:
        held = int(soa.ttl)
        reason = f"negative caching: the SOA TTL in the resolver's {result.rcode} answer ({held} s)"
    else:
        held = negative_ttl
        reason = f"negative caching: the zone's SOA minimum / SOA TTL ({held} s)"
    if held is None:
        return dataclasses.replace(result, status=Status.STALE, detail="cached old answer")
    if stale_eta is not None:
        held += stale_eta.seconds
        reason += f", plus {stale_eta.seconds} s for a stale secondary it may ask again"
    return dataclasses.replace(
        result,
        status=Status.STALE,
        eta=Eta.of(held, reason),
        detail="the resolver still has the old answer cached",
    )


# --- bookkeeping ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    qname: dns.name.Name
    rdtype: str
    target: _Target
    server: int  # index into the authoritative (or resolver) targets
    zone: str
    record: int | None = None  # index into the records; None: the zone's SOA


@dataclass
class _RecordState:
    auth: list[ServerResult | None]
    resolvers: list[ServerResult | None]
    auth_pending: int
    parked: list[tuple[int, _Reply]] = field(default_factory=list)  # resolver answers


class _Progress:
    """Turns answers into ServerResults as they arrive, in whatever order the workers finish.
    An authoritative answer can only be judged once its zone's serials are all in, a resolver
    answer once the record's authoritative answers are: until then they are parked, so each
    result is emitted exactly once, as early as it can be."""

    def __init__(
        self,
        records: Sequence[Record],
        expected: dict[tuple[str, str], frozenset[str]],
        zone_of: dict[tuple[str, str], str],
        auth: Sequence[_Target],
        recursive: Sequence[_Target],
        on_progress: Callable[[ServerResult], None] | None,
    ) -> None:
        self.records, self.expected, self.zone_of = records, expected, zone_of
        self.auth, self.recursive, self.on_progress = auth, recursive, on_progress
        self.zones = sorted(set(zone_of.values()))
        self.serials: dict[str, list[ZoneSerial | None]] = {
            z: [None] * len(auth) for z in self.zones
        }
        self.soa_pending = {zone: len(auth) for zone in self.zones}
        self.highest: dict[str, int | None] = {}
        self.parked: dict[str, list[tuple[int, int, _Reply]]] = {z: [] for z in self.zones}
        self.state = [
            _RecordState([None] * len(auth), [None] * len(recursive), len(auth)) for _ in records
        ]

    def jobs(self) -> list[_Job]:
        """Every question of the check, SOAs first, then record by record (authoritative
        servers before resolvers), so that little has to wait to be judged."""
        jobs = [
            _Job(_absolute(zone), "SOA", target, i, zone)
            for zone in self.zones
            for i, target in enumerate(self.auth)
        ]
        for r, record in enumerate(self.records):
            zone, qname = self.zone_of[record.key], _absolute(record.name)
            for targets in (self.auth, self.recursive):
                jobs += [
                    _Job(qname, record.type, target, i, zone, r) for i, target in enumerate(targets)
                ]
        return jobs

    def done(self, job: _Job, reply: _Reply) -> None:
        if job.record is None:
            self._serial(job.zone, job.server, _zone_serial(job.zone, job.target, reply))
        elif job.target.role == "resolver":
            state = self.state[job.record]
            if state.auth_pending:
                state.parked.append((job.server, reply))
            else:
                self._resolver(job.record, job.server, reply)
        elif self.soa_pending[job.zone]:
            self.parked[job.zone].append((job.record, job.server, reply))
        else:
            self._authoritative(job.record, job.server, reply)

    def _emit(self, result: ServerResult) -> ServerResult:
        if self.on_progress is not None:
            self.on_progress(result)
        return result

    def _serial(self, zone: str, server: int, serial: ZoneSerial) -> None:
        self.serials[zone][server] = serial
        self.soa_pending[zone] -= 1
        if self.soa_pending[zone] == 0:
            self.highest[zone] = _highest(s.serial for s in self.serials[zone] if s is not None)
            parked, self.parked[zone] = self.parked[zone], []
            for record, i, reply in parked:
                self._authoritative(record, i, reply)

    def _zone_serials(self, zone: str) -> list[ZoneSerial]:
        return [s for s in self.serials[zone] if s is not None]

    def _authoritative(self, r: int, i: int, reply: _Reply) -> None:
        record, state = self.records[r], self.state[r]
        zone = self.zone_of[record.key]
        serial = self.serials[zone][i]
        assert serial is not None
        state.auth[i] = self._emit(
            _classify_authoritative(
                record, self.expected[record.key], self.auth[i], reply, serial, self.highest[zone]
            )
        )
        state.auth_pending -= 1
        if state.auth_pending == 0:
            parked, state.parked = state.parked, []
            for j, resolver_reply in parked:
                self._resolver(r, j, resolver_reply)

    def _resolver(self, r: int, i: int, reply: _Reply) -> None:
        record, state = self.records[r], self.state[r]
        zone = self.zone_of[record.key]
        highest = self.highest.get(zone)
        serials = self._zone_serials(zone)
        judged = [a for a in state.auth if a is not None]
        current = [
            result
            for result, serial in zip(judged, serials, strict=True)
            if result.status is not Status.ERROR and not _is_behind(serial, highest)
        ]
        source = any(a.status is Status.MATCHING for a in current) if current else None
        stale_eta = max(
            (a.eta for a in judged if a.status is Status.STALE and a.eta is not None),
            key=_eta_key,
            default=None,
        )
        negative_ttl = next(
            (s.negative_ttl for s in serials if s.serial == highest and s.negative_ttl), None
        )
        state.resolvers[i] = self._emit(
            _classify_resolver(
                record,
                self.expected[record.key],
                self.recursive[i],
                reply,
                source,
                stale_eta,
                negative_ttl,
            )
        )

    def reports(self) -> list[RecordReport]:
        reports = []
        for record, state in zip(self.records, self.state, strict=True):
            results = [r for r in (*state.auth, *state.resolvers) if r is not None]
            assert len(results) == len(self.auth) + len(self.recursive), "a result was lost"
            want = tuple(sorted(self.expected[record.key]))
            reports.append(RecordReport(record, self.zone_of[record.key], want, results))
        return reports

    def all_serials(self) -> list[ZoneSerial]:
        return [serial for zone in self.zones for serial in self._zone_serials(zone)]


# --- public API --------------------------------------------------------------------------------


async def find_authoritative(
    zone: str,
    resolver: tuple[str, int] | None = None,
    *,
    port: int = 53,
    # per lookup, not for the whole call
    timeout: float = 2.0,  # noqa: ASYNC109
) -> list[Nameserver]:
    """The zone's NS names and their A/AAAA addresses, looked up through ``resolver`` (the
    system's when None), each address as a ``Nameserver`` on ``port``: what ``check`` must ask,
    since the published NS set, not our own list, is what resolvers use. NS names without any
    address are left out (nothing can reach them); lookup failures raise
    AuthoritativeLookupError."""
    import dns.asyncresolver
    import dns.exception
    import dns.rdtypes.ANY.NS
    import dns.resolver

    res = dns.asyncresolver.Resolver(configure=resolver is None)
    if resolver is not None:
        res.nameservers = [resolver[0]]
        res.port = resolver[1]
    res.timeout = timeout
    res.lifetime = timeout * 2
    try:
        answer = await res.resolve(_absolute(zone), "NS")
    except dns.exception.DNSException as exc:
        raise AuthoritativeLookupError(f"NS of {zone}: {exc}") from exc
    names = sorted(
        {
            cast(dns.rdtypes.ANY.NS.NS, rd).target.to_text(omit_final_dot=True).lower()
            for rd in answer
        }
    )

    async def addresses(name: str, rdtype: str) -> list[str]:
        try:
            found = await res.resolve(_absolute(name), rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        except dns.exception.DNSException as exc:
            raise AuthoritativeLookupError(f"{rdtype} of {name}: {exc}") from exc
        return [rd.to_text() for rd in found.rrset or ()]

    questions = [(name, rdtype) for name in names for rdtype in ("A", "AAAA")]
    found = await asyncio.gather(*(addresses(name, rdtype) for name, rdtype in questions))
    servers = {
        Nameserver(name, address, port)
        for (name, _), addresses_of_name in zip(questions, found, strict=True)
        for address in addresses_of_name
    }
    if not servers:
        raise AuthoritativeLookupError(
            f"no nameserver of {zone} ({', '.join(names)}) has an address"
        )
    return sorted(servers)


async def check(
    desired: Sequence[Record],
    authoritative: Sequence[Nameserver],
    resolvers: Sequence[tuple[str, int]] = (),
    *,
    zones: Sequence[str] = (),
    # per query attempt: a check's own bound follows from it (see the module docstring)
    timeout: float = 2.0,  # noqa: ASYNC109
    retries: int = 1,
    concurrency: int = 64,
    udp_payload: int = EDNS_PAYLOAD,
    on_progress: Callable[[ServerResult], None] | None = None,
) -> CheckReport:
    """Ask every authoritative server (no recursion; UDP, TCP when truncated) for each zone's
    SOA serial and every desired record set, and every resolver (recursion desired) for the
    record sets, and classify each answer (see Status). ``on_progress`` gets each ServerResult
    as soon as it is known, so an API can stream them while the check runs; an exception it
    raises aborts the check. Each attempt times out after ``timeout`` s; at most
    ``concurrency`` queries are in flight. Raises ValueError for a desired value that does not
    parse, a record set listed twice, or a record outside ``zones``."""
    if timeout <= 0 or retries < 0 or concurrency < 1:
        raise ValueError("timeout must be > 0, retries >= 0 and concurrency >= 1")
    if not authoritative and not resolvers:
        raise ValueError("no server to ask")
    started = time.monotonic()
    records = list(desired)
    keys = [r.key for r in records]
    if len(set(keys)) != len(keys):
        raise ValueError("a record set (name, type) is listed twice")
    expected = {
        r.key: frozenset(normalise_value(r.type, value) for value in r.values) for r in records
    }
    zone_of = _assign_zones(records, zones)
    auth = list(
        dict.fromkeys(
            _Target(ns.name, ns.address, ns.port, "authoritative") for ns in authoritative
        )
    )
    recursive = list(dict.fromkeys(_Target("resolver", a, p, "resolver") for a, p in resolvers))
    querier = _Querier(timeout, retries, udp_payload)
    progress = _Progress(records, expected, zone_of, auth, recursive, on_progress)
    jobs = progress.jobs()
    pending = iter(jobs)

    # A fixed pool of `concurrency` workers rather than one task per query behind a semaphore:
    # tens of thousands of tasks all woken at once kept the event loop busy for longer than the
    # timeout, and answers that had arrived were then counted as timeouts.
    async def worker() -> None:
        for job in pending:  # shared: each job is taken by exactly one worker
            reply = await querier.ask(job.qname, job.rdtype, job.target)
            progress.done(job, reply)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(jobs))):
                group.create_task(worker())
    except BaseExceptionGroup as failed:  # e.g. from on_progress: raise it as it was raised
        raise failed.exceptions[0] from None

    return CheckReport(
        records=progress.reports(),
        serials=progress.all_serials(),
        queries_sent=querier.sent,
        query_budget=querier.attempts * len(jobs),
        duration_seconds=time.monotonic() - started,
    )
