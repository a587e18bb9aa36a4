"""Real Knot DNS servers on loopback (a TSIG-protected primary and an optional secondary).

DNS and ACME DNS-01 code must be tested against a real authoritative server: RFC 2136 updates,
TSIG, serial increments and secondaries lagging behind the primary are exactly what fakes get
wrong. dnspython is not a dependency, so queries and updates go through ``kdig`` and
``knsupdate`` (both from knot-dnsutils) as subprocesses.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port
from tests.support.processes import Running, started_on_fresh_ports

HOST = "127.0.0.1"
KEY_NAME = "mailfleet-test"
ALGORITHM = "hmac-sha256"
START_TIMEOUT = 10.0
SYNC_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# A port picked by free_port can still be taken by another xdist worker (or a UDP client socket)
# before knotd binds it; knotd then exits at once and is started again on new ports.
START_ATTEMPTS = 3

RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
}
# TSIG errors travel as RCODE NOTAUTH; kdig/knsupdate print the TSIG error in its place.
TSIG_ERRORS = {"BADSIG", "BADKEY", "BADTIME", "BADTRUNC"}


class DnsQueryError(RuntimeError):
    """kdig got no usable answer (timeout, connection refused, unparsable output)."""


class DnsUpdateError(AssertionError):
    """The server rejected (or never answered) an RFC 2136 update."""

    def __init__(self, status: str, output: str) -> None:
        super().__init__(f"update failed: {status}\n{output}")
        self.status = status  # as printed: NOTAUTH, REFUSED, BADSIG, ... or TIMEOUT
        self.rcode = "NOTAUTH" if status in TSIG_ERRORS else status
        self.output = output


class KnotError(RuntimeError):
    """knotd did not start, exited, or did not reach a state in time; carries its log."""


class _PortTaken(KnotError):
    """knotd could not bind its port: start again on another one."""


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key as Knot's config, kdig and knsupdate spell it."""

    name: str
    secret: str  # base64
    algorithm: str = ALGORITHM

    @classmethod
    def generate(cls, name: str = KEY_NAME) -> TsigKey:
        return cls(name=name, secret=base64.b64encode(secrets.token_bytes(32)).decode())

    @property
    def spec(self) -> str:
        """``alg:name:secret`` for ``kdig -y`` / ``knsupdate -y``."""
        return f"{self.algorithm}:{self.name}:{self.secret}"


@dataclass(frozen=True)
class Record:
    name: str
    rdtype: str
    ttl: int
    data: str  # presentation format, e.g. '"v=spf1 -all"' for TXT


_TXT_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Answer:
    rcode: str
    authoritative: bool
    records: list[Record] = field(default_factory=list)

    @property
    def values(self) -> list[str]:
        return [record.data for record in self.records]

    @property
    def texts(self) -> list[str]:
        """TXT rdata with the character-strings unquoted and joined (as DKIM/ACME read it)."""
        return ["".join(_TXT_STRING.findall(r.data)) for r in self.records if r.rdtype == "TXT"]


def fqdn(name: str) -> str:
    return name.lower().rstrip(".") + "."


def zone_text(origin: str, *, serial: int = 1, records: Iterable[str] = ()) -> str:
    """A minimal loadable zone. SOA refresh is an hour so that within a test the secondary only
    moves on NOTIFY or ``catch_up()``, never on its own timer."""
    lines = [
        f"$ORIGIN {fqdn(origin)}",
        "$TTL 60",
        f"@ SOA ns1 hostmaster {serial} 3600 600 86400 60",
        "@ NS ns1",
        f"ns1 A {HOST}",
        *records,
    ]
    return "\n".join(lines) + "\n"


def _kdig(args: Sequence[str], timeout: float = 5) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["kdig", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DnsQueryError(f"kdig {' '.join(args)} did not return") from exc


def query(
    address: tuple[str, int],
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    key: TsigKey | None = None,
) -> Answer:
    """One non-recursive query (one retry over UDP) to ``address``."""
    host, port = address
    args = [f"@{host}", "-p", str(port), "+json", "+norec", "+timeout=1", "+retry=1"]
    if tcp:
        args.append("+tcp")
    if key is not None:
        args += ["-y", key.spec]
    result = _kdig([*args, fqdn(name), rdtype.upper()])
    try:
        message: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise DnsQueryError(
            f"no answer from {host}:{port} for {name} {rdtype}: {result.stdout}{result.stderr}"
        ) from exc
    records = [
        Record(
            name=str(rr["NAME"]),
            rdtype=str(rr["TYPEname"]),
            ttl=int(rr["TTL"]),
            data=next(
                (str(v) for k, v in rr.items() if k.startswith("rdata")), str(rr.get("RDATAHEX"))
            ),
        )
        for rr in message.get("answerRRs", [])
    ]
    rcode = int(message["RCODE"])
    return Answer(
        rcode=RCODES.get(rcode, str(rcode)), authoritative=bool(message["AA"]), records=records
    )


def update(
    address: tuple[str, int],
    zone: str,
    commands: Sequence[str],
    *,
    key: TsigKey | None,
    tcp: bool = False,
) -> str:
    """Send one RFC 2136 update made of knsupdate commands (``add name ttl type data``,
    ``del name type``, prerequisites); relative names are relative to ``zone``. Returns
    knsupdate's printout of the answer; raises DnsUpdateError unless the server said NOERROR."""
    host, port = address
    script = [f"server {host} {port}", f"zone {fqdn(zone)}", f"origin {fqdn(zone)}", "ttl 60"]
    if key is not None:  # on stdin, not argv: keeps the secret out of ps
        script.append(f"key {key.algorithm}:{key.name} {key.secret}")
    script += [*commands, "send", "answer"]
    try:
        result = subprocess.run(
            ["knsupdate", "-t", "4", "-r", "1", *(["-v"] if tcp else [])],
            input="\n".join(script) + "\n",
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DnsUpdateError("TIMEOUT", "knsupdate did not return") from exc
    output = result.stdout + result.stderr
    found = re.findall(r"status: (\w+)", output)
    status = found[-1] if found else "TIMEOUT"
    if result.returncode != 0 or status != "NOERROR":
        raise DnsUpdateError(status, output)
    return output


class KnotServer:
    """One knotd; all of its state (config, zones, journal, control socket) lives in
    ``directory``, which ``stop()`` removes."""

    role = "primary"

    def __init__(
        self, directory: Path, port: int, key: TsigKey, zones: Sequence[str], config: str
    ) -> None:
        self.directory = directory
        self.host = HOST
        self.port = port
        self.key = key
        self.zones = tuple(zones)
        self.config_path = directory / "knot.conf"
        self.config_path.write_text(config)
        self.socket = directory / "run" / "knot.sock"
        self._running: Running | None = None
        self._log: list[str] = []

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def key_name(self) -> str:
        return self.key.name

    @property
    def key_secret(self) -> str:
        return self.key.secret

    @property
    def key_algorithm(self) -> str:
        return self.key.algorithm

    def start(self) -> None:
        """Run knotd in the foreground (no ``user:`` in the config: it keeps the invoking user,
        root included, and never needs to read files as another user)."""
        process = subprocess.Popen(
            ["knotd", "-c", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self._running = Running(process)

    def log(self) -> str:
        """Everything knotd has logged so far (also after stop())."""
        if self._running is not None:
            self._log = self._running.output()
        return "\n".join(self._log)

    def alive(self) -> bool:
        return self._running is not None and self._running.process.poll() is None

    def check_alive(self) -> None:
        """Raise (with knotd's log) if knotd has exited: a bind failure is retried by callers."""
        if self.alive():
            return
        log = self.log()
        error = _PortTaken if "cannot bind" in log else KnotError
        raise error(f"knotd ({self.role}, port {self.port}) exited:\n{log}")

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``ready`` (bounded in time and count) while knotd is still running."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            self.check_alive()
            # The control socket comes after the DNS sockets: querying earlier can cost a timeout.
            with contextlib.suppress(DnsQueryError):
                if self.socket.exists() and ready():
                    return
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise KnotError(
            f"knotd ({self.role}, port {self.port}): {what} not within {timeout} s:\n{self.log()}"
        )

    def wait_loaded(self, timeout: float = START_TIMEOUT) -> None:
        def loaded() -> bool:
            if "failed to load zone" in self.log():  # e.g. a semantic error: no use waiting
                raise KnotError(f"knotd ({self.role}) could not load a zone:\n{self.log()}")
            for zone in self.zones:
                answer = self.query(zone, "SOA")
                if answer.rcode != "NOERROR" or not answer.authoritative or not answer.records:
                    return False
            return True

        self.wait_until(loaded, "zones loaded", timeout)

    def control(self, *args: str, blocking: bool = False) -> str:
        """A ``knotc`` command on this server's control socket. ``blocking`` (``-b``) waits for
        the zone event, which can cost a whole second (Knot schedules zone events in seconds):
        the helpers here poll the state they need instead."""
        command = ["knotc", "-c", str(self.config_path), "-s", str(self.socket), "-t", "5"]
        command += ["-b"] if blocking else []
        result = subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=15, check=False
        )
        if result.returncode != 0:
            raise KnotError(f"knotc {' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout

    def query(self, name: str, rdtype: str = "A", *, tcp: bool = False) -> Answer:
        return query(self.address, name, rdtype, tcp=tcp)

    def serial(self, zone: str) -> int:
        answer = self.query(zone, "SOA")
        if answer.rcode != "NOERROR" or not answer.records:
            raise DnsQueryError(f"no SOA for {zone} on {self.role}: {answer}")
        return int(answer.records[0].data.split()[2])

    def axfr(self, zone: str) -> list[Record]:
        """The whole zone over TSIG-signed AXFR (SOA first and last, as sent)."""
        server = [f"@{self.host}", "-p", str(self.port), "-y", self.key.spec]
        result = _kdig([*server, "+noall", "+answer", "+timeout=2", fqdn(zone), "AXFR"])
        records = []
        for line in result.stdout.splitlines():
            parts = line.split(None, 4)
            if len(parts) == 5 and not line.startswith(";"):
                records.append(Record(parts[0], parts[3], int(parts[1]), parts[4]))
        if not records:
            raise DnsQueryError(f"AXFR {zone} from {self.role} failed: {result.stdout}")
        return records

    def update(
        self,
        zone: str,
        commands: Sequence[str],
        *,
        signed: bool = True,
        key: TsigKey | None = None,
    ) -> str:
        """Raw RFC 2136 update (knsupdate commands), signed with this server's key, with ``key``
        instead (e.g. a wrong secret) or, with ``signed=False``, not at all."""
        signing = key if key is not None else (self.key if signed else None)
        return update(self.address, zone, commands, key=signing)

    def set_records(
        self, zone: str, name: str, rdtype: str, values: Iterable[str], ttl: int = 60
    ) -> None:
        """Replace the RRset ``name``/``rdtype`` with ``values`` (presentation format; none:
        delete it). For seeding zones with whatever records, broken ones included, a test
        needs; ``name`` is relative to ``zone`` unless it ends with a dot."""
        commands = [f"del {name} {rdtype}"]
        commands += [f"add {name} {ttl} {rdtype} {value}" for value in values]
        self.update(zone, commands)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after STOP_TIMEOUT, then remove the state directory."""
        try:
            if self._running is not None:
                self._running.stop(timeout=STOP_TIMEOUT)
                self._log = self._running.output()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class KnotSecondary(KnotServer):
    """A secondary of ``primary`` that follows it on NOTIFY unless a test holds it stale."""

    role = "secondary"

    def __init__(
        self,
        directory: Path,
        port: int,
        key: TsigKey,
        zones: Sequence[str],
        config: str,
        primary: KnotServer,
    ) -> None:
        super().__init__(directory, port, key, zones, config)
        self.primary = primary
        self.held = False

    def in_sync(self) -> bool:
        return all(self.serial(zone) == self.primary.serial(zone) for zone in self.zones)

    def hold_stale(self) -> None:
        """Freeze the zones (``knotc zone-freeze``): NOTIFYs from the primary are accepted but
        the refresh/transfer they trigger waits for the thaw, while queries are still answered
        with the old data."""
        self.control("zone-freeze", *self.zones)
        self.held = True
        self.wait_until(lambda: self.frozen() == len(self.zones), "zones frozen", SYNC_TIMEOUT)

    def frozen(self) -> int:
        """How many of the zones are frozen right now (``knotc zone-status``)."""
        status = self.control("zone-status", *self.zones)
        return sum("freeze: yes" in line for line in status.splitlines())

    def catch_up(self, timeout: float = SYNC_TIMEOUT) -> None:
        """Thaw, ask for a refresh at once (NOTIFYs are only sent a second after a change, and
        any that came while frozen are gone) and wait until every zone's serial equals the
        primary's. Also fine on a secondary that is not held."""
        self.control("zone-thaw", *self.zones)
        self.held = False
        self.control("zone-refresh", *self.zones)
        self.wait_until(self.in_sync, "serials equal to the primary's", timeout)


@dataclass
class KnotPair:
    primary: KnotServer
    secondary: KnotSecondary

    @property
    def key(self) -> TsigKey:
        return self.primary.key

    def hold_stale(self) -> None:
        self.secondary.hold_stale()

    def catch_up(self, timeout: float = SYNC_TIMEOUT) -> None:
        self.secondary.catch_up(timeout)


def _quoted(value: str | Path) -> str:
    return json.dumps(str(value))  # a YAML double-quoted scalar


def _config(
    directory: Path,
    port: int,
    key: TsigKey,
    zones: Sequence[str],
    *,
    remote_id: str,
    remote_port: int | None,
    primary: bool,
) -> str:
    """knotd's YAML config: everything under ``directory``, small LMDB maps, few threads."""
    lines = [
        "server:",
        f"    rundir: {_quoted(directory / 'run')}",
        f"    pidfile: {_quoted(directory / 'run' / 'knot.pid')}",
        f"    listen: {HOST}@{port}",
        "    udp-workers: 1",
        "    tcp-workers: 1",
        "    background-workers: 1",
        "log:",
        "  - target: stdout",
        "    any: info",
        "database:",
        f"    storage: {_quoted(directory / 'db')}",
        "    journal-db-max-size: 64M",
        "    kasp-db-max-size: 16M",
        "    timer-db-max-size: 16M",
        "    catalog-db-max-size: 16M",
        "control:",
        f"    listen: {_quoted(directory / 'run' / 'knot.sock')}",
        "key:",
        f"  - id: {key.name}",
        f"    algorithm: {key.algorithm}",
        f"    secret: {key.secret}",
    ]
    if remote_port is not None:
        lines += [
            "remote:",
            f"  - id: {remote_id}",
            f"    address: {HOST}@{remote_port}",
            f"    key: {key.name}",
        ]
    lines += [
        "acl:",
        "  - id: tsig",
        f"    address: {HOST}",
        f"    key: {key.name}",
        f"    action: {'[update, transfer]' if primary else 'notify'}",
        "template:",
        "  - id: default",
        f"    storage: {_quoted(directory / 'zones')}",
        "    acl: tsig",
    ]
    if primary:  # the zone file is rewritten after every update; the serial goes up by one
        lines += [
            "    zonefile-sync: 0",
            "    journal-content: changes",
            "    serial-policy: increment",
        ]
    else:  # transferred zones live in the journal only
        lines += ["    zonefile-sync: -1", "    zonefile-load: none", "    journal-content: all"]
    lines.append("zone:")
    for zone in zones:
        lines += [f"  - domain: {zone}", f"    file: {_quoted(_zone_file(directory, zone))}"]
        if remote_port is not None:
            lines.append(f"    {'notify' if primary else 'master'}: {remote_id}")
    return "\n".join(lines) + "\n"


def _zone_file(directory: Path, zone: str) -> Path:
    return directory / "zones" / f"{zone.rstrip('.')}.zone"


def _state_dir(role: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=f"mailfleet-knot-{role}-"))
    for sub in ("run", "db", "zones"):
        (directory / sub).mkdir()
    return directory


def _new_primary(
    zones: Mapping[str, str], key: TsigKey, port: int, secondary_port: int | None
) -> KnotServer:
    names = [fqdn(zone) for zone in zones]
    directory = _state_dir("primary")
    for zone, text in zones.items():
        _zone_file(directory, fqdn(zone)).write_text(text)
    config = _config(
        directory, port, key, names, remote_id="secondary", remote_port=secondary_port, primary=True
    )
    return KnotServer(directory, port, key, names, config)


def _new_secondary(primary: KnotServer, port: int) -> KnotSecondary:
    directory = _state_dir("secondary")
    config = _config(
        directory,
        port,
        primary.key,
        primary.zones,
        remote_id="primary",
        remote_port=primary.port,
        primary=False,
    )
    return KnotSecondary(directory, port, primary.key, primary.zones, config, primary)


def default_zones() -> dict[str, str]:
    return {"example.test.": zone_text("example.test.")}


@contextmanager
def run_knot_primary(
    zones: Mapping[str, str] | None = None, key: TsigKey | None = None
) -> Iterator[KnotServer]:
    """A primary serving ``zones`` (name → zone file text); updates and AXFR need ``key``."""
    zones = default_zones() if zones is None else zones
    key = key or TsigKey.generate()

    def start(stack: contextlib.ExitStack) -> KnotServer:
        server = _new_primary(zones, key, free_port(), None)
        stack.callback(server.stop)
        server.start()
        server.wait_loaded()
        return server

    with started_on_fresh_ports(start, _PortTaken, START_ATTEMPTS) as server:
        yield server


@contextmanager
def run_knot_pair(
    zones: Mapping[str, str] | None = None, key: TsigKey | None = None
) -> Iterator[KnotPair]:
    """A primary and a secondary that has transferred every zone (serials equal) before the
    body runs; the primary NOTIFYs the secondary after each change."""
    zones = default_zones() if zones is None else zones
    key = key or TsigKey.generate()

    def start(stack: contextlib.ExitStack) -> KnotPair:
        secondary_port = free_port()
        primary = _new_primary(zones, key, free_port(), secondary_port)
        stack.callback(primary.stop)
        primary.start()
        primary.wait_loaded()
        secondary = _new_secondary(primary, secondary_port)
        stack.callback(secondary.stop)  # stopped first: the stack unwinds in reverse
        secondary.start()
        secondary.wait_until(secondary.in_sync, "initial transfer", START_TIMEOUT)
        return KnotPair(primary, secondary)

    with started_on_fresh_ports(start, _PortTaken, START_ATTEMPTS) as pair:
        yield pair


@pytest.fixture
def knot_zones() -> dict[str, str]:
    """Zones the Knot fixtures serve; override this fixture in a test module for others."""
    return default_zones()


@pytest.fixture
def knot_primary(knot_zones: dict[str, str]) -> Iterator[KnotServer]:
    with run_knot_primary(knot_zones) as server:
        yield server


@pytest.fixture
def knot_pair(knot_zones: dict[str, str]) -> Iterator[KnotPair]:
    with run_knot_pair(knot_zones) as pair:
        yield pair
