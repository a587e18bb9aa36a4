"""iproute2 plumbing for the ``local`` provider: bridge, network namespaces, veth pairs.

Everything goes through the ``ip`` command rather than netlink bindings: iproute2 is on every
Linux host, its behaviour is what an operator types to inspect the result (``ip netns list``,
``ip -n mf-… addr``), and it keeps MailFleet free of a native dependency used by one driver.
Output is read in JSON (``ip -j``) so no human-oriented text is parsed.

Every command has a timeout and a failure carries the command line and ``ip``'s stderr,
because "RTNETLINK answers: File exists" means nothing without knowing what was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import shlex
from dataclasses import dataclass
from typing import Any

from control_plane.provisioning.providers.base import ProviderError


@dataclass(frozen=True)
class CommandResult:
    """What one finished command printed and returned."""

    returncode: int
    stdout: str
    stderr: str


class IpRoute:
    """The ``ip`` commands the local provider needs, each one bounded by ``timeout`` seconds."""

    def __init__(self, binary: str = "ip", timeout: float = 10.0) -> None:
        self.binary = binary
        self.timeout = timeout

    async def run(self, *args: str, check: bool = True) -> CommandResult:
        """Run ``ip <args>``; a non-zero exit raises ``ProviderError`` with its stderr.

        A command still running at the timeout is killed: a hung netlink call must not hold
        the provider's lock (and every workflow behind it) forever. Timeouts are retryable,
        refusals are not.
        """
        argv = [self.binary, *args]
        line = shlex.join(argv)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ProviderError(f"cannot run `{line}`: {exc}") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError:
            await _kill(process)
            raise ProviderError(
                f"`{line}` did not finish within {self.timeout:g}s", retryable=True
            ) from None
        except BaseException:
            await _kill(process)
            raise
        result = CommandResult(
            process.returncode if process.returncode is not None else -1,
            out.decode(errors="replace"),
            err.decode(errors="replace").strip(),
        )
        if check and result.returncode != 0:
            detail = result.stderr or result.stdout.strip() or "no output"
            raise ProviderError(f"`{line}` failed (exit {result.returncode}): {detail}")
        return result

    async def json(self, *args: str) -> Any:
        """``ip -j <args>`` parsed; empty output (nothing matched) is an empty list."""
        result = await self.run("-j", *args)
        text = result.stdout.strip()
        if not text:
            return []
        try:
            return json.loads(text)
        except ValueError:
            raise ProviderError(f"`ip -j {shlex.join(args)}` printed something not JSON") from None

    # -- namespaces ------------------------------------------------------------------------

    async def namespaces(self) -> set[str]:
        entries = await self.json("netns", "list")
        return {str(entry["name"]) for entry in entries if isinstance(entry, dict)}

    async def add_namespace(self, namespace: str) -> None:
        await self.run("netns", "add", namespace)

    async def delete_namespace(self, namespace: str) -> None:
        """Delete the namespace if it exists (its veth end goes with it)."""
        if namespace in await self.namespaces():
            await self.run("netns", "delete", namespace)

    async def namespace_pids(self, namespace: str) -> set[int]:
        """Every process whose network namespace is ``namespace`` (none if it does not exist)."""
        if namespace not in await self.namespaces():
            return set()
        result = await self.run("netns", "pids", namespace)
        return {int(token) for token in result.stdout.split() if token.isdigit()}

    # -- links -----------------------------------------------------------------------------

    async def link_exists(self, name: str, namespace: str | None = None) -> bool:
        result = await self.run(*_in(namespace), "-j", "link", "show", "dev", name, check=False)
        return result.returncode == 0

    async def links(self) -> set[str]:
        """Names of the links in the host namespace."""
        return {str(entry["ifname"]) for entry in await self.json("link", "show")}

    async def bridge_ports(self, bridge: str) -> set[str]:
        if not await self.link_exists(bridge):
            return set()
        return {str(entry["ifname"]) for entry in await self.json("link", "show", "master", bridge)}

    async def delete_link(self, name: str) -> None:
        """Delete a host link if it exists; one that vanishes meanwhile counts as deleted.

        Links can disappear on their own (a veth whose namespace is being destroyed goes
        with it, asynchronously), so "Cannot find device" after the check is success.
        """
        if not await self.link_exists(name):
            return
        result = await self.run("link", "delete", "dev", name, check=False)
        if result.returncode != 0 and await self.link_exists(name):
            raise ProviderError(f"`ip link delete dev {name}` failed: {result.stderr}")

    async def ensure_bridge(self, bridge: str, address: ipaddress.IPv4Interface) -> None:
        """Create the bridge with its fixed MAC and host address (idempotent), bring it up.

        Only the bridge and its address are touched: no forwarding, no NAT. The namespaces
        reach each other over the bridge and the host through its address, nothing more.
        A bridge left to itself takes the lowest MAC among its ports, so removing one VPS
        would change the gateway's MAC under every other VPS (their cached neighbour entry
        goes stale and their connections to the host stall until it expires): an address
        set by hand stays.
        """
        if not await self.link_exists(bridge):
            await self.run("link", "add", "name", bridge, "type", "bridge")
        await self.run("link", "set", "dev", bridge, "address", bridge_mac(bridge))
        await self.run("addr", "replace", str(address), "dev", bridge)
        await self.run("link", "set", "dev", bridge, "up")

    async def add_veth(self, host_side: str, namespace: str, bridge: str) -> None:
        """A veth pair: ``host_side`` on the bridge, ``eth0`` already inside ``namespace``.

        Creating the peer directly in the namespace under its final name avoids a temporary
        name in the host namespace that could collide with another VPS being built.
        """
        await self.run(
            "link", "add", "name", host_side, "type", "veth",
            "peer", "name", "eth0", "netns", namespace,
        )  # fmt: skip
        await self.run("link", "set", "dev", host_side, "master", bridge, "up")

    # -- addresses, routes, neighbours -----------------------------------------------------

    async def configure_guest(
        self,
        namespace: str,
        addresses: list[ipaddress.IPv4Interface],
        gateway: ipaddress.IPv4Address,
    ) -> None:
        """``lo`` up, the addresses on ``eth0``, ``eth0`` up, default route via ``gateway``."""
        await self.run("-n", namespace, "link", "set", "dev", "lo", "up")
        for address in addresses:
            await self.run("-n", namespace, "addr", "replace", str(address), "dev", "eth0")
        await self.run("-n", namespace, "link", "set", "dev", "eth0", "up")
        await self.run("-n", namespace, "route", "replace", "default", "via", str(gateway))

    async def add_address(self, namespace: str, address: ipaddress.IPv4Interface) -> None:
        await self.run("-n", namespace, "addr", "replace", str(address), "dev", "eth0")

    async def delete_address(self, namespace: str, address: ipaddress.IPv4Interface) -> None:
        """Remove the address from ``eth0``; one that is not there counts as removed."""
        present = {str(a.ip) for a in await self.addresses(namespace, "eth0")}
        if str(address.ip) in present:
            await self.run("-n", namespace, "addr", "delete", str(address), "dev", "eth0")

    async def addresses(
        self, namespace: str | None = None, device: str | None = None
    ) -> list[ipaddress.IPv4Interface]:
        """IPv4 addresses in a namespace (or the host), optionally on one device."""
        args = [*_in(namespace), "-4", "addr", "show"]
        if device is not None:
            args += ["dev", device]
        found: list[ipaddress.IPv4Interface] = []
        for link in await self.json(*args):
            for info in link.get("addr_info", []):
                if info.get("family") == "inet":
                    found.append(ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}"))
        return found

    async def flush_neighbour(self, address: ipaddress.IPv4Address, namespace: str | None) -> None:
        """Forget the MAC cached for ``address``, so a reused address is found at its new home.

        Without this the host (or another VPS) keeps sending to the old veth's MAC for up to
        a minute after the address moves to a new namespace.
        """
        await self.run(*_in(namespace), "neigh", "flush", "to", str(address), check=False)


def bridge_mac(bridge: str) -> str:
    """A MAC for ``bridge``: the same for the same name, locally administered, unicast.

    Derived from the name so every control plane on the host (and every restart) agrees,
    and two bridges with different names do not collide.
    """
    digest = hashlib.sha256(f"mailfleet bridge {bridge}".encode()).digest()
    octets = bytes([0x02, *digest[:5]])  # 0x02: locally administered (bit 1), unicast (bit 0)
    return ":".join(f"{octet:02x}" for octet in octets)


def _in(namespace: str | None) -> list[str]:
    return ["-n", namespace] if namespace is not None else []


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
