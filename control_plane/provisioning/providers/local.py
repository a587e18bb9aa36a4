"""The ``local`` provider: a "VPS" is a Linux network namespace on the control plane's host.

It lets MailFleet provision, enroll and operate servers end to end on one machine (tests,
demos, development) through the same ``Provider`` interface as a real cloud, with real
addresses, real routing and real processes.

Layout on the host::

    host ── mfbr0 (bridge, 198.18.0.1/15) ─┬─ mfv<id> ══ eth0 in netns mf-<id> (198.18.1.x/15)
                                           └─ mfv<id> ══ eth0 in netns mf-<id> …

- Addresses come from 198.18.0.0/15, the block RFC 2544 reserves for benchmarking: it is
  never routed on the internet, so a VPS address can never shadow a host the machine
  really talks to. The bridge address is the VPS's default gateway; IPv4 forwarding and
  NAT are never enabled, so a VPS reaches the host and the other VPSs, and nothing else.
- Each VPS has a state directory ``<state_dir>/<id>/``: ``instance.json`` (see
  ``local_state``), ``user-data``, ``boot.log``, ``boot.status`` once the boot ended, and
  ``rootfs/`` where ``write_files`` land (see ``local_boot`` for the cloud-init subset and
  why files are re-rooted). ``state_dir`` is made absolute when the provider is built: the
  boot runs in the VPS's own root directory, where a relative path means something else.
- Each VPS has a cgroup sized from its plan (see ``local_cgroup``); its path goes into the
  VPS's agent.toml as ``vps_cgroup``, and the boot joins it before it starts anything.
- The boot enters only the VPS's network namespace (``nsenter --net``), not a mount
  namespace of its own as ``ip netns exec`` would make: that one hides ``/sys/fs/cgroup``,
  which the agent reads its cgroup from.
- Boot modes: ``cloud-init`` (default) runs the user data (``local_boot``); ``ssh`` runs a
  real ``sshd`` on the VPS's address instead, for MailFleet's install over SSH
  (``local_sshd``), and takes no user data.
- A boot that exits with an error (or is killed) before its agent enrolled is reported by
  ``boot_failure`` with the end of its ``boot.log``, so provisioning fails at once.
- Allocation (ids, addresses) is derived from those records plus the host's own addresses,
  under a file lock, so it survives control-plane restarts and works across replicas.

After ``terminate`` nothing of the VPS is left: no process, namespace, veth, neighbour
entry or file. The record is deleted with the rest, so afterwards ``get`` raises
``ProviderNotFound`` as the interface says ("once it is gone"); while a terminate is under
way (or if one failed half-way) the instance reports ``terminated``. ``teardown`` removes
the bridge once no VPS remains.

Everything here needs root and iproute2; without them every call raises one clear
``ProviderError``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ipaddress
import json
import logging
import os
import posixpath
import re
import secrets
import shutil
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from control_plane.provisioning.bootstrap import AGENT_CONFIG_PATH
from control_plane.provisioning.providers import local_boot as boot
from control_plane.provisioning.providers import local_docker, local_sshd
from control_plane.provisioning.providers import local_proc as proc
from control_plane.provisioning.providers.base import (
    Instance,
    InstanceStatus,
    IssuedKeys,
    Plan,
    Provider,
    ProviderError,
    ProviderNotFound,
    Region,
)
from control_plane.provisioning.providers.local_cgroup import Cgroups
from control_plane.provisioning.providers.local_net import IpRoute
from control_plane.provisioning.providers.local_state import InstanceStore, Limits, LocalRecord

log = logging.getLogger(__name__)

BENCHMARK_NET = ipaddress.IPv4Network("198.18.0.0/15")
REGION = Region("local", "This machine (network namespaces)")
PLANS = (
    Plan("local-small", "Local small", 1, 1024, 10, Decimal("0"), "USD"),
    Plan("local-medium", "Local medium", 2, 2048, 20, Decimal("0"), "USD"),
    Plan("local-large", "Local large", 4, 4096, 40, Decimal("0"), "USD"),
)
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,5}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I)
_NEED = (
    "the local provider needs root and iproute2 (`ip` with network namespace support), "
    "nsenter, and cgroups with the memory and cpu controllers"
)
NETNS_DIR = Path("/var/run/netns")  # where `ip netns add` puts a namespace's handle


@dataclass(frozen=True)
class LocalSettings:
    """Where the local provider keeps state and which names and addresses it uses.

    ``prefix`` names everything it creates — namespaces ``<prefix>-<id>``, host-side veths
    ``<prefix>v<id>`` — so several providers (or test runs) can share a host; it is at most
    6 characters so a veth name stays within Linux's 15-character limit. ``pools`` are the
    networks VPS addresses are taken from, lowest first; they must lie inside the bridge's
    network, itself inside 198.18.0.0/15.
    """

    state_dir: Path = field(default_factory=lambda: Path("var") / "local-provider")
    bridge: str = "mfbr0"
    bridge_address: str = "198.18.0.1/15"
    pools: tuple[str, ...] = ("198.18.1.0/24",)
    prefix: str = "mf"
    ip_binary: str = "ip"
    nsenter_binary: str = "nsenter"
    cgroup_parent: str = "mailfleet-local"  # VPS cgroups are /<cgroup_parent>/<namespace>
    command_timeout: float = 10.0  # seconds, per `ip` command
    kill_grace: float = 3.0  # seconds between SIGTERM and SIGKILL
    lock_timeout: float = 60.0  # seconds to wait for another create/terminate to finish
    extra_path: tuple[str, ...] = ()  # directories put first on the VPS's PATH
    prices: tuple[tuple[str, Decimal], ...] = ()  # (plan id, monthly price); others cost 0
    boot: str = "cloud-init"  # or "ssh": the VPS's boot is an sshd (see local_sshd)
    sshd_binary: str = "/usr/sbin/sshd"
    docker: bool = False  # each VPS runs its own dockerd (local_docker), where one exists
    docker_images: Path | None = None  # a `docker save` archive loaded into each VPS's engine
    docker_timeout: float = 30.0  # seconds for a VPS's dockerd to answer


class LocalProvider:
    """The ``Provider`` interface over network namespaces on this host (see the module doc)."""

    name = "local"

    def __init__(self, settings: LocalSettings | None = None) -> None:
        s = settings or LocalSettings()
        # Resolved once, here: the boot runs with the VPS's root as its working directory,
        # and the control plane's own working directory may change later.
        s = self.settings = replace(s, state_dir=s.state_dir.resolve())
        if not _IFNAME.match(s.bridge):
            raise ValueError(f"bridge name {s.bridge!r} is not a valid interface name")
        if not _PREFIX.match(s.prefix):
            raise ValueError(f"prefix {s.prefix!r}: 1-6 lowercase letters/digits, letter first")
        if s.boot not in ("cloud-init", "ssh"):
            raise ValueError(f"boot mode {s.boot!r} is neither 'cloud-init' nor 'ssh'")
        self.gateway = ipaddress.IPv4Interface(s.bridge_address)
        network = self.gateway.network
        if not network.subnet_of(BENCHMARK_NET):
            raise ValueError(f"bridge network {network} is not inside {BENCHMARK_NET}")
        if self.gateway.ip in (network.network_address, network.broadcast_address):
            raise ValueError(f"bridge address {self.gateway} is not a host address")
        self.pools = tuple(ipaddress.IPv4Network(pool) for pool in s.pools)
        if not self.pools:
            raise ValueError("at least one address pool is required")
        for pool in self.pools:
            if not pool.subnet_of(network):
                raise ValueError(f"address pool {pool} is not inside the bridge network {network}")
        self._ip = IpRoute(s.ip_binary, s.command_timeout)
        self._store = InstanceStore(s.state_dir, s.lock_timeout)
        self._cgroups = Cgroups(s.cgroup_parent)
        self._lock = asyncio.Lock()
        self._host_ok = False

    def __repr__(self) -> str:
        return f"LocalProvider(state_dir={str(self.settings.state_dir)!r})"

    # -- the interface -------------------------------------------------------------------

    async def regions(self) -> tuple[Region, ...]:
        await self._require_host()
        return (REGION,)

    async def plans(self) -> tuple[Plan, ...]:
        await self._require_host()
        prices = dict(self.settings.prices)
        return tuple(replace(p, monthly_price=prices.get(p.id, p.monthly_price)) for p in PLANS)

    async def create(
        self,
        name: str,
        region: str,
        plan: str,
        user_data: str,
        ssh_public_key: str,
        issued_keys: IssuedKeys | None = None,  # unused: the local provider takes our key
    ) -> Instance:
        """Build the VPS and start its boot; returns it ``running``.

        Everything is checked before anything is built, and a failure while building
        removes what was built: nothing is left half-made. A record left ``creating`` by a
        crash is rebuilt from scratch by the next ``create`` with the same name.
        """
        await self._require_host()
        if not name.strip():
            raise ValueError("an instance name is required")
        if not ssh_public_key.strip():
            raise ValueError("an SSH public key is required")
        _region(region)
        limits = _limits(plan)
        plan_of_boot = boot.parse_user_data(user_data)
        if self.settings.boot == "ssh" and plan_of_boot.kind != "none":
            raise ValueError("the local provider's ssh boot mode takes no user data")
        async with self._locked():
            existing = [r for r in self._store.all() if r.name == name]
            live = [r for r in existing if r.status != "terminated"]
            if len(live) > 1:
                ids = ", ".join(r.id for r in live)
                raise ProviderError(f"several local instances are named {name}: {ids}")
            if live and live[0].status != "creating":
                log.info("local: instance %s already exists as %s", name, live[0].id)
                return await self._instance(live[0])
            if live:
                record = live[0]
                log.warning("local: rebuilding %s (%s), left half-made", record.id, name)
                await self._dismantle(record)
                await asyncio.to_thread(self._store.remove, record.id)
                record = replace(
                    record,
                    plan=plan,
                    limits=limits,
                    ssh_public_key=ssh_public_key.strip(),
                    boot=(),
                    reverse_dns={},
                )
            else:
                record = await self._new_record(name, region, plan, limits, ssh_public_key)
            self._store.save(record)  # reserves the id and the address
            try:
                refs = await self._build(record, plan_of_boot, user_data)
            except BaseException:
                await self._abandon(record)
                raise
            record = replace(record, status="running", boot=refs)
            self._store.save(record)
            log.info("local: created %s (%s) at %s", record.id, name, record.ipv4[0])
            return await self._instance(record)

    async def get(self, instance_id: str) -> Instance:
        await self._require_host()
        return await self._instance(self._record(instance_id))

    async def list(self) -> tuple[Instance, ...]:
        await self._require_host()
        namespaces = await self._ip.namespaces()
        return tuple(_to_instance(r, namespaces) for r in self._store.all())

    async def terminate(self, instance_id: str) -> None:
        """Stop every process, delete namespace, veth and state; already gone is done."""
        await self._require_host()
        async with self._locked():
            record = self._store.load(instance_id)
            if record is None:
                log.info("local: instance %s already gone", instance_id)
                return
            if record.status != "terminated":
                record = replace(record, status="terminated")
                self._store.save(record)
            await self._dismantle(record)
            await asyncio.to_thread(self._store.remove, record.id)
            log.info("local: terminated %s (%s)", record.id, record.name)

    async def resize(self, instance_id: str, plan: str) -> Instance:
        """Record the new plan's limits; the VPS then awaits confirm or revert.

        Namespaces have no hardware to change, so the resize takes effect at once and the
        instance goes straight to ``resize_pending_confirm``, like a cloud's finished resize.
        """
        await self._require_host()
        limits = _limits(plan)
        async with self._locked():
            record = self._record(instance_id)
            if record.status != "running":
                raise ProviderError(f"instance {instance_id} is {record.status}, cannot resize")
            if record.plan == plan:
                raise ProviderError(f"instance {instance_id} is already on plan {plan}")
            record = replace(
                record,
                status="resize_pending_confirm",
                plan=plan,
                limits=limits,
                previous_plan=record.plan,
                previous_limits=record.limits,
            )
            await self._apply_limits(record)
            self._store.save(record)
            return await self._instance(record)

    async def confirm_resize(self, instance_id: str) -> Instance:
        return await self._finish_resize(instance_id, keep=True)

    async def revert_resize(self, instance_id: str) -> Instance:
        return await self._finish_resize(instance_id, keep=False)

    async def list_ips(self, instance_id: str) -> tuple[str, ...]:
        await self._require_host()
        return self._record(instance_id).ipv4

    async def add_ip(self, instance_id: str) -> str:
        """Take the next free pool address and put it on the VPS's ``eth0``."""
        await self._require_host()
        async with self._locked():
            record = self._record(instance_id)
            _require_live(record)
            address = (await self._free_addresses(1))[0]
            updated = replace(record, ipv4=(*record.ipv4, str(address)))
            self._store.save(updated)  # reserve it before it appears anywhere
            try:
                await self._ip.flush_neighbour(address, None)
                await self._ip.add_address(record.namespace, self._interface(address))
            except BaseException:
                self._store.save(record)
                raise
            return str(address)

    async def remove_ip(self, instance_id: str, ip: str) -> None:
        """Release a secondary address (and its reverse DNS); the main one stays."""
        await self._require_host()
        address = ipaddress.IPv4Address(ip)
        async with self._locked():
            record = self._record(instance_id)
            if str(address) not in record.ipv4:
                raise ProviderNotFound(f"{address} is not an address of instance {instance_id}")
            if str(address) == record.ipv4[0]:
                raise ProviderError(f"{address} is the main address of {instance_id}")
            await self._ip.delete_address(record.namespace, self._interface(address))
            await self._forget_neighbour(address, record)
            reverse = {k: v for k, v in record.reverse_dns.items() if k != str(address)}
            ipv4 = tuple(a for a in record.ipv4 if a != str(address))
            self._store.save(replace(record, ipv4=ipv4, reverse_dns=reverse))

    async def set_reverse_dns(self, instance_id: str, ip: str, hostname: str) -> None:
        """Record the PTR name (there is no DNS here; ``describe`` shows what was set)."""
        await self._require_host()
        address = str(ipaddress.IPv4Address(ip))
        name = hostname.lower().removesuffix(".")  # "mx.example.com." is the same name
        if not _HOSTNAME.match(name):
            raise ValueError(f"not a fully qualified host name: {hostname!r}")
        async with self._locked():
            record = self._record(instance_id)
            if address not in record.ipv4:
                raise ProviderNotFound(f"{address} is not an address of instance {instance_id}")
            reverse = {**record.reverse_dns, address: name}
            self._store.save(replace(record, reverse_dns=reverse))

    async def boot_failure(self, instance_id: str) -> str | None:
        """Why the VPS's boot failed — it exited non-zero or was killed — with the end of its
        ``boot.log``; None while it runs or after it finished well (or with no boot)."""
        await self._require_host()
        record = self._store.load(instance_id)
        if record is None or not record.boot or record.status == "terminated":
            return None
        directory = self._store.directory(record.id)
        failure = await asyncio.to_thread(_boot_failure, directory, record.boot[0])
        return None if failure is None else f"local instance {record.id}: {failure}"

    # -- local extras ----------------------------------------------------------------------

    async def set_limits(self, instance_id: str, limits: Limits) -> None:
        """Give the VPS's cgroup ``limits`` (memory and CPUs) now: what a resize changes."""
        await self._require_host()
        async with self._locked():
            await self._apply_limits(replace(self._record(instance_id), limits=limits))

    async def prepare(self) -> None:
        """Make the bridge now rather than at the first ``create``.

        The control plane listens on the bridge's host address for the agents inside the
        namespaces (their 127.0.0.1 is their own), and can only bind it once it exists.
        """
        await self._require_host()
        async with self._locked():
            await self._ip.ensure_bridge(self.settings.bridge, self.gateway)
        if self.settings.docker:
            policy = await asyncio.to_thread(local_docker.forward_policy)
            if policy == "DROP":  # a dockerd in the host's namespace did this, most likely
                log.warning(
                    "local: the host's FORWARD policy is DROP (a Docker engine running in the "
                    "host's namespace sets it): traffic between local VPSs on %s is dropped; "
                    "run `iptables -P FORWARD ACCEPT` or allow the bridge in DOCKER-USER",
                    self.settings.bridge,
                )
            else:
                log.info(
                    "local: host FORWARD policy %s; VPS engines run in their namespaces",
                    policy or "unknown",
                )

    async def describe(self, instance_id: str) -> LocalRecord:
        """Everything recorded about the VPS: namespace, limits, reverse DNS, boot processes."""
        await self._require_host()
        return self._record(instance_id)

    def instance_dir(self, instance_id: str) -> Path:
        """The VPS's state directory (its files are under ``rootfs`` inside it)."""
        return self._store.directory(instance_id)

    async def teardown(self) -> None:
        """Remove the bridge; refused while any VPS (of this or another provider) is on it."""
        await self._require_host()
        async with self._locked():
            remaining = [r.id for r in self._store.all()]
            if remaining:
                raise ProviderError(
                    f"cannot remove bridge {self.settings.bridge}: local instances remain "
                    f"({', '.join(remaining)}); terminate them first"
                )
            ports = await self._ip.bridge_ports(self.settings.bridge)
            if ports:
                raise ProviderError(
                    f"cannot remove bridge {self.settings.bridge}: still in use by "
                    f"{', '.join(sorted(ports))}"
                )
            await self._ip.delete_link(self.settings.bridge)
            await asyncio.to_thread(self._cgroups.remove_parent)

    # -- building blocks -------------------------------------------------------------------

    async def _require_host(self) -> None:
        """Root and a working ``ip netns``, checked once; otherwise one clear error."""
        if self._host_ok:
            return
        if os.geteuid() != 0:
            raise ProviderError(f"{_NEED}; this process runs as uid {os.geteuid()}")
        for binary in (self.settings.ip_binary, self.settings.nsenter_binary):
            if shutil.which(binary) is None:
                raise ProviderError(f"{_NEED}; `{binary}` was not found")
        try:
            await self._ip.namespaces()
            self._cgroups.layout()
        except ProviderError as exc:
            raise ProviderError(f"{_NEED}; {exc.message}") from None
        self._host_ok = True

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """This object's lock (fair among its tasks), then the state's cross-process lock."""
        async with self._lock, self._store.locked():
            yield

    def _record(self, instance_id: str) -> LocalRecord:
        record = self._store.load(instance_id)
        if record is None:
            raise ProviderNotFound(f"no local instance {instance_id!r}")
        return record

    async def _instance(self, record: LocalRecord) -> Instance:
        return _to_instance(record, await self._ip.namespaces())

    def _interface(self, address: ipaddress.IPv4Address) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{address}/{self.gateway.network.prefixlen}")

    async def _new_record(
        self, name: str, region: str, plan: str, limits: Limits, ssh_public_key: str
    ) -> LocalRecord:
        namespaces = await self._ip.namespaces()
        links = await self._ip.links()
        known = {r.id for r in self._store.all()}
        prefix = self.settings.prefix
        for _ in range(100):
            candidate = secrets.token_hex(4)
            namespace, veth = f"{prefix}-{candidate}", f"{prefix}v{candidate}"
            if candidate not in known and namespace not in namespaces and veth not in links:
                break
        else:  # pragma: no cover - 100 collisions in 2**32 ids
            raise ProviderError("could not find an unused instance id")
        address = (await self._free_addresses(1))[0]
        return LocalRecord(
            id=candidate,
            name=name,
            status="creating",
            region=region,
            plan=plan,
            limits=limits,
            ipv4=(str(address),),
            prefixlen=self.gateway.network.prefixlen,
            namespace=namespace,
            host_veth=veth,
            bridge=self.settings.bridge,
            ssh_public_key=ssh_public_key.strip(),
            created_at=time.time(),
            cgroup=self._cgroups.path(namespace),
        )

    async def _free_addresses(self, count: int) -> builtins.list[ipaddress.IPv4Address]:
        """The lowest pool addresses no VPS record and no host interface holds.

        Lowest first, so a freed address is the next one handed out: the pool stays compact
        and reuse (with its neighbour-cache pitfalls, see ``_forget_neighbour``) is normal.
        """
        used = {ipaddress.IPv4Address(ip) for r in self._store.all() for ip in r.ipv4}
        used |= {a.ip for a in await self._ip.addresses()}
        network = self.gateway.network
        reserved = {self.gateway.ip, network.network_address, network.broadcast_address}
        found: builtins.list[ipaddress.IPv4Address] = []
        for pool in self.pools:
            for address in pool.hosts():  # /31 and /32: every address
                if address not in used and address not in reserved and address not in found:
                    found.append(address)
                    if len(found) == count:
                        return found
        pools = ", ".join(map(str, self.pools))
        raise ProviderError(f"the local address pool ({pools}) has no free address left")

    async def _build(
        self, record: LocalRecord, plan: boot.BootPlan, user_data: str
    ) -> tuple[proc.ProcessRef, ...]:
        """Bridge, namespace, veth, addresses, files, then the boot in the background."""
        await self._ip.ensure_bridge(self.settings.bridge, self.gateway)
        directory = self._store.directory(record.id)
        rootfs = directory / boot.ROOTFS
        await self._ip.add_namespace(record.namespace)
        await self._ip.add_veth(record.host_veth, record.namespace, record.bridge)
        addresses = [ipaddress.IPv4Address(ip) for ip in record.ipv4]
        for address in addresses:
            await self._ip.flush_neighbour(address, None)
        await self._ip.configure_guest(
            record.namespace, [self._interface(a) for a in addresses], self.gateway.ip
        )
        procs: builtins.list[Path] = []
        if record.cgroup is not None:
            await asyncio.to_thread(self._cgroups.create, record.cgroup, record.limits)
            procs = self._cgroups.procs_files(record.cgroup)
            plan = _with_vps_cgroup(plan, record.cgroup)
        engine = None
        if self.settings.docker and local_docker.available():
            engine = local_docker.Engine(directory, record.namespace)
            plan = _with_agent_setting(plan, "docker_host", engine.host)
        command = await asyncio.to_thread(self._lay_out_files, directory, rootfs, plan, user_data)
        env = boot.boot_environment(record.id, rootfs, self.settings.extra_path)
        netns = f"--net={NETNS_DIR / record.namespace}"
        refs: tuple[proc.ProcessRef, ...] = ()
        if engine is not None:
            refs = (await self._start_engine(engine, record, procs),)
            env["DOCKER_HOST"] = engine.host
        if self.settings.boot == "ssh":
            command = await asyncio.to_thread(self._lay_out_sshd, directory, record, env)
        if command is None:
            return refs
        ref = await asyncio.to_thread(
            boot.spawn,
            command,
            cwd=rootfs,
            env=env,
            log_path=directory / boot.BOOT_LOG,
            status_path=directory / boot.BOOT_STATUS,
            cgroup_procs=procs,
            enter=(self.settings.nsenter_binary, netns, "--"),
        )
        log.info("local: %s boot started as pid %d", record.id, ref.pid)
        return (ref, *refs)  # the boot first: boot_failure reads it

    async def _start_engine(
        self, engine: local_docker.Engine, record: LocalRecord, procs: builtins.list[Path]
    ) -> proc.ProcessRef:
        """The VPS's dockerd, in its namespace and cgroup, answering (images loaded)."""
        argv = local_docker.command(engine, record.cgroup)
        ref = await asyncio.to_thread(
            boot.spawn,
            argv,
            cwd=engine.directory,
            env={"PATH": boot.BOOT_PATH, "LANG": "C.UTF-8"},
            log_path=engine.directory / "dockerd.log",
            status_path=engine.directory / "dockerd.status",
            cgroup_procs=procs,
            enter=(self.settings.nsenter_binary, f"--net={NETNS_DIR / record.namespace}", "--"),
        )
        await asyncio.to_thread(local_docker.wait_ready, engine, ref, self.settings.docker_timeout)
        if self.settings.docker_images is not None:
            await asyncio.to_thread(local_docker.load_images, engine, self.settings.docker_images)
        log.info("local: %s dockerd started as pid %d", record.id, ref.pid)
        return ref

    @staticmethod
    def _lay_out_files(
        directory: Path, rootfs: Path, plan: boot.BootPlan, user_data: str
    ) -> builtins.list[str] | None:
        (rootfs / "root").mkdir(mode=0o700, parents=True, exist_ok=True)
        (directory / boot.BOOT_LOG).touch(mode=0o600)
        if plan.ignored:
            message = f"ignoring unsupported cloud-config keys: {', '.join(plan.ignored)}"
            log.warning("local: %s: %s", directory.name, message)
            boot.note(directory, message)
        boot.write_files(plan, rootfs)
        return boot.prepare(plan, user_data, directory)

    def _lay_out_sshd(
        self, directory: Path, record: LocalRecord, env: dict[str, str]
    ) -> builtins.list[str]:
        if not local_sshd.available(self.settings.sshd_binary):
            raise ProviderError(
                f"the ssh boot mode needs OpenSSH's sshd at {self.settings.sshd_binary} "
                "(Debian: openssh-server)"
            )
        session_env = {
            "PATH": env["PATH"],
            "MAILFLEET_LOCAL_ROOT": env["MAILFLEET_LOCAL_ROOT"],
            "MAILFLEET_INSTANCE_ID": record.id,
        }
        if record.cgroup is not None:
            session_env["MAILFLEET_VPS_CGROUP"] = record.cgroup
        return local_sshd.lay_out(
            directory,
            record.ipv4[0],
            record.ssh_public_key,
            session_env,
            self.settings.sshd_binary,
        )

    async def _abandon(self, record: LocalRecord) -> None:
        """Undo a failed build; if even that fails, the ``creating`` record stays visible."""
        try:
            await self._dismantle(record)
            await asyncio.to_thread(self._store.remove, record.id)
        except Exception:
            log.exception("local: could not clean up after failing to create %s", record.id)

    async def _dismantle(self, record: LocalRecord) -> None:
        """Processes, namespace, veth, cached neighbours: everything but the state dir."""
        await self._stop_processes(record)
        engine = local_docker.Engine(self._store.directory(record.id), record.namespace)
        await asyncio.to_thread(local_docker.clean_up, engine, record.cgroup)
        if record.cgroup is not None:
            await asyncio.to_thread(self._cgroups.remove, record.cgroup)
        # The veth first: deleting one end removes its peer at once, whereas a deleted
        # namespace is destroyed by the kernel in the background, its veth with it.
        await self._ip.delete_link(record.host_veth)
        await self._ip.delete_namespace(record.namespace)
        for ip in record.ipv4:
            await self._forget_neighbour(ipaddress.IPv4Address(ip), record)

    async def _forget_neighbour(self, address: ipaddress.IPv4Address, gone: LocalRecord) -> None:
        """Drop cached MACs for a released address on the host and in every other VPS."""
        await self._ip.flush_neighbour(address, None)
        namespaces = await self._ip.namespaces()
        for other in self._store.all():
            if other.id != gone.id and other.namespace in namespaces:
                await self._ip.flush_neighbour(address, other.namespace)

    async def _processes(self, record: LocalRecord) -> set[int]:
        """Every process of the VPS: in its namespace, its cgroup or its boot's process group."""
        pids = await self._ip.namespace_pids(record.namespace)
        for ref in record.boot:
            pids |= await asyncio.to_thread(proc.group_members, ref)
        if record.cgroup is not None:
            pids |= await asyncio.to_thread(self._cgroups.members, record.cgroup)
        pids.discard(os.getpid())
        return pids

    async def _stop_processes(self, record: LocalRecord) -> None:
        """SIGTERM, then SIGKILL after ``kill_grace``; repeated for anything forked meanwhile."""
        rounds = (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL)
        for number, sig in enumerate(rounds):
            targets = await self._processes(record)
            if not targets:
                return
            if number > 0:
                log.warning("local: %s: %s to %s", record.id, sig.name, sorted(targets))
            proc.send(targets, sig)
            deadline = time.monotonic() + self.settings.kill_grace
            while time.monotonic() < deadline:
                if not proc.still_running(targets):
                    break
                await asyncio.sleep(0.05)
        left = await self._processes(record)
        if left:
            raise ProviderError(
                f"processes {sorted(left)} of local instance {record.id} survive SIGKILL",
                retryable=True,
            )

    async def _apply_limits(self, record: LocalRecord) -> None:
        if record.cgroup is not None:
            await asyncio.to_thread(self._cgroups.set_limits, record.cgroup, record.limits)

    async def _finish_resize(self, instance_id: str, *, keep: bool) -> Instance:
        await self._require_host()
        async with self._locked():
            record = self._record(instance_id)
            previous = record.previous_plan
            if record.status != "resize_pending_confirm" or previous is None:
                raise ProviderError(
                    f"instance {instance_id} has no resize waiting for confirmation"
                )
            if keep:
                record = replace(record, status="running", previous_plan=None, previous_limits=None)
            else:
                record = replace(
                    record,
                    status="running",
                    plan=previous,
                    limits=record.previous_limits or _limits(previous),
                    previous_plan=None,
                    previous_limits=None,
                )
                await self._apply_limits(record)
            self._store.save(record)
            return await self._instance(record)


def _with_vps_cgroup(plan: boot.BootPlan, cgroup: str) -> boot.BootPlan:
    """The plan with the VPS's cgroup told to its agent (``vps_cgroup`` in agent.toml)."""
    return _with_agent_setting(plan, "vps_cgroup", cgroup)


def _with_agent_setting(plan: boot.BootPlan, key: str, value: str) -> boot.BootPlan:
    """The plan with ``key = value`` put first in the agent.toml it writes (a top-level
    TOML key must come before any table)."""
    line = f"{key} = {json.dumps(value)}\n".encode()
    files = tuple(
        replace(entry, content=line + entry.content)
        if posixpath.normpath("/" + entry.path.lstrip("/")) == AGENT_CONFIG_PATH
        and not entry.append
        else entry
        for entry in plan.write_files
    )
    return replace(plan, write_files=files)


def _boot_failure(directory: Path, ref: proc.ProcessRef) -> str | None:
    """How the boot failed (see ``LocalProvider.boot_failure``), from its status and log."""
    code = boot.exit_status(directory)
    if code is None and proc.is_running(ref.pid, ref.start):
        return None
    code = boot.exit_status(directory)  # it may have ended between the two looks
    if code == 0:
        return None
    what = "was killed" if code is None else f"exited with status {code}"
    tail = boot.log_tail(directory)
    if not tail:
        return f"its boot {what}; boot.log is empty"
    return f"its boot {what}; last lines of boot.log:\n{tail}"


def _region(region: str) -> None:
    if region != REGION.id:
        raise ProviderError(f"unknown local region {region!r} (the only one is {REGION.id!r})")


def _limits(plan: str) -> Limits:
    for offered in PLANS:
        if offered.id == plan:
            return Limits(offered.vcpus, offered.memory_mb, offered.disk_gb)
    names = ", ".join(p.id for p in PLANS)
    raise ProviderError(f"unknown local plan {plan!r} (offered: {names})")


def _require_live(record: LocalRecord) -> None:
    if record.status in ("creating", "terminated"):
        raise ProviderError(f"instance {record.id} is {record.status}")


def _to_instance(record: LocalRecord, namespaces: set[str]) -> Instance:
    status: InstanceStatus = record.status
    if status in ("running", "resize_pending_confirm") and record.namespace not in namespaces:
        status = "error"  # its namespace vanished (host reboot, or removed by hand)
    return Instance(
        id=record.id,
        name=record.name,
        status=status,
        region=record.region,
        plan=record.plan,
        ipv4=record.ipv4,
        ipv6=(),
    )


if TYPE_CHECKING:

    def _implements_the_interface(driver: LocalProvider) -> Provider:
        return driver  # mypy checks LocalProvider against the Provider protocol
