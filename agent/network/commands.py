"""``network.snat.set|show`` and ``network.limits.set|show``: the control plane's wishes for
outbound mail, applied with one nftables transaction and kept on disk for the next boot.

A command's state change is: read our table, render, apply (atomic), then save the desired
state. If nft refuses, the kernel and the file are as they were. Commands are serialised:
each one reads what the previous one applied.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from agent.errors import CommandError
from agent.network import state
from agent.network.nft import Nft
from agent.network.ruleset import (
    MAX_CAP,
    SMTP_PORT,
    Desired,
    Limit,
    Limits,
    Live,
    Snat,
    is_ipv4,
    render,
    set_name,
    used,
)

log = logging.getLogger(__name__)
Progress = Callable[[int, str], None]
Handler = Callable[[dict[str, Any], Progress], Awaitable[dict[str, Any]]]
# Any address outside the machine: where the kernel would send it from is "the default source".
_ROUTE_PROBE = ("192.0.2.1", SMTP_PORT)


def machine_addresses() -> list[str]:
    """Every IPv4 address on this machine's interfaces (loopback aside), sorted."""
    import psutil  # type: ignore[import-untyped, unused-ignore]  # here: the daemon idles without

    found = {
        entry.address
        for entries in psutil.net_if_addrs().values()
        for entry in entries
        if entry.family == socket.AF_INET and not entry.address.startswith("127.")
    }
    return sorted(found, key=lambda a: tuple(int(p) for p in a.split(".")))


def default_source() -> str | None:
    """The source the kernel picks for an outside destination (a route lookup, nothing sent):
    where mail forwarded from a container leaves from when there is no SNAT."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_ROUTE_PROBE)
        except OSError as exc:
            if exc.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                log.warning("no default source address: %s", exc)
            return None
        return str(probe.getsockname()[0])


def parse_snat(payload: dict[str, Any]) -> Snat:
    to_ip = payload.get("to_ip")
    if to_ip is not None and not is_ipv4(to_ip):
        raise CommandError("payload.to_ip must be an IPv4 address or null")
    ports = payload.get("ports", [SMTP_PORT])
    if not isinstance(ports, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports
    ):
        raise CommandError("payload.ports must be a list of port numbers (1-65535)")
    if len(ports) > 64:
        raise CommandError("payload.ports: at most 64 ports")
    return Snat(to_ip, tuple(sorted({SMTP_PORT, *ports})))


def parse_limits(payload: dict[str, Any]) -> Limits:
    raw_day = payload.get("day")
    try:
        day = date.fromisoformat(raw_day) if isinstance(raw_day, str) else None
    except ValueError:
        day = None
    if day is None:
        raise CommandError("payload.day must be a date (YYYY-MM-DD)")
    raw = payload.get("limits")
    if not isinstance(raw, dict):
        raise CommandError("payload.limits must be an object keyed by IPv4 address")
    by_ip: dict[str, Limit] = {}
    for address, item in raw.items():
        where = f"payload.limits[{address!r}]"
        if not is_ipv4(address):
            raise CommandError(f"{where}: the key must be an IPv4 address")
        if not isinstance(item, dict):
            raise CommandError(f"{where} must be an object")
        cap, paused = item.get("cap"), item.get("paused", False)
        reason = "" if item.get("reason") is None else item["reason"]
        if cap is not None and (
            not isinstance(cap, int) or isinstance(cap, bool) or not 0 <= cap <= MAX_CAP
        ):
            raise CommandError(f"{where}.cap must be null or a whole number 0-{MAX_CAP}")
        if not isinstance(paused, bool):
            raise CommandError(f"{where}.paused must be true or false")
        if not isinstance(reason, str) or len(reason) > 500:
            raise CommandError(f"{where}.reason must be a string of at most 500 characters")
        by_ip[address] = Limit(cap, paused, reason)
    return Limits(day, by_ip)


class Network:
    """The four commands and the start-up re-apply, over one state file and one nft."""

    def __init__(self, state_path: Path, nft: Nft | None = None) -> None:
        self.state_path = state_path
        self.nft = nft or Nft()
        self._lock = asyncio.Lock()

    def handlers(self) -> dict[str, Handler]:
        return {
            "network.snat.set": self.snat_set,
            "network.snat.show": self.snat_show,
            "network.limits.set": self.limits_set,
            "network.limits.show": self.limits_show,
        }

    def _desired(self) -> Desired:
        return state.load(self.state_path) or Desired()

    async def _apply(self, desired: Desired, restored: dict[str, int] | None = None) -> Live | None:
        """Make the kernel match ``desired`` in one transaction; give what it then holds."""
        live = await self.nft.table()
        source = await asyncio.to_thread(default_source)
        await self.nft.apply(render(desired, live, source, restored))
        return await self.nft.table()

    async def snat_set(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        snat = parse_snat(payload)
        async with self._lock:
            if snat.to_ip is not None:
                addresses = await asyncio.to_thread(machine_addresses)
                if snat.to_ip not in addresses:
                    raise CommandError(
                        f"{snat.to_ip} is not an address of this machine "
                        f"(it has {', '.join(addresses) or 'none'})"
                    )
            desired = self._desired()
            progress(20, f"outbound tcp to ports {list(snat.ports)} from {snat.to_ip or 'default'}")
            await self._apply(replace(desired, snat=snat))
            state.save(self.state_path, replace(desired, snat=snat))
        return {"to_ip": snat.to_ip, "previous": desired.snat.to_ip, "ports": list(snat.ports)}

    async def snat_show(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """What the kernel does now (not only what was asked), and the addresses to choose from."""
        live = await self.nft.table()
        if live is not None and live.snat_to is not None:
            to_ip, ports = live.snat_to, live.snat_ports
        else:
            to_ip, ports = None, self._desired().snat.ports
        addresses = await asyncio.to_thread(machine_addresses)
        return {"to_ip": to_ip, "ports": list(ports), "addresses": addresses}

    async def limits_set(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        limits = parse_limits(payload)
        async with self._lock:
            desired = self._desired()
            if desired.limits is not None and limits.day < desired.limits.day:
                raise CommandError(
                    f"payload.day {limits.day} is before the day in force "
                    f"({desired.limits.day}): a stale command would reset today's counts"
                )
            progress(20, f"limits for {limits.day}: {len(limits.by_ip)} address(es)")
            live = await self._apply(replace(desired, limits=limits))
            state.save(self.state_path, replace(desired, limits=limits))
        return self._limits_result(limits, live)

    async def limits_show(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        limits = self._desired().limits
        return self._limits_result(limits, await self.nft.table() if limits else None)

    @staticmethod
    def _limits_result(limits: Limits | None, live: Live | None) -> dict[str, Any]:
        if limits is None:
            return {"day": None, "ips": {}}
        return {
            "day": limits.day.isoformat(),
            "ips": {
                address: {
                    "cap": limit.cap,
                    "used": used(live, limits.day, address),
                    "paused": limit.paused,
                }
                for address, limit in sorted(limits.by_ip.items())
            },
        }

    async def reapply(self) -> bool:
        """Put the saved state back (at agent start: a reboot emptied the ruleset). Today's
        counts survive an agent restart (the sets are still there), and a reboot as they were
        saved at the last stop. A SNAT address no longer on the machine is left out, so mail
        leaves from the default one."""
        async with self._lock:
            desired = state.load(self.state_path)
            if desired is None:
                return False
            to_ip = desired.snat.to_ip
            if to_ip is not None and to_ip not in await asyncio.to_thread(machine_addresses):
                log.error("SNAT address %s is not on this machine: mail leaves by default", to_ip)
                desired = replace(desired, snat=replace(desired.snat, to_ip=None))
            await self._apply(desired, state.load_counts(self.counts_path))
            return True

    @property
    def counts_path(self) -> Path:
        return self.state_path.with_name(state.COUNTS_NAME)

    async def save_counts(self) -> None:
        """The day's counts as the kernel has them, for ``reapply`` after a reboot."""
        async with self._lock:
            limits = self._desired().limits
            if limits is None:
                return
            live = await self.nft.table()
            names = {set_name(limits.day, a) for a in limits.by_ip}
            counts = {
                n: len(s.elements) for n, s in (live.sets if live else {}).items() if n in names
            }
            if counts:  # nothing in the kernel (a failed start): keep what was saved
                state.save_counts(self.counts_path, counts)


async def reapply_at_start(network: Network) -> None:
    """The agent's start-up step: a failure is logged, never keeps the agent from starting."""
    try:
        if await network.reapply():
            log.info("network state re-applied from %s", network.state_path)
    except CommandError as exc:
        log.error("could not re-apply the network state: %s", exc)
    except Exception:  # the agent must come up to be told what to do
        log.exception("could not re-apply the network state")


async def save_counts_at_stop(network: Network) -> None:
    """The agent's last step: a failure is logged (the next start re-applies without it)."""
    try:
        await network.save_counts()
    except Exception as exc:  # stopping goes on whatever happens here
        log.warning("could not save the day's connection counts: %s", exc)
