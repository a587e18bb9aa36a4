"""Troubleshooting a mail domain's DNS: what is wrong, the record that fixes it, and how to
set it at the domain's DNS provider.

SPF and DMARC are judged by checkdmarc (its parser knows the RFCs' corner cases better than
a new one would); MailFleet adds what checkdmarc does not look at: MX targets that are
CNAMEs, forward-confirmed reverse DNS of the sending address, DKIM keys (present, ≥ 2048
bits, the one in Vault), CAA records that would stop the ACME CA, and delegation (the NS
the world sees vs the ones the provider serves). Blocking DNS (checkdmarc is synchronous):
callers run ``diagnose`` in a thread.

A lookup that gets no usable answer (timeout, REFUSED, SERVFAIL) is a ``<check>.lookup_failed``
finding in state ``unknown``, with the resolver's words: never a verdict on the record, and
never a clean bill (checkdmarc reports such a failure as one more error string, so the
resolver remembers the failures it saw and the check that met one says so).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import dns.exception
import dns.name
import dns.resolver
import dns.reversename
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from control_plane.schemas import FindingState

Severity = Literal["critical", "warning", "info"]
SPF_LOOKUP_LIMIT = 10
MIN_DKIM_BITS = 2048
GIVE_UP_AFTER = 3  # timeouts in a row after which the resolver is not asked again in a run

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
    state: FindingState = "failing"


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
    def state(self) -> Literal["ok", "failing", "unknown"]:
        """``failing`` on a critical finding; else ``unknown`` when a check could not run."""
        if any(f.severity == "critical" and f.state == "failing" for f in self.findings):
            return "failing"
        return "unknown" if any(f.state == "unknown" for f in self.findings) else "ok"

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "state": self.state,
            "ok": self.ok,
            "findings": [asdict(f) for f in self.findings],
        }


class Resolver(dns.resolver.Resolver):
    """A resolver that keeps the words of every lookup that got no usable answer (timeout,
    REFUSED, SERVFAIL, …), and stops asking after ``GIVE_UP_AFTER`` timeouts in a row, so a
    dead resolver costs a few timeouts rather than one per lookup."""

    def __init__(self, configure: bool = True) -> None:
        super().__init__(configure=configure)
        self.failures: list[str] = []
        self._timeouts = 0

    def resolve(self, *args: Any, **kwargs: Any) -> dns.resolver.Answer:
        if self._timeouts >= GIVE_UP_AFTER:
            words = f"not asked: the last {self._timeouts} lookups timed out ({self.failures[-1]})"
            self.failures.append(words)
            raise ResolverGaveUp(words)  # type: ignore[no-untyped-call]
        try:
            answer = super().resolve(*args, **kwargs)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            self._timeouts = 0
            raise
        except dns.exception.DNSException as exc:
            self._timeouts = self._timeouts + 1 if isinstance(exc, dns.exception.Timeout) else 0
            self.failures.append(str(exc))
            raise
        self._timeouts = 0
        return answer


class ResolverGaveUp(dns.exception.DNSException):
    """The resolver timed out too often in a row to be asked again in this run."""


@dataclass(frozen=True)
class Failed:
    """A lookup that got no usable answer, in the resolver's words."""

    words: str


def diagnose(expect: Expectations, resolver: Resolver) -> Diagnosis:
    """Every check, each one's findings; a DNS failure becomes a finding, never a crash."""
    found = Diagnosis(expect.domain)
    guide = GUIDANCE.get(expect.provider_kind, {})
    # Imported here: checkdmarc costs every process that loads the DNS module ~0.2 s (every
    # CLI call), and only a diagnosis needs it.
    import checkdmarc.utils

    # checkdmarc keeps answers for half an hour in a process-wide cache that does not know the
    # resolver: a run right after a fix would judge the old records.
    checkdmarc.utils.DNS_CACHE.clear()

    def add(
        severity: Severity,
        code: str,
        message: str,
        fix: str | None = None,
        topic: str | None = None,
        state: FindingState = "failing",
    ) -> None:
        found.findings.append(Finding(severity, code, message, fix, guide.get(topic or ""), state))

    _spf(expect, resolver, found, add)
    _dmarc(expect, resolver, found, add)
    _mx(expect, resolver, add)
    _dkim(expect, resolver, add)
    _ptr(expect, resolver, add)
    _caa(expect, resolver, add)
    _delegation(expect, resolver, add)
    return found


def _answers(resolver: Resolver, name: str, rdtype: str) -> list[Any] | Failed:
    """The rdatas, [] when the name has none of that type, ``Failed`` when DNS failed."""
    try:
        return list(resolver.resolve(name, rdtype, raise_on_no_answer=False) or [])
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        return Failed(str(exc))


def _unknown(add: Any, severity: Severity, check: str, what: str, failed: Failed) -> None:
    """The finding for a check that could not run: what could not be looked up, and why."""
    add(severity, f"{check}.lookup_failed", f"{what} could not be looked up: {failed.words}",
        state="unknown")  # fmt: skip


def _failed_during(resolver: Resolver, mark: int) -> Failed | None:
    """The first lookup failure since ``mark`` (a length of ``resolver.failures``)."""
    return Failed(resolver.failures[mark]) if len(resolver.failures) > mark else None


def _texts(rdatas: Sequence[Any]) -> list[str]:
    return [b"".join(r.strings).decode(errors="replace") for r in rdatas]


def _spf(expect: Expectations, resolver: Resolver, found: Diagnosis, add: Any) -> None:
    fix = f'{expect.domain}. TXT "{expect.spf}"' if expect.spf else None
    texts = _answers(resolver, expect.domain, "TXT")
    if isinstance(texts, Failed):
        _unknown(add, "critical", "spf", f"the TXT records of {expect.domain}", texts)
        return
    mark = len(resolver.failures)
    import checkdmarc.spf

    result = checkdmarc.spf.check_spf(expect.domain, resolver=resolver)
    found.spf = {k: v for k, v in result.items() if k != "parsed"}
    spf_values = [t for t in _texts(texts) if t.lower().startswith("v=spf1")]
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
        if failed := _failed_during(resolver, mark):  # an include or a redirect, say
            _unknown(add, "critical", "spf", f"SPF of {expect.domain} ({result['error']})", failed)
            return
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


def _dmarc(expect: Expectations, resolver: Resolver, found: Diagnosis, add: Any) -> None:
    own = _answers(resolver, f"_dmarc.{expect.domain}", "TXT")
    if isinstance(own, Failed):
        _unknown(add, "critical", "dmarc", f"the DMARC record of {expect.domain}", own)
        return
    mark = len(resolver.failures)
    import checkdmarc.dmarc

    result = checkdmarc.dmarc.check_dmarc(expect.domain, resolver=resolver)
    found.dmarc = {k: v for k, v in dict(result).items() if k in ("record", "valid", "error")}
    fix = f'_dmarc.{expect.domain}. TXT "{expect.dmarc}"' if expect.dmarc else None
    if "error" in result:
        # With a record of its own, the error is about that record; without, checkdmarc looked
        # further up the tree, and a failed lookup there leaves the policy unknown.
        published = any(t.lower().startswith("v=dmarc1") for t in _texts(own))
        if not published and (failed := _failed_during(resolver, mark)):
            _unknown(add, "critical", "dmarc", f"the DMARC policy of {expect.domain}", failed)
            return
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


def _mx(expect: Expectations, resolver: Resolver, add: Any) -> None:
    fix = f"{expect.domain}. MX 10 {expect.mail_host}."
    records = _answers(resolver, expect.domain, "MX")
    if isinstance(records, Failed):
        _unknown(add, "critical", "mx", f"the MX of {expect.domain}", records)
        return
    if not records:
        add("critical", "mx.missing", f"{expect.domain} has no MX record.", fix, "mx")
        return
    targets = [r.exchange.to_text().rstrip(".").lower() for r in records]
    for target in targets:
        cname = _answers(resolver, target, "CNAME")
        if isinstance(cname, Failed):
            _unknown(add, "critical", "mx", f"whether the MX target {target} is a CNAME", cname)
        elif cname:
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


def _dkim(expect: Expectations, resolver: Resolver, add: Any) -> None:
    for selector, key in expect.dkim:
        name = f"{selector}._domainkey.{expect.domain}"
        fix = f'{name}. TXT "v=DKIM1; k=rsa; p={key}"'
        records = _answers(resolver, name, "TXT")
        if isinstance(records, Failed):
            _unknown(add, "critical", "dkim", f"the DKIM record at {name}", records)
            continue
        texts = _texts(records)
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


def _ptr(expect: Expectations, resolver: Resolver, add: Any) -> None:
    for ip in expect.ipv4:
        reverse = dns.reversename.from_address(ip).to_text().rstrip(".")
        fix = f"{reverse}. PTR {expect.mail_host}."
        records = _answers(resolver, reverse, "PTR")
        if isinstance(records, Failed):
            _unknown(add, "critical", "ptr", f"the reverse DNS (PTR) of {ip}", records)
            continue
        names = [r.target.to_text().rstrip(".").lower() for r in records]
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
        forward = _answers(resolver, expect.mail_host, "A")
        if isinstance(forward, Failed):
            _unknown(add, "critical", "ptr", f"the address of {expect.mail_host}", forward)
        elif ip not in [r.address for r in forward]:
            add(
                "critical",
                "ptr.not_forward_confirmed",
                f"{expect.mail_host} does not resolve "
                f"to {ip}, so its reverse DNS is not forward-confirmed.",
                f"{expect.mail_host}. A {ip}",
                "mx",
            )


def _caa(expect: Expectations, resolver: Resolver, add: Any) -> None:
    """The relevant CAA set is the closest one up the tree (RFC 8659 §3)."""
    name = dns.name.from_text(expect.domain)
    while len(name.labels) > 1:
        records = _answers(resolver, name.to_text(), "CAA")
        if isinstance(records, Failed):
            where = name.to_text().rstrip(".")
            _unknown(add, "critical", "caa", f"the CAA records of {where}", records)
            return
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


def _delegation(expect: Expectations, resolver: Resolver, add: Any) -> None:
    if not expect.provider_ns:
        return
    records = _answers(resolver, expect.domain, "NS")
    if isinstance(records, Failed):
        _unknown(add, "critical", "ns", f"the NS of {expect.domain}", records)
        return
    seen = sorted(r.target.to_text().rstrip(".").lower() for r in records)
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


def resolver_for(nameservers: Sequence[tuple[str, int]], timeout: float = 3.0) -> Resolver:
    """A resolver asking exactly these servers (addresses and ports)."""
    resolver = Resolver(configure=False)
    resolver.nameservers = [
        dns.nameserver.Do53Nameserver(ipaddress.ip_address(a).compressed, p) for a, p in nameservers
    ]
    resolver.timeout = resolver.lifetime = timeout
    return resolver
