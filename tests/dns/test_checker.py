"""The propagation checker against real Knot servers: a primary and a secondary that a test can
hold stale, updated over TSIG, so serials, NOTIFY lag and negative answers are the real thing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from typing import cast

import dns.message
import dns.rcode
import pytest

from control_plane.dns.checker import (
    UNRESPONSIVE_AFTER,
    CheckReport,
    Nameserver,
    ServerResult,
    Status,
    check,
    describe_eta,
    find_authoritative,
    normalise_value,
)
from control_plane.dns.record import Record
from tests.support.knot import HOST, KnotPair, KnotServer, knot_pair, knot_primary, zone_text
from tests.support.ports import free_port

__all__ = ["knot_pair", "knot_primary"]  # fixtures used by name; knot_zones is overridden here

ZONE = "example.test."


def soa_timers(text: str) -> tuple[int, int]:
    """SOA refresh and negative TTL (RFC 2308: min of the SOA's TTL and MINIMUM) of a zone
    file as zone_text() writes it (``$TTL`` line, SOA without its own TTL)."""
    default_ttl = int(next(line.split()[1] for line in text.splitlines() if line[:4] == "$TTL"))
    soa = next(line.split() for line in text.splitlines() if " SOA " in line)
    refresh, minimum = int(soa[5]), int(soa[8])
    return refresh, min(default_ttl, minimum)


# The ETAs a test expects come from the zone the fixtures serve (refresh 3600, negative 60 s).
REFRESH, NEGATIVE_TTL = soa_timers(zone_text(ZONE))
# As long as a 4096-bit DKIM key (768 characters of base64): four character-strings.
DKIM_KEY = base64.b64encode(b"".join(hashlib.sha256(bytes([i])).digest() for i in range(18)))
DKIM_TEXT = "v=DKIM1; k=rsa; p=" + DKIM_KEY.decode()


def quoted(text: str, size: int) -> str:
    """``text`` as quoted character-strings of ``size`` bytes (the zone splits differently from
    the desired value on purpose: the checker must compare the joined text)."""
    return " ".join(f'"{text[i : i + size]}"' for i in range(0, len(text), size))


def spf(value: str, ttl: int = 300) -> Record:
    return Record("example.test", "TXT", ttl, (f'"{value}"',), "spf")


A = Record("mx1.example.test", "A", 300, ("192.0.2.25",), "mail-host")
MX = Record("example.test", "MX", 3600, ("10 mx1.example.test.",), "mx")
SPF = spf("v=spf1 mx -all")
DKIM = Record("mf2026._domainkey.example.test", "TXT", 3600, (quoted(DKIM_TEXT, 255),), "dkim")
DMARC = Record(
    "_dmarc.example.test",
    "TXT",
    1800,
    ('"v=DMARC1; p=reject; rua=mailto:dmarc@example.test"',),
    "dmarc",
)
DESIRED = [A, MX, SPF, DKIM, DMARC]
MTA_STS = Record("_mta-sts.example.test", "TXT", 300, ('"v=STSv1; id=20261101"',), "mta-sts")

ZONE_RECORDS = [
    "mx1 300 A 192.0.2.25",
    "@ 3600 MX 10 MX1.Example.TEST.",  # other case, same name
    '@ 300 TXT "v=spf1 mx -all"',
    f"mf2026._domainkey 3600 TXT {quoted(DKIM_TEXT, 200)}",
    '_dmarc 1800 TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"',
]


@pytest.fixture
def knot_zones() -> dict[str, str]:
    return {ZONE: zone_text(ZONE, records=ZONE_RECORDS)}


def nameservers(pair: KnotPair) -> list[Nameserver]:
    return [
        Nameserver("ns1.example.test", HOST, pair.primary.port),
        Nameserver("ns2.example.test", HOST, pair.secondary.port),
    ]


def result(report: CheckReport, record: Record, server: str) -> ServerResult:
    [found] = [
        r for rr in report.records if rr.record == record for r in rr.results if r.server == server
    ]
    return found


def statuses(report: CheckReport) -> dict[tuple[str, str, str], Status]:
    return {
        (r.name, r.type, r.server): r.status for record in report.records for r in record.results
    }


def set_spf(server: KnotServer, value: str) -> None:
    server.set_records(ZONE, ZONE, "TXT", [f'"{value}"'], ttl=300)


async def test_published_records_match_on_primary_and_secondary(knot_pair: KnotPair) -> None:
    streamed: list[ServerResult] = []

    report = await check(DESIRED, nameservers(knot_pair), on_progress=streamed.append)

    assert report.propagated
    assert set(statuses(report).values()) == {Status.MATCHING}
    assert len(streamed) == len(DESIRED) * 2
    assert {(s.server, s.serial) for s in report.serials} == {
        ("ns1.example.test", 1),
        ("ns2.example.test", 1),
    }
    dkim = result(report, DKIM, "ns2.example.test")
    assert dkim.found == (DKIM_TEXT,) and not dkim.tcp  # 3 strings in, one text out; EDNS
    assert result(report, MX, "ns1.example.test").found == ("10 mx1.example.test.",)
    # one SOA per server plus one query per record set and server, no retries needed
    assert report.queries_sent == (len(DESIRED) + 1) * 2 <= report.query_budget
    assert report.eta is None
    document = json.loads(json.dumps(report.to_dict()))
    assert document["propagated"] is True
    assert document["counts"]["matching"] == 10
    assert document["records"][0]["results"][0]["status"] == "matching"


async def test_lagging_secondary_wrong_and_missing_records_then_catch_up(
    knot_pair: KnotPair,
) -> None:
    primary, ns1, ns2 = knot_pair.primary, "ns1.example.test", "ns2.example.test"
    knot_pair.hold_stale()
    set_spf(primary, "v=spf1 mx a -all")
    new_spf = spf("v=spf1 mx a -all")
    desired = [A, MX, new_spf, DKIM, DMARC]

    report = await check(desired, nameservers(knot_pair))

    assert (result(report, new_spf, ns1).status, result(report, new_spf, ns1).serial) == (
        Status.MATCHING,
        2,
    )
    lagging = result(report, new_spf, ns2)
    assert (lagging.status, lagging.serial, lagging.found) == (
        Status.STALE,
        1,
        ("v=spf1 mx -all",),
    )
    assert lagging.eta is not None
    assert (lagging.eta.seconds, lagging.eta.phrase) == (REFRESH, describe_eta(REFRESH))
    assert lagging.eta.phrase == "up to 1 hour"
    # a stale server that already has the desired values is matching
    assert result(report, MX, ns2).status is Status.MATCHING
    assert not report.propagated
    assert report.eta is not None and report.eta.seconds == REFRESH

    # Wrong at the source: the primary (current) serves another DMARC policy.
    primary.set_records(ZONE, "_dmarc", "TXT", ['"v=DMARC1; p=none"'], ttl=1800)
    report = await check([*desired, MTA_STS], nameservers(knot_pair))

    assert result(report, DMARC, ns1).status is Status.DIFFERENT
    assert result(report, DMARC, ns1).found == ("v=DMARC1; p=none",)
    assert result(report, DMARC, ns2).status is Status.MATCHING  # still the old, right one
    never_added = result(report, MTA_STS, ns1)
    assert (never_added.status, never_added.rcode) == (Status.MISSING, "NXDOMAIN")
    assert result(report, MTA_STS, ns2).status is Status.STALE  # behind: cannot tell yet
    by_record = {r.record.purpose: r for r in report.records}
    assert by_record["dmarc"].status is Status.DIFFERENT and by_record["dmarc"].eta is None
    assert by_record["mta-sts"].status is Status.MISSING
    assert report.eta is None  # someone has to act: no ETA for the whole check

    primary.set_records(ZONE, "_dmarc", "TXT", [DMARC.values[0]], ttl=1800)
    knot_pair.catch_up()
    report = await check(desired, nameservers(knot_pair))

    assert report.propagated, report.to_dict()
    assert {s.serial for s in report.serials} == {primary.serial(ZONE)}


async def test_missing_on_current_servers_nxdomain_and_nodata(knot_pair: KnotPair) -> None:
    caa = Record("example.test", "CAA", 3600, ('0 issue "letsencrypt.org"',), "caa")

    report = await check([*DESIRED, MTA_STS, caa], nameservers(knot_pair))

    for server in ("ns1.example.test", "ns2.example.test"):
        assert result(report, MTA_STS, server).status is Status.MISSING
        assert result(report, MTA_STS, server).rcode == "NXDOMAIN"
        assert result(report, caa, server).status is Status.MISSING
        assert result(report, caa, server).rcode == "NOERROR"  # NODATA
    assert result(report, SPF, "ns2.example.test").status is Status.MATCHING


async def test_dead_nameserver_is_a_timeout_error_within_the_time_bound(
    knot_primary: KnotServer,
) -> None:
    timeout, retries = 0.3, 1
    # enough questions for the dead server to be given up after UNRESPONSIVE_AFTER timeouts
    extra = [
        Record(f"t{i}.example.test", "TXT", 60, (f'"{i}"',), "filler")
        for i in range(UNRESPONSIVE_AFTER * 2)
    ]
    live = Nameserver("ns1.example.test", HOST, knot_primary.port)
    dead = Nameserver("ns2.example.test", HOST, free_port())  # nothing listens there

    started = time.monotonic()
    report = await check(
        [*DESIRED, *extra], [live, dead], timeout=timeout, retries=retries, concurrency=64
    )
    elapsed = time.monotonic() - started

    assert elapsed < (1 + retries) * timeout + 1.0
    for record in DESIRED:
        assert result(report, record, "ns1.example.test").status is Status.MATCHING
        dead_result = result(report, record, "ns2.example.test")
        assert (dead_result.status, dead_result.error) == (Status.ERROR, "timeout")
    [dead_serial] = [s for s in report.serials if s.server == "ns2.example.test"]
    assert dead_serial.serial is None and (dead_serial.error or "").startswith("timeout")
    assert report.queries_sent <= report.query_budget
    dead_queries = sum(
        r.queries for rr in report.records for r in rr.results if r.server == "ns2.example.test"
    )
    assert dead_queries < (1 + retries) * len(report.records)  # the rest were not asked
    assert not report.propagated and report.eta is None


async def test_a_server_that_does_not_serve_the_zone_is_a_refused_error(
    knot_primary: KnotServer,
) -> None:
    other = Record("other.test", "TXT", 60, ('"v=spf1 -all"',), "spf")

    report = await check([other], [Nameserver("ns1.example.test", HOST, knot_primary.port)])

    [only] = report.records[0].results
    assert (only.status, only.error, only.queries) == (Status.ERROR, "REFUSED", 1)
    assert report.serials[0].error is not None and "REFUSED" in report.serials[0].error


async def test_serial_is_found_when_no_desired_name_is_the_apex(knot_pair: KnotPair) -> None:
    """Only _dmarc is desired, so it is taken as the apex: its SOA query is answered NODATA
    with the zone's SOA in the authority section, which still gives each server's serial."""
    knot_pair.hold_stale()
    knot_pair.primary.set_records(ZONE, "_dmarc", "TXT", ['"v=DMARC1; p=none"'], ttl=1800)
    relaxed = Record("_dmarc.example.test", "TXT", 1800, ('"v=DMARC1; p=none"',), "dmarc")

    report = await check([relaxed], nameservers(knot_pair))

    assert [(s.zone, s.serial) for s in report.serials] == [
        ("_dmarc.example.test", 2),
        ("_dmarc.example.test", 1),
    ]
    assert result(report, relaxed, "ns2.example.test").status is Status.STALE


async def test_resolver_with_old_answers_is_stale_until_its_ttls_run_out(
    knot_pair: KnotPair,
) -> None:
    """The held secondary stands in for a recursive resolver that cached the old answers
    (Knot answers authoritatively with full TTLs: the remaining TTL is the whole TTL)."""
    primary = knot_pair.primary
    knot_pair.hold_stale()
    set_spf(primary, "v=spf1 mx a -all")
    primary.set_records(ZONE, "_mta-sts", "TXT", [MTA_STS.values[0]], ttl=300)
    new_spf = spf("v=spf1 mx a -all")
    desired = [A, MX, new_spf, DKIM, DMARC, MTA_STS]
    authoritative = [Nameserver("ns1.example.test", HOST, primary.port)]
    streamed: list[ServerResult] = []

    report = await check(
        desired, authoritative, [knot_pair.secondary.address], on_progress=streamed.append
    )

    old_answer = result(report, new_spf, "resolver")
    assert (old_answer.status, old_answer.role, old_answer.ttl) == (Status.STALE, "resolver", 300)
    assert old_answer.eta is not None
    assert (old_answer.eta.seconds, old_answer.eta.phrase) == (300, "within 5 minutes")
    negative = result(report, MTA_STS, "resolver")
    assert (negative.status, negative.rcode) == (Status.STALE, "NXDOMAIN")
    assert negative.eta is not None
    assert (negative.eta.seconds, negative.eta.phrase) == (NEGATIVE_TTL, "within 1 minute")
    assert "negative caching" in negative.eta.reason
    assert result(report, DKIM, "resolver").status is Status.MATCHING
    assert report.eta is not None and report.eta.seconds == 300
    assert len(streamed) == len(desired) * 2
    # a resolver's answer is streamed after the authoritative one it is judged by
    order = [(r.role, r.name, r.type) for r in streamed]
    for i, (role, name, rdtype) in enumerate(order):
        if role == "resolver":
            assert ("authoritative", name, rdtype) in order[:i]


async def test_an_exception_from_on_progress_aborts_the_check(knot_primary: KnotServer) -> None:
    def refuse(result: ServerResult) -> None:
        raise RuntimeError(f"client went away at {result.name}")

    with pytest.raises(RuntimeError, match="client went away"):
        await check(
            DESIRED, [Nameserver("ns1.example.test", HOST, knot_primary.port)], on_progress=refuse
        )


async def test_find_authoritative_through_a_resolver(knot_primary: KnotServer) -> None:
    servers = await find_authoritative("example.test", knot_primary.address, port=knot_primary.port)

    assert servers == [Nameserver("ns1.example.test", HOST, knot_primary.port)]
    assert (await check(DESIRED, servers)).propagated


async def test_truncated_udp_answer_is_asked_again_over_tcp(knot_primary: KnotServer) -> None:
    ns = [Nameserver("ns1.example.test", HOST, knot_primary.port)]

    report = await check([DKIM], ns, udp_payload=512)
    no_retry = await check([DKIM], ns, udp_payload=512, retries=0)

    [over_tcp] = report.records[0].results
    assert (over_tcp.status, over_tcp.tcp, over_tcp.queries) == (Status.MATCHING, True, 2)
    [truncated] = no_retry.records[0].results
    assert (truncated.status, truncated.error) == (Status.ERROR, "truncated")
    assert no_retry.queries_sent <= no_retry.query_budget == 2


async def test_servfail_is_retried_then_reported() -> None:
    """Knot cannot be made to SERVFAIL on demand: a loopback responder that always does."""
    asked: list[bytes] = []

    class Servfail(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.DatagramTransport, transport)

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            asked.append(data)
            response = dns.message.make_response(dns.message.from_wire(data))
            response.set_rcode(dns.rcode.SERVFAIL)
            self.transport.sendto(response.to_wire(), addr)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Servfail, local_addr=(HOST, 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        report = await check([SPF], [Nameserver("ns1.example.test", HOST, port)], retries=2)
    finally:
        transport.close()

    [failed] = report.records[0].results
    assert (failed.status, failed.error, failed.queries) == (Status.ERROR, "SERVFAIL", 3)
    assert len(asked) == report.queries_sent == 6 == report.query_budget  # SOA + SPF, 3 each


@pytest.mark.parametrize(
    ("seconds", "phrase"),
    [
        (0, "now"),
        (45, "within 1 minute"),
        (60, "within 1 minute"),
        (300, "within 5 minutes"),
        (600, "within 10 minutes"),
        (3600, "up to 1 hour"),
        (4200, "up to 2 hours"),
        (86400, "up to 24 hours"),
        (3 * 86400, "up to 3 days"),
    ],
)
def test_eta_phrases(seconds: int, phrase: str) -> None:
    assert describe_eta(seconds) == phrase


@pytest.mark.parametrize(
    ("rdtype", "value", "normalised"),
    [
        ("MX", "10 MX1.Example.NET", "10 mx1.example.net."),
        ("CNAME", "Mail.Example.net.", "mail.example.net."),
        ("TXT", '"v=DKIM1; k=rsa; " "p=AbC"', "v=DKIM1; k=rsa; p=AbC"),
        ("TXT", "v=spf1 -all", "v=spf1 -all"),
        ("A", "192.0.2.1", "192.0.2.1"),
        ("AAAA", "2001:DB8::0:1", "2001:db8::1"),
    ],
)
def test_values_are_compared_normalised(rdtype: str, value: str, normalised: str) -> None:
    assert normalise_value(rdtype, value) == normalised


async def test_bad_input_is_refused_before_any_query() -> None:
    with pytest.raises(ValueError, match="cannot parse"):
        await check([Record("example.test", "MX", 60, ("mx1",))], [Nameserver("n", HOST, 9)])
    with pytest.raises(ValueError, match="none of the zones"):
        await check([A], [Nameserver("n", HOST, 9)], zones=["other.test"])
