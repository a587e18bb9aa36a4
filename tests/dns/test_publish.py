"""Publishing through octoDNS's RFC 2136 provider into a real Knot server with TSIG: only
MailFleet's records change, in one update, and refusals are clear and change nothing."""

from __future__ import annotations

import pytest

from control_plane.dns import publish
from control_plane.dns.record import Record
from tests.support.knot import KnotServer, TsigKey, zone_text

ZONE = "shop.test"
LONG_KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 340 + "IDAQAB"


@pytest.fixture
def knot_zones() -> dict[str, str]:
    customer = [
        "www A 127.0.0.10",
        'verify TXT "google-site-verification=abc"',
        "@ MX 20 backup.shop.test.",
    ]
    return {f"{ZONE}.": zone_text(f"{ZONE}.", records=customer)}


def target(server: KnotServer, key: TsigKey | None = None) -> object:
    key = key or server.key
    settings = {"host": server.host, "port": server.port, "key_name": key.name,
                "key_algorithm": key.algorithm}  # fmt: skip
    return publish.provider("test", "rfc2136", settings, {"key_secret": key.secret})


def wanted(selector: str = "mf202611") -> list[Record]:
    dkim = f'"v=DKIM1; k=rsa; p={LONG_KEY[:200]}" "{LONG_KEY[200:]}"'
    return [
        Record(ZONE, "MX", 3600, ("10 mx1.shop.test.",)),
        Record(ZONE, "TXT", 3600, ('"v=spf1 ip4:198.18.0.10 -all"',)),
        Record(ZONE, "CAA", 3600, ('0 issue "letsencrypt.org"',)),
        Record(f"mx1.{ZONE}", "A", 3600, ("198.18.0.10",)),
        Record(f"{selector}._domainkey.{ZONE}", "TXT", 3600, (dkim,)),
        Record(f"_dmarc.{ZONE}", "TXT", 3600, ('"v=DMARC1; p=none; rua=mailto:d@shop.test"',)),
        Record("mx1.elsewhere.test", "A", 3600, ("198.18.0.10",)),  # not this zone: skipped
    ]


def test_only_mailfleets_values_are_published_changed_and_removed(
    knot_primary: KnotServer,
) -> None:
    provider = target(knot_primary)
    planned, changes, owned = publish.plan(provider, ZONE, wanted())
    assert {(c.action, c.name, c.type) for c in changes} == {
        ("update", ZONE, "MX"), ("create", ZONE, "TXT"), ("create", ZONE, "CAA"),
        ("create", f"mx1.{ZONE}", "A"), ("create", f"mf202611._domainkey.{ZONE}", "TXT"),
        ("create", f"_dmarc.{ZONE}", "TXT"),
    }  # fmt: skip
    serial = knot_primary.serial(f"{ZONE}.")
    publish.apply(provider, ZONE, planned)
    assert knot_primary.serial(f"{ZONE}.") == serial + 1  # one update message, applied whole
    # MailFleet's MX joined the customer's backup MX instead of replacing it.
    assert sorted(knot_primary.query(ZONE, "MX").values) == [
        "10 mx1.shop.test.", "20 backup.shop.test."]  # fmt: skip
    dkim = knot_primary.query(f"mf202611._domainkey.{ZONE}", "TXT").texts
    assert dkim == [f"v=DKIM1; k=rsa; p={LONG_KEY}"]
    assert knot_primary.query(f"verify.{ZONE}", "TXT").texts == ["google-site-verification=abc"]
    assert publish.plan(provider, ZONE, wanted(), owned)[1] == []  # converged

    # The customer adds a site verification and an SPF of their own at the apex.
    theirs = ['add @ 300 TXT "site-verification=xyz"',
              'add @ 300 TXT "v=spf1 include:_spf.mailer.test ~all"']  # fmt: skip
    knot_primary.update(f"{ZONE}.", theirs)
    rotated = [r for r in wanted() if "_domainkey" not in r.name]
    rotated += [r for r in wanted("mf202612") if "_domainkey" in r.name]
    planned, changes, owned = publish.plan(provider, ZONE, rotated, owned)
    assert {(c.action, c.name) for c in changes} == {
        ("create", f"mf202612._domainkey.{ZONE}"), ("delete", f"mf202611._domainkey.{ZONE}"),
        ("update", ZONE)}  # fmt: skip
    publish.apply(provider, ZONE, planned)
    apex = sorted(knot_primary.query(ZONE, "TXT").texts)
    merged_spf = "v=spf1 ip4:198.18.0.10 include:_spf.mailer.test -all"
    assert apex == ["site-verification=xyz", merged_spf]  # one SPF, with their sender kept

    planned, _, owned = publish.plan(provider, ZONE, [], owned)  # the domain leaves MailFleet
    publish.apply(provider, ZONE, planned)
    assert owned == {}
    assert sorted(knot_primary.query(ZONE, "MX").values) == ["20 backup.shop.test."]
    assert knot_primary.query(ZONE, "TXT").texts == ["site-verification=xyz"]
    names = {(r.name, r.type) for r in publish.published(provider, ZONE)}
    assert (f"www.{ZONE}", "A") in names and (f"verify.{ZONE}", "TXT") in names
    assert not [n for n in names if "_domainkey" in n[0] or "_dmarc" in n[0]]


def test_refusals_are_clear_and_apply_nothing(knot_primary: KnotServer) -> None:
    wrong = TsigKey(knot_primary.key.name, TsigKey.generate().secret)
    serial = knot_primary.serial(f"{ZONE}.")
    with pytest.raises(publish.DnsProviderError, match="TSIG"):
        publish.plan(target(knot_primary, wrong), ZONE, wanted())
    planned, _, _ = publish.plan(target(knot_primary), ZONE, wanted())
    with pytest.raises(publish.DnsProviderError, match="TSIG"):
        publish.apply(target(knot_primary, wrong), ZONE, planned)
    nowhere = [Record("nosuch.test", "MX", 60, ("10 mx.nosuch.test.",))]
    with pytest.raises(publish.DnsProviderError, match=r"nosuch\.test"):
        publish.plan(target(knot_primary), "nosuch.test", nowhere)
    assert knot_primary.serial(f"{ZONE}.") == serial
