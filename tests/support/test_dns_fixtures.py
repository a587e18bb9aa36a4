"""Self-test of the Knot and Pebble fixtures the DNS/TLS tests build on."""

from __future__ import annotations

import pytest

from tests.support.knot import (
    DnsUpdateError,
    KnotPair,
    KnotServer,
    TsigKey,
    knot_pair,
    knot_primary,
    knot_zones,
)
from tests.support.pebble import Pebble, pebble

__all__ = ["knot_pair", "knot_primary", "knot_zones", "pebble"]  # fixtures used by name

ZONE = "example.test."
CHALLENGE = "_acme-challenge.example.test."


def test_update_reaches_the_secondary_only_after_catch_up(knot_pair: KnotPair) -> None:
    primary, secondary = knot_pair.primary, knot_pair.secondary
    before = primary.serial(ZONE)
    assert secondary.serial(ZONE) == before

    knot_pair.hold_stale()
    primary.update(ZONE, ['add _acme-challenge 60 TXT "token-1"'])

    assert primary.serial(ZONE) == before + 1
    assert primary.query(CHALLENGE, "TXT").texts == ["token-1"]
    stale = secondary.query(CHALLENGE, "TXT")
    assert (stale.rcode, stale.authoritative) == ("NXDOMAIN", True)  # answering, with old data
    assert secondary.serial(ZONE) == before

    knot_pair.catch_up()
    assert secondary.serial(ZONE) == primary.serial(ZONE) == before + 1
    assert secondary.query(CHALLENGE, "TXT").texts == ["token-1"]


def test_update_with_a_wrong_or_no_tsig_key_is_refused(knot_primary: KnotServer) -> None:
    before = knot_primary.serial(ZONE)
    wrong = TsigKey(name=knot_primary.key.name, secret=TsigKey.generate().secret)

    with pytest.raises(DnsUpdateError) as signed_wrong:
        knot_primary.update(ZONE, ['add _acme-challenge 60 TXT "forged"'], key=wrong)
    with pytest.raises(DnsUpdateError) as unsigned:
        knot_primary.update(ZONE, ['add _acme-challenge 60 TXT "forged"'], signed=False)

    assert signed_wrong.value.rcode in {"NOTAUTH", "REFUSED"}
    assert unsigned.value.rcode in {"NOTAUTH", "REFUSED"}
    assert knot_primary.serial(ZONE) == before
    assert knot_primary.query(CHALLENGE, "TXT").rcode == "NXDOMAIN"


def test_pebble_serves_its_directory(pebble: Pebble) -> None:
    directory = pebble.directory_json()

    assert directory["newOrder"].startswith(f"https://127.0.0.1:{pebble.port}/")
    assert "BEGIN CERTIFICATE" in pebble.root_pem()
