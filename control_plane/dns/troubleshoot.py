"""Troubleshooting a mail domain's DNS: what is wrong, the record that fixes it, and how to
set it at the domain's DNS provider.

SPF and DMARC are judged by checkdmarc (its parser knows the RFCs' corner cases better than
a new one would); MailFleet adds what checkdmarc does not look at: MX targets that are
CNAMEs, forward-confirmed reverse DNS of the sending address, DKIM keys (present, ≥ 2048
bits, the one in Vault), CAA records that would stop the ACME CA, and delegation (the NS
the world sees vs the ones the provider serves). Blocking DNS (checkdmarc is synchronous):
callers run ``diagnose`` in a thread.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import checkdmarc.dmarc
import checkdmarc.spf
import dns.exception
import dns.name
import dns.resolver
import dns.reversename
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

Severity = Literal["critical", "warning", "info"]
SPF_LOOKUP_LIMIT = 10
MIN_DKIM_BITS = 2048

GUIDANCE: dict[str, dict[str, str]] = {
    "cloudflare": {
        "mx": "In Cloudflare, the mail host's A/AAAA record must be 'DNS only' (grey cloud): a "
        "proxied record answers with Cloudflare's addresses, which do not speak SMTP.",
        "txt": "Cloudflare takes the TXT content without surrounding quotes and splits long "
        "values itself.",
        "ptr": "Reverse DNS is set at the VPS provider, not in Cloudflare.",
    },
    "route53": {
        "txt": "In Route 53, put each TXT value in double quotes; a value longer than 255 "
        'characters is entered as several quoted strings in one line ("…" "…").',
        "ptr": "Reverse DNS is set at the VPS provider, not in Route 53 (unless the addresses "
        "are your own Elastic IPs).",
    },
    "rfc2136": {
        "ptr": "Reverse DNS is set at the VPS provider (MailFleet does it for servers it rents).",
    },
}


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    message: str
    fix: str | None = None  # the record to set, in zone-file form
    guidance: str | None = None  # how to do it at this provider


@dataclass(frozen=True)
class Expectations:
    """What the domain should look like: from the desired records and the server."""

    domain: str
    mail_host: str
    ipv4: tuple[str, ...]
    dkim: tuple[tuple[str, str], ...]  # (selector, base64 public key)
    caa_issuer: str = "letsencrypt.org"
    provider_kind: str = "rfc2136"
    provider_ns: tuple[str, ...] = ()  # the NS the provider serves at the apex
    spf: str | None = None  # MailFleet's SPF text, for the fix line
    dmarc: str | None = None


@dataclass
class Diagnosis:
    domain: str
    findings: list[Finding] = field(default_factory=list)
    spf: dict[str, Any] = field(default_factory=dict)
    dmarc: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "critical" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "ok": self.ok,
            "findings": [asdict(f) for f in self.findings],
        }


def diagnose(expect: Expectations, resolver: dns.resolver.Resolver) -> Diagnosis:
    """Every check, each one's findings; a DNS failure becomes a finding, never a crash."""
    found = Diagnosis(expect.domain)
    guide = GUIDANCE.get(expect.provider_kind, {})

    def add(
        severity: Severity,
        code: str,
        message: str,
        fix: str | None = None,
        topic: str | None = None,
    ) -> None:
        found.findings.append(Finding(severity, code, message, fix, guide.get(topic or "")))

    _spf(expect, resolver, found, add)
    _dmarc(expect, resolver, found, add)
    _mx(expect, resolver, add)
    _dkim(expect, resolver, add)
    _ptr(expect, resolver, add)
    _caa(expect, resolver, add)
    _delegation(expect, resolver, add)
    return found


def _answers(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list[Any] | None:
    """The rdatas, [] when the name has none of that type, None when DNS failed."""
    try:
        return list(resolver.resolve(name, rdtype, raise_on_no_answer=False) or [])
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException:
        return None


def _texts(rdatas: Sequence[Any]) -> list[str]:
    return [b"".join(r.strings).decode(errors="replace") for r in rdatas]


def _spf(expect: Expectations, resolver: dns.resolver.Resolver, found: Diagnosis, add: Any) -> None:
    result = checkdmarc.spf.check_spf(expect.domain, resolver=resolver)
    found.spf = {k: v for k, v in result.items() if k != "parsed"}
    fix = f'{expect.domain}. TXT "{expect.spf}"' if expect.spf else None
    spf_values = [
        t
        for t in _texts(_answers(resolver, expect.domain, "TXT") or [])
        if t.lower().startswith("v=spf1")
    ]
    if len(spf_values) > 1:
        add(
            "critical",
            "spf.multiple",
            f"{expect.domain} has {len(spf_values)} SPF records; "
            "receivers treat that as a permanent error. Merge them into one.",
            fix,
            "txt",
        )
    elif "error" in result:
        error = str(result["error"])
        code = (
            "spf.missing"
            if "does not exist" in error or ("not" in error and not spf_values)
            else "spf.invalid"
        )
        add("critical", code, f"SPF: {error}", fix, "txt")
    lookups = result.get("dns_lookups")
    if isinstance(lookups, int) and lookups > SPF_LOOKUP_LIMIT:
        add(
            "critical",
            "spf.too_many_lookups",
            f"SPF needs {lookups} DNS lookups, more than the "
            f"{SPF_LOOKUP_LIMIT} RFC 7208 allows: receivers answer permerror.",
            fix,
            "txt",
        )
    if spf_values and len(spf_values) == 1:
        missing = [ip for ip in expect.ipv4 if f"ip4:{ip}" not in spf_values[0]]
        if missing:
            add(
                "warning",
                "spf.ip_not_listed",
                f"SPF does not list the sending address "
                f"{', '.join(missing)} directly (an include may still cover it).",
                fix,
                "txt",
            )
    for warning in result.get("warnings", []) or []:
        add("info", "spf.warning", f"SPF: {warning}")


def _dmarc(
    expect: Expectations, resolver: dns.resolver.Resolver, found: Diagnosis, add: Any
) -> None:
    result = checkdmarc.dmarc.check_dmarc(expect.domain, resolver=resolver)
    found.dmarc = {k: v for k, v in dict(result).items() if k in ("record", "valid", "error")}
    fix = f'_dmarc.{expect.domain}. TXT "{expect.dmarc}"' if expect.dmarc else None
    if "error" in result:
        error = str(result["error"])
        missing = "does not exist" in error or "missing" in error.lower()
        add(
            "critical",
            "dmarc.missing" if missing else "dmarc.invalid",
            f"DMARC: {error}",
            fix,
            "txt",
        )
    for warning in result.get("warnings", []) or []:
        add("info", "dmarc.warning", f"DMARC: {warning}")


def _mx(expect: Expectations, resolver: dns.resolver.Resolver, add: Any) -> None:
    fix = f"{expect.domain}. MX 10 {expect.mail_host}."
    records = _answers(resolver, expect.domain, "MX")
    if records is None:
        add("warning", "mx.lookup_failed", f"the MX of {expect.domain} could not be looked up")
        return
    if not records:
        add("critical", "mx.missing", f"{expect.domain} has no MX record.", fix, "mx")
        return
    targets = [r.exchange.to_text().rstrip(".").lower() for r in records]
    for target in targets:
        if _answers(resolver, target, "CNAME"):
            add(
                "critical",
                "mx.cname",
                f"the MX target {target} is a CNAME; RFC 2181 §10.3 "
                "requires an address record (A/AAAA) there.",
                fix,
                "mx",
            )
    if expect.mail_host not in targets:
        add(
            "warning",
            "mx.not_ours",
            f"the MX of {expect.domain} ({', '.join(targets)}) does "
            f"not include the MailFleet server {expect.mail_host}.",
            fix,
            "mx",
        )


def _dkim(expect: Expectations, resolver: dns.resolver.Resolver, add: Any) -> None:
    for selector, key in expect.dkim:
        name = f"{selector}._domainkey.{expect.domain}"
        fix = f'{name}. TXT "v=DKIM1; k=rsa; p={key}"'
        texts = _texts(_answers(resolver, name, "TXT") or [])
        if not texts:
            add("critical", "dkim.missing", f"no DKIM record at {name}.", fix, "txt")
            continue
        tags = dict(part.strip().split("=", 1) for part in texts[0].split(";") if "=" in part)
        published = tags.get("p", "").replace(" ", "")
        try:
            public = load_der_public_key(base64.b64decode(published))
        except ValueError:
            add(
                "critical",
                "dkim.unparsable",
                f"the DKIM key at {name} is not a public key.",
                fix,
                "txt",
            )
            continue
        if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_DKIM_BITS:
            add(
                "critical",
                "dkim.weak",
                f"the DKIM key at {name} has {public.key_size} bits; use at least {MIN_DKIM_BITS}.",
                fix,
                "txt",
            )
        if published != key:
            add(
                "critical",
                "dkim.mismatch",
                f"the DKIM key at {name} is not the key MailU "
                "signs with (the one in Vault): signatures fail.",
                fix,
                "txt",
            )


def _ptr(expect: Expectations, resolver: dns.resolver.Resolver, add: Any) -> None:
    for ip in expect.ipv4:
        reverse = dns.reversename.from_address(ip).to_text().rstrip(".")
        fix = f"{reverse}. PTR {expect.mail_host}."
        names = [
            r.target.to_text().rstrip(".").lower() for r in _answers(resolver, reverse, "PTR") or []
        ]
        if not names:
            add(
                "critical",
                "ptr.missing",
                f"{ip} has no reverse DNS (PTR); many receivers refuse mail from such addresses.",
                fix,
                "ptr",
            )
            continue
        if expect.mail_host not in names:
            add(
                "critical",
                "ptr.mismatch",
                f"{ip} points back to {', '.join(names)}, not to the mail host {expect.mail_host}.",
                fix,
                "ptr",
            )
            continue
        forward = [r.address for r in _answers(resolver, expect.mail_host, "A") or []]
        if ip not in forward:
            add(
                "critical",
                "ptr.not_forward_confirmed",
                f"{expect.mail_host} does not resolve "
                f"to {ip}, so its reverse DNS is not forward-confirmed.",
                f"{expect.mail_host}. A {ip}",
                "mx",
            )


def _caa(expect: Expectations, resolver: dns.resolver.Resolver, add: Any) -> None:
    """The relevant CAA set is the closest one up the tree (RFC 8659 §3)."""
    name = dns.name.from_text(expect.domain)
    while len(name.labels) > 1:
        records = _answers(resolver, name.to_text(), "CAA") or []
        issuers = [
            r.value.decode().split(";")[0].strip()
            for r in records
            if r.tag.decode().lower() == "issue"
        ]
        if records:
            if issuers and expect.caa_issuer not in issuers:
                add(
                    "critical",
                    "caa.blocks_ca",
                    f"CAA at {name.to_text().rstrip('.')} allows "
                    f"only {', '.join(issuers)}: {expect.caa_issuer} cannot issue the mail "
                    "host's certificate.",
                    f'{expect.domain}. CAA 0 issue "{expect.caa_issuer}"',
                )
            return
        name = name.parent()


def _delegation(expect: Expectations, resolver: dns.resolver.Resolver, add: Any) -> None:
    if not expect.provider_ns:
        return
    seen = sorted(
        r.target.to_text().rstrip(".").lower()
        for r in _answers(resolver, expect.domain, "NS") or []
    )
    served = sorted(ns.rstrip(".").lower() for ns in expect.provider_ns)
    if seen and seen != served:
        add(
            "critical",
            "ns.delegation_mismatch",
            f"the registrar delegates {expect.domain} to "
            f"{', '.join(seen)}, but the DNS provider serves it on {', '.join(served)}: changes "
            "made there are not what the world sees.",
            " ".join(f"{expect.domain}. NS {ns}." for ns in served),
        )


def resolver_for(
    nameservers: Sequence[tuple[str, int]], timeout: float = 3.0
) -> dns.resolver.Resolver:
    """A resolver asking exactly these servers (addresses and ports)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [
        dns.nameserver.Do53Nameserver(ipaddress.ip_address(a).compressed, p) for a, p in nameservers
    ]
    resolver.timeout = resolver.lifetime = timeout
    return resolver
