"""Every DNS record a mail domain on a MailFleet server needs, computed in one place.

Pure functions over a :class:`DomainFacts`: no I/O, no resolving. The publisher groups the
returned :class:`~control_plane.dns.record.Record` sets by zone (skipping names outside the
zones it manages, e.g. a mail host in another domain) and the checker compares them with what
each authoritative server answers.

TXT values are in presentation form, exactly as dnspython prints an rdata: the text is split
into character-strings of at most 255 *bytes* (RFC 1035 §3.3), each in double quotes, joined
by one space; inside the quotes ``"`` and ``\\`` are backslash-escaped and every byte outside
printable ASCII is written ``\\DDD``. octoDNS wants something else in its ``values`` — the
whole unquoted text with each ``;`` written ``\\;`` — see :func:`octodns_txt`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import idna
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from control_plane.dns.record import Record

DmarcPolicy = Literal["none", "quarantine", "reject"]
MtaStsMode = Literal["testing", "enforce", "none"]
SpfAll = Literal["-all", "~all"]

TXT_STRING_BYTES = 255  # RFC 1035 §3.3: a <character-string> holds at most 255 octets
SPF_MAX_LOOKUPS = 10  # RFC 7208 §4.6.4
MTA_STS_MAX_AGE = 31_557_600  # RFC 8461 §3.2: at most one year
MAX_TTL = 2**31 - 1  # RFC 2181 §8
MIN_DKIM_BITS = 1024  # RFC 8301 §3.2: verifiers may ignore smaller keys
DEFAULT_TTL = 3600

_TUPLE_FIELDS = ("ipv4", "ipv6", "dkim", "dmarc_rua", "tls_rpt_rua", "caa_issuers", "spf_includes")
_DMARC_STEPS: tuple[DmarcPolicy, ...] = ("none", "quarantine", "reject")
_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")  # allows _spf etc.
_MTA_STS_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")  # RFC 8461 §3.1
# RFC 7489 §6.2 / RFC 8460 §3: "," and "!" (and ";" as the tag separator) would need
# percent-encoding inside a report URI; MailFleet refuses them instead.
_LOCAL_PART = re.compile(r"^[A-Za-z0-9.#$%&'*+/=?^_`{|}~-]+$")
_HTTPS_URI = re.compile(r"^https://[A-Za-z0-9._~:/?#\[\]@$&'()*+=%-]+$")


class InvalidDnsInput(ValueError):
    """Input that cannot become correct records; ``field`` names the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class SpfTooManyLookups(InvalidDnsInput):
    """The SPF record would need more DNS-lookup mechanisms than RFC 7208 allows, so every
    receiver would answer ``permerror`` and SPF would fail for all mail."""

    def __init__(self, count: int, limit: int = SPF_MAX_LOOKUPS) -> None:
        super().__init__(
            "spf_includes",
            f"the SPF record needs {count} DNS-lookup mechanisms, more than the {limit} "
            "RFC 7208 §4.6.4 allows (ip4:/ip6: need none; each include: needs one)",
        )
        self.count = count
        self.limit = limit


@dataclass(frozen=True)
class DomainFacts:
    """What MailFleet knows about a mail domain and the server sending for it; checked on
    construction so a bad value fails where it was made, naming its field."""

    domain: str  # IDNA, lower case, no trailing dot, e.g. "example.net"
    mail_host: str  # FQDN of the MailU server, e.g. "mx1.example.net" (may be outside domain)
    ipv4: tuple[str, ...]  # the server's sending IPv4 addresses (first = primary)
    ipv6: tuple[str, ...] = ()
    dkim: tuple[tuple[str, str], ...] = ()  # (selector, base64 SPKI public key); 2 in rotation
    dmarc_policy: DmarcPolicy = "none"
    dmarc_pct: int = 100
    dmarc_rua: tuple[str, ...] = ()  # addresses for aggregate reports ("mailto:" added)
    tls_rpt_rua: tuple[str, ...] = ()  # addresses ("mailto:" added) or https:// URIs
    mta_sts_id: str | None = None  # set: _mta-sts TXT + mta-sts.<domain> A/AAAA
    caa_issuers: tuple[str, ...] = ("letsencrypt.org",)  # ACME CAs allowed; () = no CAA
    spf_includes: tuple[str, ...] = ()  # the customer's other senders, e.g. "_spf.google.com"
    spf_all: SpfAll = "-all"
    ttl: int = DEFAULT_TTL

    def __post_init__(self) -> None:
        for name in _TUPLE_FIELDS:
            if not isinstance(getattr(self, name), tuple):
                raise InvalidDnsInput(name, "expected a tuple")
        _check_hostname(self.domain, "domain", min_labels=2)
        _check_hostname(self.mail_host, "mail_host", min_labels=2)
        if not self.ipv4:
            raise InvalidDnsInput("ipv4", "a sending server needs at least one IPv4 address")
        _check_addresses(self.ipv4, "ipv4", 4)
        _check_addresses(self.ipv6, "ipv6", 6)
        _check_dkim(self.dkim)
        if self.dmarc_policy not in _DMARC_STEPS:
            raise InvalidDnsInput(
                "dmarc_policy", f"{self.dmarc_policy!r} is not one of none, quarantine, reject"
            )
        if not _is_int(self.dmarc_pct) or not 0 <= self.dmarc_pct <= 100:
            raise InvalidDnsInput("dmarc_pct", f"{self.dmarc_pct!r} is not an integer 0-100")
        _check_unique(self.dmarc_rua, "dmarc_rua")
        for i, address in enumerate(self.dmarc_rua):
            _report_uri(address, f"dmarc_rua[{i}]", https=False)
        _check_unique(self.tls_rpt_rua, "tls_rpt_rua")
        for i, address in enumerate(self.tls_rpt_rua):
            _report_uri(address, f"tls_rpt_rua[{i}]", https=True)
        if self.mta_sts_id is not None and not _MTA_STS_ID.fullmatch(self.mta_sts_id):
            raise InvalidDnsInput("mta_sts_id", "must be 1-32 letters or digits (RFC 8461 §3.1)")
        _check_unique(self.caa_issuers, "caa_issuers")
        for i, issuer in enumerate(self.caa_issuers):
            _check_hostname(issuer, f"caa_issuers[{i}]", min_labels=2)
        _check_unique(self.spf_includes, "spf_includes")
        for i, include in enumerate(self.spf_includes):
            _check_dns_name(include, f"spf_includes[{i}]")
        if self.spf_all not in get_args(SpfAll):
            raise InvalidDnsInput("spf_all", f"{self.spf_all!r} is not -all or ~all")
        _check_ttl(self.ttl, "ttl")


# --- the records ------------------------------------------------------------------------


def desired_records(facts: DomainFacts) -> list[Record]:
    """Every record set the domain needs, sorted; one record set per (name, type)."""
    records = [
        *_address_records(facts.mail_host, facts, "mail-host"),
        Record(facts.domain, "MX", facts.ttl, (f"10 {facts.mail_host}.",), "mx"),
        _txt(facts.domain, spf_value(facts), facts.ttl, "spf"),
        *(
            _txt(f"{sel}._domainkey.{facts.domain}", dkim_value(key), facts.ttl, f"dkim:{sel}")
            for sel, key in facts.dkim
        ),
        _txt(f"_dmarc.{facts.domain}", dmarc_value(facts), facts.ttl, "dmarc"),
    ]
    if facts.mta_sts_id is not None:
        sts = f"v=STSv1; id={facts.mta_sts_id}"
        records.append(_txt(f"_mta-sts.{facts.domain}", sts, facts.ttl, "mta-sts"))
        records.extend(_address_records(f"mta-sts.{facts.domain}", facts, "mta-sts"))
    if facts.tls_rpt_rua:
        records.append(
            _txt(f"_smtp._tls.{facts.domain}", tls_rpt_value(facts), facts.ttl, "tls-rpt")
        )
    if facts.caa_issuers:
        caa = (*(f'0 issue "{ca}"' for ca in facts.caa_issuers), '0 issuewild ";"')
        records.append(Record(facts.domain, "CAA", facts.ttl, tuple(sorted(caa)), "caa"))
    seen: dict[tuple[str, str], Record] = {}
    for record in records:
        if record.key in seen:
            raise InvalidDnsInput(
                "mail_host",
                f"{record.name} {record.type} is wanted both as {seen[record.key].purpose} "
                f"and as {record.purpose}",
            )
        seen[record.key] = record
    return sorted(records)


def spf_value(facts: DomainFacts) -> str:
    """The one SPF policy for the apex (RFC 7208 §3.2 allows exactly one ``v=spf1``):
    the server's own addresses, then the customer's other senders, then ``all``."""
    lookups = len(facts.spf_includes)  # ip4:/ip6:/all need no lookup, include: needs one
    if lookups > SPF_MAX_LOOKUPS:
        raise SpfTooManyLookups(lookups)
    terms = [
        "v=spf1",
        *(f"ip4:{ip}" for ip in facts.ipv4),
        *(f"ip6:{ipaddress.IPv6Address(ip).compressed}" for ip in facts.ipv6),
        *(f"include:{name}" for name in facts.spf_includes),
        facts.spf_all,
    ]
    return " ".join(terms)


def dkim_value(public_key: str) -> str:
    """The DKIM key record's text (RFC 6376 §3.6.1), as ``control_plane.mail.dkim``
    builds it."""
    return f"v=DKIM1; k=rsa; p={public_key}"


def dmarc_value(facts: DomainFacts) -> str:
    """The DMARC policy (RFC 7489 §6.3), relaxed alignment so subdomain senders align."""
    tags = ["v=DMARC1", f"p={facts.dmarc_policy}"]
    if facts.dmarc_pct != 100:
        tags.append(f"pct={facts.dmarc_pct}")
    if facts.dmarc_rua:
        tags.append("rua=" + ",".join(_mailto(a) for a in facts.dmarc_rua))
    tags += ["adkim=r", "aspf=r"]
    return "; ".join(tags)


def tls_rpt_value(facts: DomainFacts) -> str:
    """Where senders report TLS failures towards this domain (RFC 8460 §3)."""
    uris = (a if a.startswith("https://") else _mailto(a) for a in facts.tls_rpt_rua)
    return "v=TLSRPTv1; rua=" + ",".join(uris)


def _address_records(name: str, facts: DomainFacts, purpose: str) -> list[Record]:
    records = [Record(name, "A", facts.ttl, tuple(sorted(facts.ipv4)), purpose)]
    if facts.ipv6:
        v6 = sorted(ipaddress.IPv6Address(ip).compressed for ip in facts.ipv6)
        records.append(Record(name, "AAAA", facts.ttl, tuple(v6), purpose))
    return records


def _txt(name: str, text: str, ttl: int, purpose: str) -> Record:
    return Record(name, "TXT", ttl, (txt_presentation(text),), purpose)


def _mailto(address: str) -> str:
    return address if address.startswith("mailto:") else f"mailto:{address}"


# --- MTA-STS, PTR, DMARC progression ----------------------------------------------------


def mta_sts_policy(mode: MtaStsMode, mx_hosts: Sequence[str], max_age: int = 604_800) -> str:
    """The policy served at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``
    (RFC 8461 §3.2), CRLF-terminated lines; ``mx`` patterns may start with ``*.``."""
    if mode not in get_args(MtaStsMode):
        raise InvalidDnsInput("mode", f"{mode!r} is not one of testing, enforce, none")
    if isinstance(mx_hosts, str):
        raise InvalidDnsInput("mx_hosts", "expected a sequence of host names, got one string")
    hosts = list(mx_hosts)
    if not hosts and mode != "none":
        raise InvalidDnsInput("mx_hosts", f"mode {mode} needs at least one mx host")
    _check_unique(hosts, "mx_hosts")
    for i, host in enumerate(hosts):
        _check_hostname(host.removeprefix("*."), f"mx_hosts[{i}]", min_labels=2)
    if not _is_int(max_age) or not 0 <= max_age <= MTA_STS_MAX_AGE:
        raise InvalidDnsInput("max_age", f"{max_age!r} is not an integer 0-{MTA_STS_MAX_AGE}")
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {h}" for h in hosts), f"max_age: {max_age}"]
    return "".join(f"{line}\r\n" for line in lines)


def mta_sts_policy_id(policy: str) -> str:
    """An ``id`` for the ``_mta-sts`` TXT record that changes exactly when the policy text
    does (RFC 8461 §3.1: senders refetch the policy only when the id changes)."""
    return hashlib.sha256(policy.encode()).hexdigest()[:32]


def ptr_record(ip: str, mail_host: str, ttl: int = DEFAULT_TTL) -> Record:
    """The reverse record for one sending address, pointing at the mail host.

    Set through the VPS provider (it owns the reverse zone), not published with the domain's
    zone. Receivers want it forward-confirmed: A/AAAA(``mail_host``) must contain ``ip``,
    which :func:`desired_records` guarantees for the server's own addresses."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidDnsInput("ip", f"{ip!r} is not an IP address") from None
    _check_hostname(mail_host, "mail_host", min_labels=2)
    _check_ttl(ttl, "ttl")
    return Record(address.reverse_pointer, "PTR", ttl, (f"{mail_host}.",), "ptr")


def ptr_records(facts: DomainFacts) -> list[Record]:
    """The reverse records for every sending address of the domain's server, sorted."""
    return sorted(ptr_record(ip, facts.mail_host, facts.ttl) for ip in facts.ipv4 + facts.ipv6)


def next_dmarc_policy(
    current: DmarcPolicy,
    days_at_current: float,
    failure_rate: float,
    *,
    days_per_step: float = 14,
    max_failure_rate: float = 0.01,
) -> DmarcPolicy:
    """The policy to publish next: none → quarantine → reject, one step at a time and only
    after ``days_per_step`` days at ``current`` with a DMARC failure rate at or below
    ``max_failure_rate``. Never steps down: a bad rate needs a human, who may lower it."""
    if current not in _DMARC_STEPS:
        raise InvalidDnsInput("current", f"{current!r} is not one of none, quarantine, reject")
    if not days_at_current >= 0:
        raise InvalidDnsInput("days_at_current", f"{days_at_current!r} is negative")
    if not 0 <= failure_rate <= 1:
        raise InvalidDnsInput("failure_rate", f"{failure_rate!r} is not a fraction 0-1")
    if not days_per_step > 0:
        raise InvalidDnsInput("days_per_step", f"{days_per_step!r} is not positive")
    if not 0 <= max_failure_rate <= 1:
        raise InvalidDnsInput("max_failure_rate", f"{max_failure_rate!r} is not a fraction 0-1")
    step = _DMARC_STEPS.index(current)
    if step + 1 < len(_DMARC_STEPS) and (
        days_at_current >= days_per_step and failure_rate <= max_failure_rate
    ):
        return _DMARC_STEPS[step + 1]
    return current


# --- TXT text: splitting, presentation form, octoDNS form -------------------------------


def split_txt(value: str) -> tuple[str, ...]:
    """``value`` cut into character-strings of at most 255 UTF-8 bytes, never inside a
    multi-byte character; ``("",)`` for the empty text (a TXT rdata has at least one)."""
    data = value.encode()
    chunks: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + TXT_STRING_BYTES, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte
            end -= 1
        chunks.append(data[start:end].decode())
        start = end
    return tuple(chunks) or ("",)


def txt_presentation(value: str) -> str:
    """The TXT rdata for ``value`` in presentation form, byte-for-byte what dnspython's
    ``to_text()`` prints: quoted 255-byte strings separated by a space."""
    return " ".join(f'"{_escape(chunk.encode())}"' for chunk in split_txt(value))


def txt_text(presentation: str) -> str:
    """The text a TXT rdata in presentation form carries: its strings joined without a
    separator (how SPF, DKIM and DMARC read them), decoded as UTF-8."""
    import dns.exception  # dnspython loads with the first lookup, not with serve
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.rdtypes.txtbase

    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, presentation)
    except dns.exception.DNSException as exc:
        raise InvalidDnsInput("value", f"not a TXT rdata: {exc}") from None
    assert isinstance(rdata, dns.rdtypes.txtbase.TXTBase)
    try:
        return b"".join(rdata.strings).decode()
    except UnicodeDecodeError:
        raise InvalidDnsInput("value", "the TXT strings are not UTF-8") from None


def octodns_txt(value: str) -> str:
    """A TXT value in presentation form, as octoDNS's record ``values`` want it.

    octoDNS (``octodns/record/chunked.py``) keeps TXT/SPF values as the *whole, unquoted*
    text with every ``;`` written ``\\;`` — and nothing else escaped: ``"`` and ``\\`` stay
    literal. It splits into 255-byte strings and quotes by itself when it renders rdata
    (``TxtValue.to_rdata_text``), identically to :func:`txt_presentation`. Its validator
    refuses a bare ``;`` after a word character, a ``\\\\;`` and non-ASCII text, and its
    ``process`` strips a leading/trailing ``"`` and deletes every ``" "``, so text with those
    cannot go through octoDNS and is refused here. In a YAML file the result is written as a
    plain scalar (``value: v=DKIM1\\; k=rsa\\; p=MIIB…``) or, double-quoted, with the
    backslash doubled (``"v=DKIM1\\\\; …"``).
    """
    text = txt_text(value)
    if not text.isascii():
        raise InvalidDnsInput("value", "octoDNS accepts only ASCII TXT text")
    if "\\;" in text:
        raise InvalidDnsInput("value", "octoDNS cannot express a backslash before a ';'")
    if text.startswith('"') or '" "' in text:
        raise InvalidDnsInput("value", "octoDNS would strip the quotes in this TXT text")
    return text.replace(";", "\\;")


def from_octodns_txt(value: str) -> str:
    """The inverse of :func:`octodns_txt`: an octoDNS TXT value in presentation form."""
    return txt_presentation(value.replace("\\;", ";"))


def _escape(data: bytes) -> str:
    """RFC 1035 §5.1 escaping inside a quoted string, as dnspython does it."""
    out = []
    for byte in data:
        if byte in b'"\\':
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


# --- checks -----------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ttl(ttl: int, field: str) -> None:
    if not _is_int(ttl) or not 0 <= ttl <= MAX_TTL:
        raise InvalidDnsInput(field, f"{ttl!r} is not an integer 0-{MAX_TTL}")


def _check_unique(values: Iterable[str], field: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise InvalidDnsInput(field, f"{value!r} is listed twice")
        seen.add(value)


def _check_name_shape(name: str, field: str, label: re.Pattern[str], min_labels: int) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidDnsInput(field, "a DNS name is required")
    if name != name.lower() or name.endswith(".") or not name.isascii():
        raise InvalidDnsInput(
            field, f"{name!r} is not in IDNA form (ASCII, lower case, no trailing dot)"
        )
    labels = name.split(".")
    if len(name) > 253 or len(labels) < min_labels:
        raise InvalidDnsInput(field, f"{name!r} needs {min_labels}+ labels and ≤253 characters")
    for part in labels:
        if not label.fullmatch(part):
            raise InvalidDnsInput(field, f"{name!r} has an invalid label {part!r}")


def _check_hostname(name: str, field: str, *, min_labels: int = 1) -> None:
    """A host name in the IDNA form MailFleet stores (``names.idna_name``): LDH labels,
    ``xn--`` labels that decode, and a top-level label that is not all digits."""
    _check_name_shape(name, field, _LDH_LABEL, min_labels)
    if name.rsplit(".", 1)[-1].isdigit():
        raise InvalidDnsInput(field, f"{name!r} is an address, not a host name")
    for part in name.split("."):
        if part.startswith("xn--"):
            try:
                ok = idna.encode(idna.decode(part)).decode() == part
            except idna.IDNAError:
                ok = False
            if not ok:
                raise InvalidDnsInput(field, f"{name!r} has an invalid IDNA label {part!r}")


def _check_dns_name(name: str, field: str) -> None:
    """A name to look up (an SPF include): host name rules, but ``_`` allowed."""
    _check_name_shape(name, field, _DNS_LABEL, 2)


def _check_addresses(addresses: tuple[str, ...], field: str, version: int) -> None:
    canonical = []
    for i, text in enumerate(addresses):
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            address = None
        if address is None or address.version != version:
            raise InvalidDnsInput(f"{field}[{i}]", f"{text!r} is not an IPv{version} address")
        canonical.append(address.compressed)
    _check_unique(canonical, field)


def _check_dkim(keys: tuple[tuple[str, str], ...]) -> None:
    _check_unique((selector for selector, _ in keys), "dkim")
    for i, (selector, key) in enumerate(keys):
        if not isinstance(selector, str) or not _LDH_LABEL.fullmatch(selector):
            raise InvalidDnsInput(
                f"dkim[{i}].selector", f"{selector!r} is not a DNS label (a-z, 0-9, inner -)"
            )
        try:
            public = load_der_public_key(base64.b64decode(key, validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise InvalidDnsInput(
                f"dkim[{i}].public_key", "not a base64 SubjectPublicKeyInfo public key"
            ) from None
        if not isinstance(public, rsa.RSAPublicKey) or public.key_size < MIN_DKIM_BITS:
            raise InvalidDnsInput(
                f"dkim[{i}].public_key", f"not an RSA key of at least {MIN_DKIM_BITS} bits"
            )


def _report_uri(value: str, field: str, *, https: bool) -> None:
    if https and value.startswith("https://"):
        if not _HTTPS_URI.fullmatch(value):
            raise InvalidDnsInput(field, f"{value!r} is not a usable https:// report URI")
        return
    local, at, domain = value.removeprefix("mailto:").rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local):
        raise InvalidDnsInput(field, f"{value!r} is not an address local@domain")
    _check_hostname(domain, field, min_labels=2)
