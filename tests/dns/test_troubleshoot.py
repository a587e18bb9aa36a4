"""Troubleshooting against real zones in Knot, one broken case per zone: each gives its
finding, with the record that fixes it; a correct domain gives none that is critical."""

from __future__ import annotations

import base64
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from control_plane.dns import desired
from control_plane.dns.troubleshoot import Expectations, diagnose, resolver_for
from tests.support.knot import KnotServer, zone_text


def public_key(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


KEY = public_key(2048)
WEAK = public_key(1024)
DKIM = desired.txt_presentation(f"v=DKIM1; k=rsa; p={KEY}")


def base(origin: str, *extra: str, spf: str = '"v=spf1 ip4:198.18.0.10 -all"') -> str:
    lines = [f"@ MX 10 mx1.{origin}.", f"@ TXT {spf}", "mx1 A 198.18.0.10",
             f"mf1._domainkey TXT {DKIM}", '_dmarc TXT "v=DMARC1; p=none"', *extra]  # fmt: skip
    return zone_text(f"{origin}.", records=lines)


@pytest.fixture
def knot_zones() -> dict[str, str]:
    includes = " ".join(f"include:a{n}.lookups.test" for n in range(11))
    return {
        "good.test.": base("good.test", '@ CAA 0 issue "letsencrypt.org"'),
        "twospf.test.": base("twospf.test", '@ TXT "v=spf1 include:other.test ~all"'),
        "lookups.test.": base("lookups.test", *(f'a{n} TXT "v=spf1 -all"' for n in range(11)),
                              spf=f'"v=spf1 ip4:198.18.0.10 {includes} -all"'),
        "mxcname.test.": zone_text("mxcname.test.", records=[
            "@ MX 10 mail.mxcname.test.", "mail CNAME mx1.good.test.",
            '@ TXT "v=spf1 ip4:198.18.0.10 -all"', '_dmarc TXT "v=DMARC1; p=none"']),
        "nodkim.test.": zone_text("nodkim.test.", records=[
            "@ MX 10 mx1.nodkim.test.", "mx1 A 198.18.0.10",
            '@ TXT "v=spf1 ip4:198.18.0.10 -all"', '_dmarc TXT "v=DMARC1; p=none"']),
        "weak.test.": base("weak.test").replace(DKIM, f'"v=DKIM1; k=rsa; p={WEAK}"'),
        "typo.test.": base("typo.test").replace("p=none", "p=rejet"),
        "caa.test.": base("caa.test", '@ CAA 0 issue "othersca.example"'),
        # SPF that includes a zone this server refuses: the include cannot be looked up.
        "include.test.": base("include.test", spf='"v=spf1 include:spf.refused.test -all"'),
        # A broken DMARC record in a zone of its own: the domain's apex (which checkdmarc
        # also asks) is refused.
        "_dmarc.split.test.": zone_text("_dmarc.split.test.",
                                        records=['@ TXT "v=DMARC1; p=rejet"']),
        "0.18.198.in-addr.arpa.": zone_text("0.18.198.in-addr.arpa.", records=[
            "10 PTR mx1.good.test.", "20 PTR somewhere-else.test."]),
    }  # fmt: skip


def expect(domain: str, ip: str = "198.18.0.10", **extra: object) -> Expectations:
    return Expectations(domain=domain, mail_host=f"mx1.{domain}", ipv4=(ip,),
                        dkim=(("mf1", KEY),), spf="v=spf1 ip4:198.18.0.10 -all",
                        dmarc="v=DMARC1; p=none", **extra)  # type: ignore[arg-type]  # fmt: skip


def codes(knot: KnotServer, expectations: Expectations) -> dict[str, str | None]:
    found = diagnose(expectations, resolver_for([knot.address]))
    return {f.code: f.fix for f in found.findings if f.severity != "info"}


def test_each_broken_zone_gives_its_finding_with_the_fix(knot_primary: KnotServer) -> None:
    good = diagnose(
        Expectations(domain="good.test", mail_host="mx1.good.test", ipv4=("198.18.0.10",),
                     dkim=(("mf1", KEY),)),
        resolver_for([knot_primary.address]),
    )  # fmt: skip
    assert good.ok and good.state == "ok", good.findings
    assert good.spf["dns_lookups"] == 0

    assert "spf.multiple" in codes(knot_primary, expect("twospf.test"))
    lookups = codes(knot_primary, expect("lookups.test"))
    assert "spf.too_many_lookups" in lookups
    assert lookups["spf.too_many_lookups"] == 'lookups.test. TXT "v=spf1 ip4:198.18.0.10 -all"'
    assert "mx.cname" in codes(knot_primary, expect("mxcname.test"))
    nodkim = codes(knot_primary, expect("nodkim.test"))
    assert nodkim["dkim.missing"] == f'mf1._domainkey.nodkim.test. TXT "v=DKIM1; k=rsa; p={KEY}"'
    weak = codes(knot_primary, expect("weak.test"))
    assert "dkim.weak" in weak and "dkim.mismatch" in weak
    assert "dmarc.invalid" in codes(knot_primary, expect("typo.test"))
    caa = codes(knot_primary, expect("caa.test"))
    assert caa["caa.blocks_ca"] == 'caa.test. CAA 0 issue "letsencrypt.org"'
    mismatch = codes(knot_primary, expect("good.test", ip="198.18.0.20"))
    assert mismatch["ptr.mismatch"] == "20.0.18.198.in-addr.arpa. PTR mx1.good.test."


def test_provider_guidance_and_delegation(knot_primary: KnotServer) -> None:
    route53 = diagnose(expect("nodkim.test", provider_kind="route53"),
                       resolver_for([knot_primary.address]))  # fmt: skip
    (missing,) = [f for f in route53.findings if f.code == "dkim.missing"]
    assert missing.guidance is not None and "Route 53" in missing.guidance
    moved = codes(knot_primary, expect("good.test", provider_ns=("ns1.dns-provider.test",)))
    assert moved["ns.delegation_mismatch"] == "good.test. NS ns1.dns-provider.test."


@pytest.fixture
def silent_resolver() -> Iterator[tuple[str, int]]:
    """A loopback UDP port that takes queries and never answers: every lookup times out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield "127.0.0.1", int(sock.getsockname()[1])


def test_a_refused_lookup_is_unknown_with_the_resolvers_words(knot_primary: KnotServer) -> None:
    # Knot serves none of this domain (nor the reverse zone of 198.19.0.0/16): it REFUSES.
    domain = f"elsewhere-{uuid.uuid4().hex[:8]}.test"  # checkdmarc caches by name
    found = diagnose(expect(domain, ip="198.19.0.10"), resolver_for([knot_primary.address]))

    assert {f.code for f in found.findings} == {
        "spf.lookup_failed", "dmarc.lookup_failed", "mx.lookup_failed", "dkim.lookup_failed",
        "ptr.lookup_failed", "caa.lookup_failed",
    }  # fmt: skip
    assert found.state == "unknown" and not found.ok, found.findings
    assert found.to_dict()["state"] == "unknown"
    for finding in found.findings:
        assert finding.state == "unknown" and finding.fix is None, finding
        assert "REFUSED" in finding.message, finding  # what the resolver said

    # A lookup inside SPF (an include) that fails makes SPF unknown, not invalid; what could
    # be judged still is.
    partly = diagnose(expect("include.test"), resolver_for([knot_primary.address]))
    include = {f.code: f for f in partly.findings}
    assert "spf.invalid" not in include and "spf.missing" not in include, include
    assert include["spf.lookup_failed"].state == "unknown"
    assert "spf.refused.test" in include["spf.lookup_failed"].message
    assert "REFUSED" in include["spf.lookup_failed"].message
    # 198.18.0.10 points back to mx1.good.test: a verdict, and it outranks the unknown.
    assert include["ptr.mismatch"].state == "failing" and partly.state == "failing"

    # A record of its own that is broken stays a verdict, whatever else could not be asked.
    assert "dmarc.invalid" in codes(knot_primary, expect("split.test"))


def test_a_resolver_that_never_answers_gives_unknown_not_a_verdict_and_quickly(
    silent_resolver: tuple[str, int],
) -> None:
    domain = f"silent-{uuid.uuid4().hex[:8]}.test"
    started = time.monotonic()
    found = diagnose(expect(domain), resolver_for([silent_resolver], timeout=0.3))
    elapsed = time.monotonic() - started

    codes = {f.code for f in found.findings}
    assert codes >= {"spf.lookup_failed", "dmarc.lookup_failed", "mx.lookup_failed"}, codes
    assert all(c.endswith(".lookup_failed") for c in codes), codes
    assert found.state == "unknown" and not found.ok, found.findings
    assert all(f.state == "unknown" for f in found.findings)
    spf = next(f for f in found.findings if f.code == "spf.lookup_failed")
    assert "timed out" in spf.message or "lifetime expired" in spf.message, spf.message
    # After a few timeouts in a row the resolver is not asked again: seconds, not minutes.
    assert elapsed < 3.0, elapsed
