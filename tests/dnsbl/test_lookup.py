"""Lookups against real Knot on loopback: listed (with the code's meaning and the TXT
reason), clean, and unknown for every way a list can fail to tell — REFUSED, a broken test
point, Spamhaus' public-resolver code, a resolver that never answers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest_asyncio

from control_plane.dnsbl.catalog import DnsblList, find, lists_of, parse_lists
from control_plane.dnsbl.lookup import Lookup, query_name
from tests.dnsbl.conftest import (
    BAD_DOMAIN,
    BROKEN_ZONE,
    CLEAN,
    DOMAIN_ZONE,
    LISTED,
    LISTS,
    MAJOR_ZONE,
    MINOR_ZONE,
    PUBLIC,
    REASON,
    REFUSED_ZONE,
)
from tests.support.dnsbl import silent_resolver
from tests.support.knot import KnotServer

CATALOG = parse_lists(LISTS)
IP_LISTS = lists_of(CATALOG, "ip")


def listed_on(zone: str) -> DnsblList:
    found = find(CATALOG, zone)
    assert found is not None
    return found


@pytest_asyncio.fixture
async def lookup(dnsbl_knot: KnotServer) -> AsyncIterator[Lookup]:
    found = Lookup([dnsbl_knot.address], timeout=1.0, concurrency=20, test_point_ttl=60)
    yield found
    await found.aclose()


def test_query_names() -> None:
    zen = listed_on(MAJOR_ZONE)
    assert query_name("192.0.2.1", zen) == f"1.2.0.192.{MAJOR_ZONE}"
    assert query_name("2001:db8::1", zen).startswith("1.0.0.0.0.0.0.0")
    assert query_name("2001:db8::1", zen).endswith(f"8.b.d.0.1.0.0.2.{MAJOR_ZONE}")
    assert query_name("Example.COM.", listed_on(DOMAIN_ZONE)) == f"example.com.{DOMAIN_ZONE}"


async def test_every_state_as_planted(lookup: Lookup) -> None:
    listed = await lookup.check_all(LISTED, IP_LISTS)
    major = listed[MAJOR_ZONE]
    assert (major.state, major.code, major.meaning) == (
        "listed",
        "127.0.0.4",
        "XBL: exploited host",
    )
    assert major.reason == REASON
    minor = listed[MINOR_ZONE]
    assert (minor.state, minor.code) == ("listed", "127.0.0.2")
    assert minor.meaning == "listed (return code 127.0.0.2)" and minor.reason is None

    refused = listed[REFUSED_ZONE]
    assert refused.state == "unknown" and "REFUSED" in (refused.reason or "")
    broken = listed[BROKEN_ZONE]  # it lists the address, but its test point is missing
    assert broken.state == "unknown"
    assert (broken.reason or "").startswith("list broken: its test point 127.0.0.2")

    clean = await lookup.check_all(CLEAN, IP_LISTS)
    assert clean[MAJOR_ZONE].state == clean[MINOR_ZONE].state == "clean"
    assert clean[REFUSED_ZONE].state == clean[BROKEN_ZONE].state == "unknown"  # never clean

    public = (await lookup.check_all(PUBLIC, IP_LISTS))[MAJOR_ZONE]
    assert (public.state, public.code) == ("unknown", "127.255.255.254")
    assert "public/open resolver" in (public.reason or "")

    domains = lists_of(CATALOG, "domain")
    bad = (await lookup.check_all(BAD_DOMAIN, domains))[DOMAIN_ZONE]
    assert (bad.state, bad.code, bad.reason) == ("listed", "127.0.1.2", "spam domain")
    assert (await lookup.check_all("fine.example", domains))[DOMAIN_ZONE].state == "clean"


async def test_test_points_are_asked_once_per_ttl(dnsbl_knot: KnotServer) -> None:
    now = [0.0]
    lookup = Lookup(
        [dnsbl_knot.address], timeout=1.0, concurrency=5, test_point_ttl=10, clock=lambda: now[0]
    )
    try:
        major = listed_on(MAJOR_ZONE)
        assert (await lookup.check(CLEAN, major)).state == "clean"
        assert lookup.queries == 3  # two test points, then the address
        assert (await lookup.check(CLEAN, major)).state == "clean"
        assert lookup.queries == 4
        now[0] = 11.0  # the verdict lapsed: the test points are asked again
        assert (await lookup.check(CLEAN, major)).state == "clean"
        assert lookup.queries == 7
    finally:
        await lookup.aclose()


async def test_a_silent_resolver_is_unknown_and_another_answers(dnsbl_knot: KnotServer) -> None:
    major = listed_on(MAJOR_ZONE)
    with silent_resolver() as silent:
        alone = Lookup([silent], timeout=0.4, concurrency=5, test_point_ttl=60)
        started = time.monotonic()
        try:
            verdict = await alone.check(LISTED, major)
        finally:
            await alone.aclose()
        assert time.monotonic() - started < 1.5
        assert verdict.state == "unknown" and "timeout" in (verdict.reason or "")

        both = Lookup([silent, dnsbl_knot.address], timeout=1.0, concurrency=5, test_point_ttl=60)
        try:
            verdict = await both.check(LISTED, major)
        finally:
            await both.aclose()
        assert (verdict.state, verdict.code) == ("listed", "127.0.0.4")


async def test_no_resolver_is_unknown() -> None:
    """No configured resolver and none in the system's configuration: unknown, not a crash."""
    lookup = Lookup([], timeout=0.2, concurrency=1, test_point_ttl=60)
    lookup.resolvers = []  # as on a machine without /etc/resolv.conf
    try:
        verdict = await lookup.check(CLEAN, listed_on(MAJOR_ZONE))
    finally:
        await lookup.aclose()
    assert verdict.state == "unknown" and "no resolver" in (verdict.reason or "")
