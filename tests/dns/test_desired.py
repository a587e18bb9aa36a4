"""The desired DNS state of a mail domain: exact records, TXT splitting and quoting checked
against dnspython, octoDNS and checkdmarc themselves."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import re
import warnings
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import pytest
from checkdmarc.mta_sts import parse_mta_sts_policy, parse_mta_sts_record
from checkdmarc.smtp_tls_reporting import parse_smtp_tls_reporting_record
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from octodns.record import Record as OctoRecord
from octodns.zone import Zone

from control_plane.dns.desired import (
    DomainFacts,
    InvalidDnsInput,
    SpfTooManyLookups,
    desired_records,
    dkim_value,
    dmarc_value,
    from_octodns_txt,
    mta_sts_policy,
    mta_sts_policy_id,
    next_dmarc_policy,
    octodns_txt,
    ptr_record,
    ptr_records,
    spf_value,
    split_txt,
    tls_rpt_value,
    txt_presentation,
    txt_text,
)
from control_plane.dns.record import Record
from control_plane.mail import dkim


def _public_key(bits: int = 2048) -> str:
    """A DKIM public key exactly as ``control_plane.mail.dkim`` stores it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return _public_key(), _public_key()


@pytest.fixture
def facts(keys: tuple[str, str]) -> DomainFacts:
    return DomainFacts(
        domain="example.net",
        mail_host="mx1.example.net",
        ipv4=("192.0.2.10", "192.0.2.11"),
        ipv6=("2001:DB8:0:0::10",),
        dkim=(("mf202611", keys[0]),),
        dmarc_policy="quarantine",
        dmarc_pct=50,
        dmarc_rua=("dmarc@example.net", "mailto:reports@dmarc.example.org"),
        tls_rpt_rua=("tls-rpt@example.net", "https://reports.example.org/tlsrpt"),
        mta_sts_id="20261101T120000",
        spf_includes=("_spf.google.com",),
        ttl=300,
    )


def _parse_txt(value: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, value)


def _strings(value: str) -> tuple[bytes, ...]:
    strings: tuple[bytes, ...] = _parse_txt(value).strings  # type: ignore[attr-defined]
    return strings


# --- the records -------------------------------------------------------------------------


def test_records_of_a_realistic_domain(facts: DomainFacts, keys: tuple[str, str]) -> None:
    dkim_text = f"v=DKIM1; k=rsa; p={keys[0]}"
    assert len(dkim_text) > 255  # a 2048-bit key needs two strings
    dkim_txt = f'"{dkim_text[:255]}" "{dkim_text[255:]}"'
    ttl = 300
    assert desired_records(facts) == [
        Record(
            "_dmarc.example.net",
            "TXT",
            ttl,
            (
                '"v=DMARC1; p=quarantine; pct=50; '
                "rua=mailto:dmarc@example.net,mailto:reports@dmarc.example.org; "
                'adkim=r; aspf=r"',
            ),
            "dmarc",
        ),
        Record("_mta-sts.example.net", "TXT", ttl, ('"v=STSv1; id=20261101T120000"',), "mta-sts"),
        Record(
            "_smtp._tls.example.net",
            "TXT",
            ttl,
            ('"v=TLSRPTv1; rua=mailto:tls-rpt@example.net,https://reports.example.org/tlsrpt"',),
            "tls-rpt",
        ),
        Record("example.net", "CAA", ttl, ('0 issue "letsencrypt.org"', '0 issuewild ";"'), "caa"),
        Record("example.net", "MX", ttl, ("10 mx1.example.net.",), "mx"),
        Record(
            "example.net",
            "TXT",
            ttl,
            (
                '"v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 ip6:2001:db8::10 '
                'include:_spf.google.com -all"',
            ),
            "spf",
        ),
        Record("mf202611._domainkey.example.net", "TXT", ttl, (dkim_txt,), "dkim:mf202611"),
        Record("mta-sts.example.net", "A", ttl, ("192.0.2.10", "192.0.2.11"), "mta-sts"),
        Record("mta-sts.example.net", "AAAA", ttl, ("2001:db8::10",), "mta-sts"),
        Record("mx1.example.net", "A", ttl, ("192.0.2.10", "192.0.2.11"), "mail-host"),
        Record("mx1.example.net", "AAAA", ttl, ("2001:db8::10",), "mail-host"),
    ]


def test_minimal_domain_with_a_mail_host_elsewhere(keys: tuple[str, str]) -> None:
    facts = DomainFacts(
        domain="xn--bcher-kva.example",
        mail_host="mx7.mailfleet.example",
        ipv4=("198.51.100.7",),
        dkim=(("mf202611", keys[0]),),
    )
    records = {(r.name, r.type): r for r in desired_records(facts)}
    assert set(records) == {
        ("mx7.mailfleet.example", "A"),  # outside the zone: the publisher skips it
        ("xn--bcher-kva.example", "MX"),
        ("xn--bcher-kva.example", "TXT"),
        ("xn--bcher-kva.example", "CAA"),
        ("mf202611._domainkey.xn--bcher-kva.example", "TXT"),
        ("_dmarc.xn--bcher-kva.example", "TXT"),
    }
    assert records["xn--bcher-kva.example", "MX"].values == ("10 mx7.mailfleet.example.",)
    assert records["xn--bcher-kva.example", "TXT"].values == ('"v=spf1 ip4:198.51.100.7 -all"',)
    assert records["_dmarc.xn--bcher-kva.example", "TXT"].values == (
        '"v=DMARC1; p=none; adkim=r; aspf=r"',
    )
    assert all(r.name == r.name.lower() and not r.name.endswith(".") for r in records.values())


def test_no_caa_issuers_means_no_caa(facts: DomainFacts) -> None:
    records = desired_records(dataclasses.replace(facts, caa_issuers=()))
    assert not [r for r in records if r.type == "CAA"]
    two = desired_records(dataclasses.replace(facts, caa_issuers=("letsencrypt.org", "pki.goog")))
    (caa,) = [r for r in two if r.type == "CAA"]
    assert caa.values == ('0 issue "letsencrypt.org"', '0 issue "pki.goog"', '0 issuewild ";"')


def test_every_record_parses_with_dnspython(facts: DomainFacts) -> None:
    for record in desired_records(facts):
        rdtype = dns.rdatatype.from_text(record.type)
        assert list(record.values) == sorted(record.values)
        for value in record.values:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, value)
            assert rdata.to_text() == value  # already in dnspython's presentation form


def test_txt_values_carry_the_intended_text(facts: DomainFacts, keys: tuple[str, str]) -> None:
    intended = {
        "spf": spf_value(facts),
        "dkim:mf202611": dkim_value(keys[0]),
        "dmarc": dmarc_value(facts),
        "tls-rpt": tls_rpt_value(facts),
        "mta-sts": "v=STSv1; id=20261101T120000",
    }
    txt = [r for r in desired_records(facts) if r.type == "TXT"]
    assert {r.purpose for r in txt} == set(intended)
    for record in txt:
        (value,) = record.values
        strings = _strings(value)
        assert all(len(s) <= 255 for s in strings)
        assert b"".join(strings).decode() == intended[record.purpose] == txt_text(value)


def test_dkim_value_matches_the_mail_module(keys: tuple[str, str]) -> None:
    assert dkim_value(keys[0]) == dkim.dns_value(keys[0])


def test_dkim_record_of_a_real_2048_bit_key_is_split(
    facts: DomainFacts, keys: tuple[str, str]
) -> None:
    (record,) = [r for r in desired_records(facts) if r.purpose == "dkim:mf202611"]
    (value,) = record.values
    strings = _strings(value)
    assert len(strings) == 2
    assert [len(s) for s in strings] == [255, len(dkim_value(keys[0])) - 255]
    assert b"".join(strings) == dkim.dns_value(keys[0]).encode()
    assert b"".join(strings).split(b"p=")[1] == keys[0].encode()


def test_rotation_publishes_both_selectors(facts: DomainFacts, keys: tuple[str, str]) -> None:
    rotating = dataclasses.replace(facts, dkim=(("mf202611", keys[0]), ("mf202612", keys[1])))
    dkim_records = [r for r in desired_records(rotating) if r.purpose.startswith("dkim:")]
    assert [(r.name, r.type, r.purpose) for r in dkim_records] == [
        ("mf202611._domainkey.example.net", "TXT", "dkim:mf202611"),
        ("mf202612._domainkey.example.net", "TXT", "dkim:mf202612"),
    ]
    assert [txt_text(r.values[0]) for r in dkim_records] == [
        dkim_value(keys[0]),
        dkim_value(keys[1]),
    ]


# --- SPF ---------------------------------------------------------------------------------


def test_exactly_one_spf_record(facts: DomainFacts) -> None:
    apex_txt = [r for r in desired_records(facts) if r.name == facts.domain and r.type == "TXT"]
    spf = [v for r in apex_txt for v in r.values if txt_text(v).startswith("v=spf1")]
    assert len(spf) == 1


def test_ten_includes_are_fine_eleven_are_too_many(facts: DomainFacts) -> None:
    includes = tuple(f"_spf{i}.example.org" for i in range(11))
    ten = dataclasses.replace(facts, spf_includes=includes[:10])
    text = spf_value(ten)
    assert text.count("include:") == 10
    assert text.startswith("v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 ip6:2001:db8::10 include:")
    assert text.endswith(" include:_spf9.example.org -all")
    (record,) = [r for r in desired_records(ten) if r.purpose == "spf"]
    assert len(_strings(record.values[0])) == 2  # longer than 255 bytes: two strings
    assert txt_text(record.values[0]) == text

    eleven = dataclasses.replace(facts, spf_includes=includes)
    with pytest.raises(SpfTooManyLookups, match=r"\b11\b") as caught:
        desired_records(eleven)
    assert isinstance(caught.value, ValueError)
    assert caught.value.count == 11
    assert caught.value.field == "spf_includes"


def test_soft_fail_all(facts: DomainFacts) -> None:
    assert spf_value(dataclasses.replace(facts, spf_all="~all", spf_includes=())) == (
        "v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 ip6:2001:db8::10 ~all"
    )


# --- MTA-STS, TLS-RPT --------------------------------------------------------------------


def test_mta_sts_policy_text() -> None:
    policy = mta_sts_policy("enforce", ["mx1.example.net", "*.mx.example.org"])
    assert policy == (
        "version: STSv1\r\n"
        "mode: enforce\r\n"
        "mx: mx1.example.net\r\n"
        "mx: *.mx.example.org\r\n"
        "max_age: 604800\r\n"
    )
    parsed = parse_mta_sts_policy(policy)
    assert parsed["warnings"] == []
    assert parsed["policy"] == {
        "version": "STSv1",
        "mode": "enforce",
        "max_age": 604800,
        "mx": ["mx1.example.net", "*.mx.example.org"],
    }
    testing = mta_sts_policy("testing", ("mx1.example.net",), max_age=86400)
    assert testing == "version: STSv1\r\nmode: testing\r\nmx: mx1.example.net\r\nmax_age: 86400\r\n"
    none = mta_sts_policy("none", [], max_age=0)
    assert parse_mta_sts_policy(none)["policy"]["mode"] == "none"


def test_mta_sts_policy_id_follows_the_text() -> None:
    one = mta_sts_policy_id(mta_sts_policy("testing", ["mx1.example.net"]))
    two = mta_sts_policy_id(mta_sts_policy("enforce", ["mx1.example.net"]))
    assert one != two
    assert one == mta_sts_policy_id(mta_sts_policy("testing", ["mx1.example.net"]))
    assert len(one) == 32 and one.isalnum()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("strict", ["mx1.example.net"]), "mode"),
        (("enforce", []), "mx_hosts"),
        (("enforce", "mx1.example.net"), "mx_hosts"),
        (("enforce", ["MX1.example.net"]), "mx_hosts[0]"),
        (("enforce", ["mx1.example.net", "mx1.example.net"]), "mx_hosts"),
        (("enforce", ["mx1.example.net"], 31557601), "max_age"),
        (("enforce", ["mx1.example.net"], -1), "max_age"),
    ],
)
def test_mta_sts_policy_refuses(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(InvalidDnsInput) as caught:
        mta_sts_policy(*args)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_mta_sts_and_tls_rpt_records_parse_with_checkdmarc(facts: DomainFacts) -> None:
    by_purpose = {(r.purpose, r.type): r for r in desired_records(facts)}
    sts = parse_mta_sts_record(txt_text(by_purpose["mta-sts", "TXT"].values[0]))
    assert sts["tags"]["id"] == "20261101T120000"
    tls = parse_smtp_tls_reporting_record(txt_text(by_purpose["tls-rpt", "TXT"].values[0]))
    assert tls["tags"]["rua"]["value"] == [
        "mailto:tls-rpt@example.net",
        "https://reports.example.org/tlsrpt",
    ]


def test_mta_sts_and_tls_rpt_only_when_asked(facts: DomainFacts) -> None:
    bare = dataclasses.replace(facts, mta_sts_id=None, tls_rpt_rua=())
    purposes = {r.purpose for r in desired_records(bare)}
    assert "mta-sts" not in purposes and "tls-rpt" not in purposes


def test_mail_host_at_the_mta_sts_name_collides(facts: DomainFacts) -> None:
    with pytest.raises(InvalidDnsInput, match=r"mta-sts\.example\.net A") as caught:
        desired_records(dataclasses.replace(facts, mail_host="mta-sts.example.net"))
    assert caught.value.field == "mail_host"


# --- PTR ---------------------------------------------------------------------------------


def test_ptr_names_for_v4_and_v6() -> None:
    assert ptr_record("192.0.2.10", "mx1.example.net", 3600) == Record(
        "10.2.0.192.in-addr.arpa", "PTR", 3600, ("mx1.example.net.",), "ptr"
    )
    v6 = ptr_record("2001:db8::10", "mx1.example.net", 300)
    assert v6.name == "0.1.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.ip6.arpa"
    assert v6.name == dns.reversename.from_address("2001:db8::10").to_text(omit_final_dot=True)
    assert v6.values == ("mx1.example.net.",)
    assert v6.ttl == 300
    assert dns.rdata.from_text("IN", "PTR", v6.values[0]).to_text() == "mx1.example.net."


def test_ptr_records_are_forward_confirmed(facts: DomainFacts) -> None:
    forward = {(r.name, r.type): r.values for r in desired_records(facts)}
    ptrs = ptr_records(facts)
    assert len(ptrs) == 3
    for ptr in ptrs:
        (target,) = ptr.values
        ip = ipaddress.ip_address(dns.reversename.to_address(dns.name.from_text(ptr.name)))
        rdtype = "A" if ip.version == 4 else "AAAA"
        assert str(ip) in forward[target.rstrip("."), rdtype]


@pytest.mark.parametrize(
    ("ip", "host", "field"),
    [
        ("192.0.2.300", "mx1.example.net", "ip"),
        ("192.0.2.10", "mx1.example.net.", "mail_host"),
    ],
)
def test_ptr_record_refuses(ip: str, host: str, field: str) -> None:
    with pytest.raises(InvalidDnsInput) as caught:
        ptr_record(ip, host)
    assert caught.value.field == field


# --- DMARC progression -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "days", "rate", "expected"),
    [
        ("none", 0, 0.0, "none"),
        ("none", 13, 0.0, "none"),
        ("none", 14, 0.0, "quarantine"),
        ("none", 14, 0.01, "quarantine"),  # at the maximum is fine
        ("none", 14, 0.0101, "none"),
        ("none", 90, 0.5, "none"),
        ("quarantine", 13.9, 0.0, "quarantine"),
        ("quarantine", 14, 0.005, "reject"),
        ("quarantine", 30, 0.2, "quarantine"),  # never steps down by itself
        ("reject", 365, 0.0, "reject"),
        ("reject", 365, 0.9, "reject"),
    ],
)
def test_dmarc_progression(current: Any, days: float, rate: float, expected: str) -> None:
    assert next_dmarc_policy(current, days, rate) == expected


def test_dmarc_progression_with_other_steps() -> None:
    assert next_dmarc_policy("none", 7, 0.04, days_per_step=7, max_failure_rate=0.05) == (
        "quarantine"
    )
    assert next_dmarc_policy("none", 6, 0.0, days_per_step=7) == "none"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"current": "strict"}, "current"),
        ({"days_at_current": -1}, "days_at_current"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"failure_rate": float("nan")}, "failure_rate"),
        ({"days_per_step": 0}, "days_per_step"),
        ({"max_failure_rate": -0.1}, "max_failure_rate"),
    ],
)
def test_dmarc_progression_refuses(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"current": "none", "days_at_current": 1, "failure_rate": 0.0}
    args.update(kwargs)
    with pytest.raises(InvalidDnsInput) as caught:
        next_dmarc_policy(**args)
    assert caught.value.field == field


# --- TXT splitting and quoting -----------------------------------------------------------


def test_split_txt_counts_bytes_and_keeps_characters_whole() -> None:
    assert split_txt("") == ("",)
    assert split_txt("a" * 255) == ("a" * 255,)
    assert split_txt("a" * 256) == ("a" * 255, "a")
    text = "x" + "é" * 200 + "€" * 100  # 1 + 400 + 300 bytes
    chunks = split_txt(text)
    assert "".join(chunks) == text
    assert all(len(c.encode()) <= 255 for c in chunks)
    assert [len(c.encode()) for c in chunks] == [255, 254, 192]


def test_presentation_matches_dnspython() -> None:
    for text in [
        "plain",
        'with "quotes" and \\ backslash; semicolon',
        "x" + "é" * 200,
        "tab\tand\x7fdel",
        "k" * 600,
    ]:
        value = txt_presentation(text)
        strings = [c.encode() for c in split_txt(text)]
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, value)
        assert rdata.to_text() == value
        assert _strings(value) == tuple(strings)
        assert txt_text(value) == text
    assert txt_presentation('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'


# --- octoDNS -----------------------------------------------------------------------------


def _octo(values: list[str]) -> Any:
    zone = Zone("example.net.", [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return OctoRecord.new(zone, "t", {"type": "TXT", "ttl": 60, "values": values})


def test_octodns_accepts_our_txt_values(facts: DomainFacts, keys: tuple[str, str]) -> None:
    facts = dataclasses.replace(facts, dkim=(("mf202611", keys[0]), ("mf202612", keys[1])))
    values = [v for r in desired_records(facts) if r.type == "TXT" for v in r.values]
    for value in values:
        internal = octodns_txt(value)
        assert internal == txt_text(value).replace(";", "\\;")
        record = _octo([internal])
        assert record.values == [internal]
        # how octoDNS renders it for a provider: exactly our presentation form
        assert record.to_rrset().rdatas == [value]
        # octoDNS's own conversion from presentation form agrees with ours
        assert type(record.values[0]).from_rdata_text(value) == internal
        # the deprecated rr_values chunk differently but carry the same text
        legacy = record.rr_values
        assert b"".join(_strings(str(legacy[0]))) == txt_text(value).encode()
        assert from_octodns_txt(internal) == value


def test_octodns_txt_with_quotes_and_backslashes() -> None:
    value = txt_presentation('say "hi" \\ ok; done')
    internal = octodns_txt(value)
    assert internal == 'say "hi" \\ ok\\; done'
    record = _octo([internal])
    assert record.values == [internal]
    assert record.to_rrset().rdatas == [value]


@pytest.mark.parametrize(
    "text",
    [
        "bücher",  # octoDNS refuses non-ASCII text
        '"quoted at the start',  # octoDNS strips the first and last character
        'one" "two',  # octoDNS deletes every '" "'
        "a\\;b",  # octoDNS cannot tell it from an escaped ';'
    ],
)
def test_octodns_txt_refuses_what_octodns_would_mangle(text: str) -> None:
    with pytest.raises(InvalidDnsInput):
        octodns_txt(txt_presentation(text))


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ipv4": ()}, "ipv4"),
        ({"ipv4": ["192.0.2.10"]}, "ipv4"),
        ({"ipv4": ("192.0.2.10", "192.0.2.10")}, "ipv4"),
        ({"ipv4": ("2001:db8::1",)}, "ipv4[0]"),
        ({"ipv6": ("192.0.2.10",)}, "ipv6[0]"),
        ({"domain": "Example.net"}, "domain"),
        ({"domain": "bücher.example"}, "domain"),
        ({"domain": "example.net."}, "domain"),
        ({"domain": "example.net\n"}, "domain"),
        ({"domain": "xn--abc.example"}, "domain"),
        ({"domain": "net"}, "domain"),
        ({"domain": "-bad.example"}, "domain"),
        ({"mail_host": "mx_1.example.net"}, "mail_host"),
        ({"mail_host": "192.0.2.10"}, "mail_host"),
        ({"dmarc_pct": 101}, "dmarc_pct"),
        ({"dmarc_pct": -1}, "dmarc_pct"),
        ({"dmarc_pct": True}, "dmarc_pct"),
        ({"dmarc_policy": "strict"}, "dmarc_policy"),
        ({"dmarc_rua": ("not-an-address",)}, "dmarc_rua[0]"),
        ({"dmarc_rua": ("a,b@example.net",)}, "dmarc_rua[0]"),
        ({"tls_rpt_rua": ("http://example.net/r",)}, "tls_rpt_rua[0]"),
        ({"mta_sts_id": "2026-11-01"}, "mta_sts_id"),
        ({"mta_sts_id": "20261101\n"}, "mta_sts_id"),
        ({"caa_issuers": ("letsencrypt.org.",)}, "caa_issuers[0]"),
        ({"spf_includes": ("include:_spf.google.com",)}, "spf_includes[0]"),
        ({"spf_all": "?all"}, "spf_all"),
        ({"ttl": -1}, "ttl"),
    ],
)
def test_bad_facts_name_their_field(facts: DomainFacts, change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(field)}: ") as caught:
        dataclasses.replace(facts, **change)
    assert isinstance(caught.value, InvalidDnsInput)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("selector", "field"),
    [
        ("MF202611", "dkim[0].selector"),
        ("mf.202611", "dkim[0].selector"),
        ("mf-", "dkim[0].selector"),
        ("", "dkim[0].selector"),
        ("x" * 64, "dkim[0].selector"),
    ],
)
def test_bad_selectors(
    facts: DomainFacts, keys: tuple[str, str], selector: str, field: str
) -> None:
    with pytest.raises(InvalidDnsInput) as caught:
        dataclasses.replace(facts, dkim=((selector, keys[0]),))
    assert caught.value.field == field


def test_bad_dkim_keys(facts: DomainFacts, keys: tuple[str, str]) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    ec_der = ec_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for key in ["not base64!", base64.b64encode(b"junk").decode(), base64.b64encode(ec_der)]:
        with pytest.raises(InvalidDnsInput) as caught:
            dataclasses.replace(facts, dkim=(("mf202611", str(key)),))
        assert caught.value.field == "dkim[0].public_key"
    with pytest.raises(InvalidDnsInput) as caught:
        dataclasses.replace(facts, dkim=(("mf202611", keys[0]), ("mf202611", keys[1])))
    assert caught.value.field == "dkim"
