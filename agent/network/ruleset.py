"""The desired outbound-mail state and the nftables transaction that puts it in the kernel.

Everything lives in one table, ``ip mailfleet``; no other table is read or touched. One
``nft -f`` transaction replaces its chains whole, so a change is atomic: packets see the old
rules or the new ones, never a mix, and a failed transaction changes nothing.

Why it is shaped like this:

- **SNAT** is a nat chain at postrouting, priority ``srcnat - 10``: before Docker's
  masquerade (``srcnat``), so mail that MailU's containers send is translated by ours, and the
  first nat rule to bind a connection wins.
- **Limits** must see the address mail leaves from, but a refusal must be a TCP reset (Postfix
  then defers at once and keeps the mail queued); ``reject`` is only allowed in the input,
  forward and output hooks, before SNAT has happened. So the address is decided when
  rendering: with SNAT every tcp/25 connection leaves from ``to_ip``; without it, a
  connection made on the VPS leaves from its own source (``ip saddr``) and one forwarded from
  a container leaves from the kernel's default source (where Docker masquerades it to).
- **Caps** are counted by the kernel: every admitted new tcp/25 connection adds its conntrack
  id to a per-address, per-day set whose ``size`` is the cap; when the set is full the add
  fails and the next rule resets the connection. A retransmitted SYN has the same id, so it
  is never counted twice, and ``used`` is the set's element count.
- The day's sets are **kept** across re-applies (same name, same size): pausing, resuming or
  re-pushing the same limits loses no count. A set is re-created only on a new day (empty,
  which is the reset) or when the cap changes during the day — then with its elements copied
  in, so connections admitted between reading them and the transaction (a few milliseconds)
  are the only ones that can be missed.
- A reboot empties the kernel: the agent saves the day's counts when it stops and puts them
  back as placeholders when it re-applies (a crash loses what was counted since the last
  stop; the control plane's message counts are the other guard).
- IPv4 only (``ip`` family), as the addresses in the contract are; Docker's networks, where
  MailU's Postfix sends from, are IPv4 unless set up otherwise.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

TABLE = "mailfleet"
FAMILY = "ip"
SMTP_PORT = 25
# An address without a cap is still counted (``used``), up to this many connections a day;
# past it counting stops, never the mail.
UNCAPPED_SIZE = 1 << 20
MAX_CAP = 10_000_000
RESET = "reject with tcp reset"


@dataclass(frozen=True)
class Snat:
    """All tcp to ``ports`` leaves from ``to_ip``; ``None`` = the kernel's default source."""

    to_ip: str | None = None
    ports: tuple[int, ...] = (SMTP_PORT,)


@dataclass(frozen=True)
class Limit:
    """One source address: ``cap`` new tcp/25 connections a day (``None``: no cap)."""

    cap: int | None = None
    paused: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Limits:
    day: date
    by_ip: Mapping[str, Limit] = field(default_factory=dict)


@dataclass(frozen=True)
class Desired:
    snat: Snat = field(default_factory=Snat)
    limits: Limits | None = None


@dataclass(frozen=True)
class LiveSet:
    size: int | None
    elements: tuple[int, ...] = ()


@dataclass(frozen=True)
class Live:
    """What the kernel holds in our table (read with ``nft -j list table``)."""

    chains: tuple[str, ...] = ()
    sets: Mapping[str, LiveSet] = field(default_factory=dict)
    snat_to: str | None = None
    snat_ports: tuple[int, ...] = ()


def set_name(day: date, address: str) -> str:
    """The counting set of ``address`` on ``day``: the day in the name makes a new day a new,
    empty set, and lets a restarted agent find today's count."""
    return f"d{day:%Y%m%d}_{address.replace('.', '_')}"


def used(live: Live | None, day: date, address: str) -> int:
    found = live.sets.get(set_name(day, address)) if live else None
    return len(found.elements) if found else 0


def _size(limit: Limit, count: int) -> int:
    if limit.cap is None:
        return UNCAPPED_SIZE
    return max(limit.cap, count, 1)  # size 0 would mean "no limit" to nftables


def _source_rules(limit: Limit, counter: str) -> list[str]:
    if limit.paused or limit.cap == 0:
        return [RESET]
    if limit.cap is None:
        return [f"add @{counter} {{ ct id }}"]  # counted; a full set only stops counting
    return [f"add @{counter} {{ ct id }} accept", RESET]


def _limit_rules(desired: Desired, default_source: str | None) -> tuple[list[str], list[str]]:
    """Rules of the local (output) and forwarded chains, each for the address it leaves from."""
    limits = desired.limits
    if limits is None:
        return [], []

    def rules(address: str | None, match: str = "") -> list[str]:
        if address is None or address not in limits.by_ip:
            return []
        counter = set_name(limits.day, address)
        return [match + rule for rule in _source_rules(limits.by_ip[address], counter)]

    if desired.snat.to_ip is not None:
        both = rules(desired.snat.to_ip)
        return both, list(both)
    local = [r for address in sorted(limits.by_ip) for r in rules(address, f"ip saddr {address} ")]
    return local, rules(default_source)


def _sets(
    desired: Desired, existing: Live, restored: Mapping[str, int]
) -> tuple[list[str], list[str]]:
    """The counting sets: what to delete first, and the definitions. Today's set of an
    address is kept when its size is right; re-created with its elements when the cap
    changed; every other set of ours (past days, addresses no longer listed) is deleted.
    A set the kernel lost (a reboot) starts from its ``restored`` count: that many
    placeholder ids, so the day's allowance is not given twice."""
    deletes: list[str] = []
    definitions: list[str] = []
    limits = desired.limits or Limits(date.min)
    wanted = {set_name(limits.day, a) for a in limits.by_ip}
    for address in sorted(limits.by_ip):
        name = set_name(limits.day, address)
        found = existing.sets.get(name)
        carried = found.elements if found else tuple(range(1, restored.get(name, 0) + 1))
        size = _size(limits.by_ip[address], len(carried))
        if found is not None and found.size == size:
            carried = ()  # kept as it is, count and all
        elif found is not None:
            deletes.append(name)
        elements = f"\t\telements = {{ {', '.join(map(str, carried))} }}\n" if carried else ""
        definitions.append(
            f"\tset {name} {{\n\t\ttypeof ct id\n\t\tsize {size}\n\t\tflags dynamic\n{elements}\t}}"
        )
    deletes += [name for name in sorted(existing.sets) if name not in wanted]
    return [f"delete set {FAMILY} {TABLE} {name}" for name in deletes], definitions


def render(
    desired: Desired,
    live: Live | None,
    default_source: str | None = None,
    restored: Mapping[str, int] | None = None,
) -> str:
    """The whole ``nft -f`` transaction taking the kernel from ``live`` to ``desired``:
    chains are stateless, so all of ours are deleted and defined again; sets hold the
    day's counts, so they are kept where they can be (see ``_sets``). Chains are emptied one
    by one (``flush chain``) before they go, so no jump holds one; never ``flush table``,
    which nft versions do not agree on for sets' elements."""
    existing = live or Live()
    deletes, sets = _sets(desired, existing, restored or {})
    lines = [
        f"table {FAMILY} {TABLE} {{}}",
        *(f"flush chain {FAMILY} {TABLE} {chain}" for chain in existing.chains),
        *(f"delete chain {FAMILY} {TABLE} {chain}" for chain in existing.chains),
        *deletes,
    ]
    local, forwarded = _limit_rules(desired, default_source)
    snat = desired.snat
    nat = (
        [f"tcp dport {{ {', '.join(map(str, snat.ports))} }} snat ip to {snat.to_ip}"]
        if snat.to_ip
        else []
    )
    chains = [
        _chain("snat_out", "type nat hook postrouting priority srcnat - 10; policy accept;", nat),
        _chain(
            "filter_output",
            "type filter hook output priority filter; policy accept;",
            [f"tcp dport {SMTP_PORT} ct state new jump smtp_local"],
        ),
        _chain(
            "filter_forward",
            "type filter hook forward priority filter; policy accept;",
            [f"tcp dport {SMTP_PORT} ct state new jump smtp_forwarded"],
        ),
        _chain("smtp_local", None, local),
        _chain("smtp_forwarded", None, forwarded),
    ]
    body = "\n".join([*sets, *chains])
    return "\n".join(lines) + f"\ntable {FAMILY} {TABLE} {{\n{body}\n}}\n"


def _chain(name: str, hook: str | None, rules: Sequence[str]) -> str:
    inner = ([hook] if hook else []) + list(rules)
    return f"\tchain {name} {{\n" + "".join(f"\t\t{line}\n" for line in inner) + "\t}"


def parse(listing: str) -> Live:
    """Our table as ``nft -j list table ip mailfleet`` prints it."""
    chains: list[str] = []
    sets: dict[str, LiveSet] = {}
    snat_to: str | None = None
    snat_ports: tuple[int, ...] = ()
    for item in json.loads(listing).get("nftables", []):
        if "chain" in item:
            chains.append(str(item["chain"]["name"]))
        elif "set" in item:
            found = item["set"]
            elements = tuple(int(e) for e in found.get("elem", []) if isinstance(e, int))
            sets[str(found["name"])] = LiveSet(found.get("size"), elements)
        elif "rule" in item and item["rule"].get("chain") == "snat_out":
            for expr in item["rule"].get("expr", []):
                if "snat" in expr:
                    snat_to = str(expr["snat"]["addr"])
                elif "match" in expr and _is_dport(expr["match"].get("left")):
                    snat_ports = _ports(expr["match"].get("right"))
    return Live(tuple(chains), sets, snat_to, snat_ports)


def _is_dport(left: object) -> bool:
    return isinstance(left, dict) and left.get("payload", {}).get("field") == "dport"


def _ports(right: object) -> tuple[int, ...]:
    if isinstance(right, int):
        return (right,)
    if isinstance(right, dict) and isinstance(right.get("set"), list):
        return tuple(sorted(p for p in right["set"] if isinstance(p, int)))
    return ()


def is_ipv4(value: object) -> bool:
    """A dotted-quad IPv4 address as Python writes it: the only text that goes into the rules
    from a payload, so nothing else can reach nft's parser."""
    if not isinstance(value, str):
        return False
    try:
        return str(ipaddress.IPv4Address(value)) == value
    except ValueError:
        return False
