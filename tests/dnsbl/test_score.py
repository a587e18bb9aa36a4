"""The score (weighted share of the lists that answered), the verdict, and the catalog
setting (defaults, replacement, bad entries named)."""

from __future__ import annotations

import pytest

from control_plane.dnsbl.catalog import DEFAULT_LISTS, catalog, parse_lists, resolvers
from control_plane.dnsbl.lookup import Verdict
from control_plane.dnsbl.service import listing_of, score
from control_plane.settings import Settings

LISTS = parse_lists(
    [
        {"zone": "a.test", "kind": "ip", "name": "A", "weight": 30},
        {"zone": "b.test", "kind": "ip", "name": "B", "weight": 10},
        {"zone": "c.test", "kind": "ip", "name": "C", "weight": 60},
        {"zone": "z.test", "kind": "ip", "name": "Z", "weight": 0},
    ]
)
LISTED, CLEAN, UNKNOWN = Verdict("listed", "127.0.0.2"), Verdict("clean"), Verdict("unknown")


def test_score_is_the_weighted_share_of_lists_that_answered() -> None:
    all_clean = {"a.test": CLEAN, "b.test": CLEAN, "c.test": CLEAN}
    assert score(all_clean, LISTS) == 100
    assert score({**all_clean, "a.test": LISTED}, LISTS) == 70
    assert score({**all_clean, "a.test": LISTED, "c.test": LISTED}, LISTS) == 10
    assert score({"a.test": LISTED, "b.test": LISTED, "c.test": LISTED}, LISTS) == 0
    # An unknown list is left out of both sums: 30 listed of the 40 that answered.
    assert score({"a.test": LISTED, "b.test": CLEAN, "c.test": UNKNOWN}, LISTS) == 25
    assert score({"a.test": CLEAN, "b.test": CLEAN, "c.test": UNKNOWN}, LISTS) == 100
    # Nothing answered (or only weightless lists): unknown, never 100.
    assert score({"a.test": UNKNOWN, "b.test": UNKNOWN, "c.test": UNKNOWN}, LISTS) is None
    assert score({"z.test": LISTED}, LISTS) is None
    assert score({}, LISTS) is None
    assert score({"gone.test": LISTED, "b.test": CLEAN}, LISTS) == 100  # not in the catalog


def test_listing_is_listed_then_unknown_then_clean() -> None:
    assert listing_of({"a": CLEAN, "b": UNKNOWN, "c": LISTED}) == "listed"
    assert listing_of({"a": CLEAN, "b": UNKNOWN}) == "unknown"
    assert listing_of({"a": CLEAN, "b": CLEAN}) == "clean"
    assert listing_of({}) == "unknown"


def test_the_catalog_setting() -> None:
    defaults = catalog(Settings())
    assert defaults == DEFAULT_LISTS
    zones = {item.zone: item for item in defaults}
    assert {"zen.spamhaus.org", "b.barracudacentral.org", "bl.spamcop.net"} <= set(zones)
    assert zones["zen.spamhaus.org"].major and zones["dbl.spamhaus.org"].kind == "domain"
    assert zones["zen.spamhaus.org"].meaning("127.0.0.10").startswith("PBL")
    assert zones["zen.spamhaus.org"].error("127.255.255.254") is not None
    assert zones["multi.uribl.com"].error("127.0.0.1") is not None
    assert zones["bl.spamcop.net"].error("10.0.0.1") is not None  # not a DNSBL code at all
    assert zones["bl.spamcop.net"].error("127.0.0.2") is None
    assert zones["multi.surbl.org"].meaning("127.0.0.72") == "PH (phishing), ABUSE (spam)"
    assert zones["multi.uribl.com"].meaning("127.0.0.2") == "black"
    assert zones["bl.spamcop.net"].meaning("127.0.0.2") == "listed (return code 127.0.0.2)"

    replaced = Settings(dnsbl_lists=[{"zone": "Own.Test.", "kind": "ip", "name": "Own"}])
    (own,) = catalog(replaced)
    assert (own.zone, own.weight, own.major) == ("own.test", 1.0, False)
    assert (own.positive_test, own.negative_test) == ("127.0.0.2", "127.0.0.1")

    dqs = Settings(dnsbl_lists=[{"zone": "abc123.zen.dq.spamhaus.net", "kind": "ip",
                                 "name": "ZEN (DQS)", "major": True}])  # fmt: skip
    assert catalog(dqs)[0].meaning("127.0.0.4").startswith("XBL")
    with pytest.raises(ValueError, match=r"MAILFLEET_DNSBL_LISTS\[1\]\.kind"):
        Settings(dnsbl_lists=[{"zone": "a.test", "kind": "ip", "name": "A"},
                              {"zone": "b.test", "kind": "asn", "name": "B"}])  # fmt: skip
    with pytest.raises(ValueError, match="twice"):
        parse_lists([{"zone": "a.test", "kind": "ip", "name": "A"}] * 2)
    with pytest.raises(ValueError, match="resolvers"):
        Settings(dnsbl_resolvers="127.0.0.1:99999")
    assert resolvers(Settings(dnsbl_resolvers="127.0.0.1:5353, 10.0.0.1,[::1]:53")) == (
        ("127.0.0.1", 5353),
        ("10.0.0.1", 53),
        ("::1", 53),
    )
