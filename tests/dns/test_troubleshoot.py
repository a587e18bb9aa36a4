"""Troubleshooting against real zones in Knot, one broken case per zone: each gives its
finding, with the record that fixes it; a correct domain gives none that is critical."""

from __future__ import annotations

import base64

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
    assert good.ok, good.findings
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
