"""DNSBL lookups, three-state: listed (code, meaning, TXT reason), clean, or unknown (why).

An address is looked up as its reversed octets under the list's zone (RFC 5782;
``1.2.0.192.zen.spamhaus.org``), a domain as itself under it. An A answer in 127.0.0.0/8 is a
listing (its codes mean what the catalog says; the TXT record of the same name is the
list's reason), NXDOMAIN is clean. Everything else is unknown, never clean: a timeout, a
resolver's REFUSED or SERVFAIL, NOERROR without an address, the lists' own error codes
(Spamhaus' 127.255.255.252/254/255: typo, public resolver, too many queries), an answer
outside 127/8 (a resolver that rewrites NXDOMAIN). And a list whose RFC 5782 test points
fail (127.0.0.2 / ``test`` must be listed, 127.0.0.1 / ``invalid`` must not) gives unknown
for every lookup ("list broken: …"): a list that answers nothing, or everything, is no
verdict. Test points are asked once per ``dnsbl_test_point_ttl_seconds`` per list.

Why not ``dns.asyncresolver``: a sweep asks 80,000 questions per 10,000 addresses, and the
resolver (a socket, a Resolution and a full message parse per question) costs ~0.7 ms of
CPU each, 56 s a sweep. Here one UDP socket pool carries every question (random ids,
answers matched by id, source and question); the question is built from cached label
bytes, and an NXDOMAIN (nearly every answer) is read from its header once the echoed
question matches. Every other answer is parsed by dnspython (``dns.message.from_wire``), and
a truncated one is asked again over TCP with ``dns.asyncquery.tcp``. ~70 µs per question.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from control_plane.dnsbl.catalog import DnsblList

State = Literal["listed", "clean", "unknown"]
A, TXT, IN = 1, 16, 1
NXDOMAIN = 3
_QR, _TC = 0x80, 0x02
TEXT_CHARS = 1000


@dataclass(frozen=True)
class Verdict:
    """One subject on one list: ``code`` the return codes (comma-separated), ``reason`` the
    list's TXT when listed, or why the lookup could not tell when unknown."""

    state: State
    code: str | None = None
    meaning: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Reply:
    """What the resolvers said to one question: an rcode and its records, or ``error``."""

    rcode: int | None = None
    addresses: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    error: str | None = None


def query_name(subject: str, dnsbl: DnsblList) -> str:
    """The name asked: reversed octets (nibbles for IPv6) or the domain, under the zone."""
    try:
        address = ipaddress.ip_address(subject)
    except ValueError:
        return f"{subject.strip().rstrip('.').lower()}.{dnsbl.zone}"
    if address.version == 4:
        return ".".join(reversed(str(address).split("."))) + f".{dnsbl.zone}"
    return address.reverse_pointer.removesuffix(".ip6.arpa") + f".{dnsbl.zone}"


def subject_wire(subject: str) -> bytes:
    """The labels asked before the zone, in wire form (``query_name`` without the zone)."""
    import dns.name  # dnspython loads with the first lookup, not with serve

    parts = subject.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):  # IPv4: the hot path
        return b"".join(bytes((len(p),)) + p.encode() for p in reversed(parts))
    try:
        address = ipaddress.ip_address(subject)
    except ValueError:
        name = dns.name.from_text(subject.strip().rstrip(".").lower())  # IDNA, label checks
        return (name.to_wire() or b"\0")[:-1]  # without the root label
    if address.version == 4:
        return subject_wire(str(address))
    nibbles = address.reverse_pointer.removesuffix(".ip6.arpa").split(".")
    return b"".join(b"\x01" + n.encode() for n in nibbles)


class _Socket(asyncio.DatagramProtocol):
    """One UDP socket: questions in flight by id, each answered by its resolver only."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[tuple[str, int], asyncio.Future[bytes]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) < 12:
            return
        entry = self.pending.get((data[0] << 8) | data[1])
        if entry is None or (str(addr[0]), int(addr[1])) != entry[0] or entry[1].done():
            return  # late, spoofed or from another server: ignored
        entry[1].set_result(data)

    def error_received(self, exc: Exception) -> None:  # unconnected: ICMP is not reported
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        for _, future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("socket closed"))


class Lookup:
    """Asks the configured resolvers (or the system's) at most ``concurrency`` questions at
    a time; one per sweep (or per API check), closed with ``aclose``."""

    SOCKETS = 8  # per address family: a source port per socket, picked at random

    def __init__(
        self,
        resolvers: Sequence[tuple[str, int]],
        *,
        timeout: float,
        concurrency: int,
        test_point_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import dns.exception
        import dns.resolver

        self.resolvers = [(str(ipaddress.ip_address(h)), p) for h, p in resolvers]
        self._no_resolver: str | None = None
        if not self.resolvers:
            try:  # the system's: /etc/resolv.conf
                system = dns.resolver.Resolver()
                self.resolvers = [(str(ns), int(system.port)) for ns in system.nameservers]
            except dns.exception.DNSException as exc:
                self._no_resolver = f"no resolver: MAILFLEET_DNSBL_RESOLVERS is empty and {exc}"
        self.timeout, self.test_point_ttl, self.clock = timeout, test_point_ttl, clock
        self.queries = 0  # questions sent (attempts included), for the benchmark and metrics
        self._slots = asyncio.Semaphore(concurrency)
        self._sockets: dict[int, list[_Socket]] = {}
        self._opening = asyncio.Lock()
        self._lists: dict[str, tuple[str | None, float]] = {}
        self._testing: dict[str, asyncio.Future[str | None]] = {}
        self._zones: dict[str, bytes] = {}

    async def aclose(self) -> None:
        for sockets in self._sockets.values():
            for sock in sockets:
                if sock.transport is not None:
                    sock.transport.close()
        self._sockets.clear()

    async def check_all(self, subject: str, lists: Sequence[DnsblList]) -> dict[str, Verdict]:
        """``subject`` on every list (of its kind), by zone."""
        import dns.exception

        try:
            prefix = subject_wire(subject)
        except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
            return {
                item.zone: Verdict("unknown", reason=f"cannot be asked: {exc}") for item in lists
            }
        found = await asyncio.gather(*(self._check(prefix, item) for item in lists))
        return {item.zone: verdict for item, verdict in zip(lists, found, strict=True)}

    async def check(self, subject: str, dnsbl: DnsblList) -> Verdict:
        """``subject`` on one list, its test points first (cached)."""
        return (await self.check_all(subject, [dnsbl]))[dnsbl.zone]

    async def _check(self, prefix: bytes, dnsbl: DnsblList) -> Verdict:
        problem = await self.list_problem(dnsbl)
        if problem is not None:
            return Verdict("unknown", reason=problem)
        return await self._verdict(prefix, dnsbl, reasons=True)

    async def list_problem(self, dnsbl: DnsblList) -> str | None:
        """Why the list's answers cannot be trusted now (None: its test points pass)."""
        cached = self._lists.get(dnsbl.zone)
        if cached is not None and cached[1] > self.clock():
            return cached[0]
        running = self._testing.get(dnsbl.zone)
        if running is None:
            running = self._testing[dnsbl.zone] = asyncio.ensure_future(self._test(dnsbl))
            running.add_done_callback(lambda _f: self._testing.pop(dnsbl.zone, None))
        return await asyncio.shield(running)

    async def _test(self, dnsbl: DnsblList) -> str | None:
        listed, unlisted = await asyncio.gather(
            self._verdict(subject_wire(dnsbl.positive_test), dnsbl, reasons=False),
            self._verdict(subject_wire(dnsbl.negative_test), dnsbl, reasons=False),
        )
        problem: str | None = None
        ttl = self.test_point_ttl
        if listed.state == "clean":
            problem = f"list broken: its test point {dnsbl.positive_test} is not listed (RFC 5782)"
        elif unlisted.state == "listed":
            problem = f"list broken: its test point {dnsbl.negative_test} is listed (RFC 5782)"
        elif "unknown" in (listed.state, unlisted.state):
            failed = listed if listed.state == "unknown" else unlisted
            point = dnsbl.positive_test if failed is listed else dnsbl.negative_test
            problem = f"list unverified: test point {point}: {failed.reason}"
            ttl = min(ttl, max(1.0, ttl / 10))  # a blip is asked again sooner
        self._lists[dnsbl.zone] = (problem, self.clock() + ttl)
        return problem

    async def _verdict(self, prefix: bytes, dnsbl: DnsblList, *, reasons: bool) -> Verdict:
        import dns.name
        import dns.rcode

        zone = self._zones.get(dnsbl.zone)
        if zone is None:
            zone = self._zones[dnsbl.zone] = dns.name.from_text(dnsbl.zone).to_wire() or b""
        name = prefix + zone
        if len(name) > 255:
            return Verdict("unknown", reason="cannot be asked: the name is over 255 octets")
        reply = await self.ask(name, A)
        if reply.error is not None:
            return Verdict("unknown", reason=reply.error)
        if reply.rcode == NXDOMAIN:
            return Verdict("clean")
        if reply.rcode != dns.rcode.NOERROR:
            return Verdict("unknown", reason=f"{_rcode(reply.rcode)} from the resolver")
        if not reply.addresses:
            return Verdict("unknown", reason="no answer (NOERROR without an A record)")
        codes = sorted(set(reply.addresses), key=lambda c: tuple(int(x) for x in c.split(".")))
        for code in codes:
            if (error := dnsbl.error(code)) is not None:
                return Verdict("unknown", code=code, reason=error)
        meanings = list(dict.fromkeys(dnsbl.meaning(code) for code in codes))
        reason = None
        if reasons:
            text = await self.ask(name, TXT)
            reason = " ".join(text.texts)[:TEXT_CHARS] or None
        return Verdict("listed", ",".join(codes), "; ".join(meanings), reason)

    async def ask(self, name: bytes, rdtype: int) -> Reply:
        """One question through the resolvers: each tried in turn (a REFUSED or SERVFAIL
        moves to the next) until one answers or ``timeout`` has passed."""
        import dns.rcode

        if not self.resolvers:
            return Reply(error=self._no_resolver or "no resolver configured")
        question = name + struct.pack("!HH", rdtype, IN)
        deadline = self.clock() + self.timeout
        per_try = self.timeout / max(2, len(self.resolvers))
        errors: dict[tuple[str, int], str] = {}
        attempt = 0
        async with self._slots:
            while (left := deadline - self.clock()) > 0:
                server = self.resolvers[attempt % len(self.resolvers)]
                attempt += 1
                if server in errors and len(errors) < len(self.resolvers):
                    continue
                data = await self._send(server, question, min(per_try, left))
                if data is None:
                    continue
                reply = await self._read(data, question, server)
                if reply.rcode in (NXDOMAIN, dns.rcode.NOERROR) or reply.error is not None:
                    return reply
                errors[server] = _rcode(reply.rcode)
                if len(errors) == len(self.resolvers):
                    break
        if errors:
            said = ", ".join(f"{h}:{p} {e}" for (h, p), e in errors.items())
            return Reply(error=f"the resolvers could not answer ({said})")
        return Reply(error=f"timeout after {self.timeout:g} s (no answer from the resolvers)")

    async def _send(self, server: tuple[str, int], question: bytes, wait: float) -> bytes | None:
        """Send once and wait up to ``wait`` for the answer (None: none came)."""
        sock = await self._socket(server[0])
        qid = secrets.randbits(16)
        while qid in sock.pending:
            qid = secrets.randbits(16)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        sock.pending[qid] = (server, future)
        assert sock.transport is not None
        self.queries += 1
        timer = loop.call_later(wait, _expire, future)  # cheaper than asyncio.timeout
        try:
            sock.transport.sendto(struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + question, server)
            return await future
        except (TimeoutError, OSError):
            return None
        finally:
            timer.cancel()
            sock.pending.pop(qid, None)

    async def _read(self, data: bytes, question: bytes, server: tuple[str, int]) -> Reply:
        if not data[2] & _QR:
            return Reply(error="the resolver sent a query, not an answer")
        echoed = data[12 : 12 + len(question)].lower() == question.lower()
        rcode = data[3] & 0x0F
        if rcode == NXDOMAIN and echoed and data[4:6] == b"\x00\x01":
            return Reply(rcode=NXDOMAIN)  # the common case, read from the header
        if data[2] & _TC:
            return await self._over_tcp(question, server)
        return _parse(data, question)

    async def _over_tcp(self, question: bytes, server: tuple[str, int]) -> Reply:
        import dns.asyncquery
        import dns.exception
        import dns.message
        import dns.name

        name = dns.name.from_wire(question, 0)[0]
        rdtype = struct.unpack("!H", question[-4:-2])[0]
        self.queries += 1
        try:
            message = await dns.asyncquery.tcp(
                dns.message.make_query(name, rdtype), server[0], self.timeout, port=server[1]
            )
        except (dns.exception.DNSException, OSError) as exc:
            return Reply(error=f"truncated over UDP, and TCP failed: {exc!r}")
        return _parse(message.to_wire(), question)

    async def _socket(self, host: str) -> _Socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sockets = self._sockets.get(family)
        if sockets is None:
            async with self._opening:
                sockets = self._sockets.get(family)
                if sockets is None:
                    loop = asyncio.get_running_loop()
                    sockets = []
                    for _ in range(self.SOCKETS):
                        _, protocol = await loop.create_datagram_endpoint(
                            _Socket,
                            family=family,  # bound to a random port at first send
                        )
                        sockets.append(protocol)
                    self._sockets[family] = sockets
        return sockets[secrets.randbelow(len(sockets))]


def _expire(future: asyncio.Future[bytes]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _parse(data: bytes, question: bytes) -> Reply:
    """Any answer but a plain NXDOMAIN: dnspython reads it; the question must be ours."""
    import dns.exception
    import dns.message
    import dns.name
    import dns.rdatatype

    try:
        message = dns.message.from_wire(data, ignore_trailing=True)
    except dns.exception.DNSException as exc:
        return Reply(error=f"an unreadable answer: {exc}")
    name = dns.name.from_wire(question, 0)[0]
    rdtype = struct.unpack("!H", question[-4:-2])[0]
    asked = message.question[0] if message.question else None
    if asked is None or asked.name != name or asked.rdtype != rdtype:
        return Reply(error="an answer to another question")
    addresses: list[str] = []
    texts: list[str] = []
    for rrset in message.answer:
        for rdata in rrset:
            if rrset.rdtype == dns.rdatatype.A:
                addresses.append(rdata.address)
            elif rrset.rdtype == dns.rdatatype.TXT:
                texts.append(b"".join(rdata.strings).decode("utf-8", "replace"))
    return Reply(rcode=message.rcode(), addresses=tuple(addresses), texts=tuple(texts))


def _rcode(rcode: int | None) -> str:
    import dns.rcode

    with contextlib.suppress(ValueError):
        return dns.rcode.to_text(dns.rcode.Rcode(rcode)) if rcode is not None else "no answer"
    return f"rcode {rcode}"
