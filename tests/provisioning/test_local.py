"""The local provider with real network namespaces, a real bridge and real processes.

Every test run gets its own names (prefix ``t<4 hex>``: namespaces ``t…-<id>``, veths
``t…v<id>``, bridge ``t…br``) and its own /24 inside 198.19.0.0/16, so runs never meet each
other or a real MailFleet bridge on the same host. Traffic goes only to those addresses.
The ``lab`` fixture terminates every VPS and removes the bridge afterwards, then sweeps for
anything with the run's prefix that is still there and fails the test if it found some.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from control_plane.api.app import create_app
from control_plane.db.engine import Database
from control_plane.gateway.hub import AgentHub
from control_plane.provisioning.providers import (
    LocalProvider,
    LocalSettings,
    ProviderError,
    ProviderNotFound,
)
from control_plane.provisioning.providers.local_cgroup import Cgroups
from control_plane.provisioning.providers.local_state import Limits
from control_plane.provisioning.registry import ProviderRegistry
from control_plane.provisioning.runner import ProvisioningRunner
from control_plane.provisioning.workflow import Workflow
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from control_plane.vault.pki import AgentPki
from tests.conftest import MakeTenant
from tests.support.netns import (
    ip,
    ip_json,
    kill_namespace,
    links,
    namespace_pids,
    namespaces,
    netns_unavailable,
    pick_subnet,
    running,
)

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests mailfleet@test"
PORT = 8080


@dataclass
class Lab:
    """One test's names, addresses and providers; everything it makes is swept at the end."""

    root: Path
    prefix: str
    bridge: str
    subnet: ipaddress.IPv4Network
    providers: list[LocalProvider] = field(default_factory=list)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def pool(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.subnet.network_address + 16}/28")

    def settings(self, **overrides: object) -> LocalSettings:
        base = LocalSettings(
            state_dir=self.root / "state",
            bridge=self.bridge,
            bridge_address=f"{self.gateway}/{self.subnet.prefixlen}",
            pools=(str(self.pool),),
            prefix=self.prefix,
            kill_grace=2.0,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]

    def provider(self, **overrides: object) -> LocalProvider:
        provider = LocalProvider(self.settings(**overrides))
        self.providers.append(provider)
        return provider


@pytest_asyncio.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    prefix = "t" + secrets.token_hex(2)
    the_lab = Lab(tmp_path, prefix, f"{prefix}br", pick_subnet())
    try:
        yield the_lab
    finally:
        problems = await clean_up(the_lab)
    if problems:
        pytest.fail("left behind after the test: " + "; ".join(problems))


async def clean_up(lab: Lab) -> list[str]:
    """Terminate through the providers, then sweep by prefix; report what the sweep found."""
    problems: list[str] = []
    for provider in lab.providers:
        for instance in await provider.list():
            try:
                await provider.terminate(instance.id)
            except ProviderError as exc:
                problems.append(f"terminate {instance.id}: {exc.message}")
    if lab.providers:
        try:
            await lab.providers[0].teardown()
        except ProviderError as exc:
            problems.append(f"teardown: {exc.message}")
    for namespace in sorted(n for n in namespaces() if n.startswith(lab.prefix + "-")):
        problems.append(f"namespace {namespace}")
        kill_namespace(namespace)
    for link in sorted(name for name in links() if name.startswith(lab.prefix)):
        problems.append(f"link {link}")
        ip("link", "delete", "dev", link, check=False)
    cgroups = Cgroups(LocalSettings().cgroup_parent)
    for path in cgroups.leftovers(lab.prefix + "-"):
        problems.append(f"cgroup {path}")
        for directory in cgroups.directories(path):
            directory.rmdir()
    return problems


def cloud_config(tag: str, *, serve: bool = True) -> str:
    secret = base64.b64encode(b"s3cret for " + tag.encode()).decode()
    server = (
        f'  - ["{sys.executable}", "-m", "http.server", "{PORT}", "--bind", "0.0.0.0",'
        ' "--directory", "srv/www"]\n'
        if serve
        else ""
    )
    return (
        textwrap.dedent(
            f"""\
            #cloud-config
            hostname: {tag}
            write_files:
              - path: /srv/www/index.html
                content: "hello from {tag}\\n"
                permissions: '0640'
              - path: /etc/mailfleet/../mailfleet/secret
                encoding: b64
                content: {secret}
                permissions: '0600'
            runcmd:
              - echo "$MAILFLEET_INSTANCE_ID" > ran-first
              - sleep 300 &
            """
        )
        + server
    )


async def fetch(address: str, *, within: float = 10.0) -> str:
    """GET http://address:8080/ from the host, retrying until the server inside is up."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
        while True:
            try:
                response = await client.get(f"http://{address}:{PORT}/")
                response.raise_for_status()
                return response.text
            except httpx.HTTPError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.1)


async def fetch_from(namespace: str, address: str) -> str:
    """GET http://address:8080/ from a process inside ``namespace``."""
    script = (
        "import sys, urllib.request as u;"
        "o = u.build_opener(u.ProxyHandler({}));"
        "print(o.open(sys.argv[1], timeout=5).read().decode(), end='')"
    )
    process = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", namespace, sys.executable, "-c", script,
        f"http://{address}:{PORT}/",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def host_file_says(path: str, text: str) -> bool:
    try:
        return text in Path(path).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return False


def read(path: Path) -> str:
    return path.read_text()


def write(path: Path, text: str) -> None:
    path.write_text(text)


def entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def ip_forward() -> str:
    return Path("/proc/sys/net/ipv4/ip_forward").read_text()


# -- tests ---------------------------------------------------------------------------------


async def test_two_vpss_boot_and_reach_each_other(lab: Lab) -> None:
    forward_before = ip_forward()
    provider = lab.provider()
    assert [r.id for r in await provider.regions()] == ["local"]
    assert {p.id for p in await provider.plans()} >= {"local-small", "local-medium", "local-large"}

    a = await provider.create("vps-a", "local", "local-small", cloud_config("a"), SSH_KEY)
    b = await provider.create("vps-b", "local", "local-small", cloud_config("b"), SSH_KEY)
    for instance, name in ((a, "vps-a"), (b, "vps-b")):
        assert (instance.name, instance.status, instance.region, instance.plan) == (
            name,
            "running",
            "local",
            "local-small",
        )
        assert len(instance.ipv4) == 1 and instance.ipv6 == ()
        address = ipaddress.IPv4Address(instance.ipv4[0])
        assert address in lab.pool and address != lab.gateway
    assert a.ipv4 != b.ipv4
    assert {i.id for i in await provider.list()} == {a.id, b.id}
    assert await provider.get(a.id) == a
    # the same name again is the same VPS, not a second one
    assert await provider.create("vps-a", "local", "local-small", "", SSH_KEY) == a

    da, db = await provider.describe(a.id), await provider.describe(b.id)
    assert {da.namespace, db.namespace} <= namespaces()
    ports = {str(link["ifname"]) for link in ip_json("link", "show", "master", lab.bridge)}
    assert ports == {da.host_veth, db.host_veth}
    for record in (da, db):
        assert all(len(name) <= 15 for name in (record.host_veth, lab.bridge))
        eth0 = ip_json("-n", record.namespace, "-4", "addr", "show", "dev", "eth0")
        assert [i["local"] for i in eth0[0]["addr_info"]] == list(record.ipv4)  # type: ignore[attr-defined]
        route = ip_json("-n", record.namespace, "route", "show", "default")
        assert route[0]["gateway"] == str(lab.gateway)
        lo = ip_json("-n", record.namespace, "link", "show", "dev", "lo")
        assert "UP" in lo[0]["flags"]  # type: ignore[operator]

    # host → each VPS, and VPS A → VPS B, over the bridge
    assert await fetch(a.ipv4[0]) == "hello from a\n"
    assert await fetch(b.ipv4[0]) == "hello from b\n"
    assert await fetch_from(da.namespace, b.ipv4[0]) == "hello from b\n"
    assert await fetch_from(db.namespace, a.ipv4[0]) == "hello from a\n"

    # write_files, re-rooted under the instance's state directory, with their modes
    rootfs = provider.instance_dir(a.id) / "rootfs"
    page = rootfs / "srv/www/index.html"
    assert page.read_text() == "hello from a\n"
    assert page.stat().st_mode & 0o7777 == 0o640
    secret = rootfs / "etc/mailfleet/secret"
    assert secret.read_bytes() == b"s3cret for a"
    assert secret.stat().st_mode & 0o7777 == 0o600
    assert not host_file_says("/srv/www/index.html", "hello from a")  # not the host's /srv
    # runcmd ran in order, in the background, with its own process group
    assert (rootfs / "ran-first").read_text().strip() == a.id
    assert len(da.boot) == 1 and running(da.boot[0].pid)
    assert os.getpgid(da.boot[0].pid) == da.boot[0].pid
    assert da.boot[0].pid in namespace_pids(da.namespace)
    log = (provider.instance_dir(a.id) / "boot.log").read_text()
    assert "ignoring unsupported cloud-config keys: hostname" in log
    assert '"GET / HTTP/1.1" 200' in log  # http.server's own log line for our requests
    assert ip_forward() == forward_before  # no forwarding switched on


async def test_extra_address_and_reverse_dns(lab: Lab) -> None:
    provider = lab.provider()
    a = await provider.create("vps-a", "local", "local-small", cloud_config("a"), SSH_KEY)
    main = a.ipv4[0]
    assert await fetch(main) == "hello from a\n"

    extra = await provider.add_ip(a.id)
    assert ipaddress.IPv4Address(extra) in lab.pool and extra != main
    assert await provider.list_ips(a.id) == (main, extra)
    assert (await provider.get(a.id)).ipv4 == (main, extra)
    assert await fetch(extra) == "hello from a\n"  # the server binds 0.0.0.0 in the namespace

    await provider.set_reverse_dns(a.id, extra, "MX2.example.com.")
    assert (await provider.describe(a.id)).reverse_dns == {extra: "mx2.example.com"}
    with pytest.raises(ValueError, match="fully qualified"):
        await provider.set_reverse_dns(a.id, main, "not a name")
    with pytest.raises(ProviderNotFound):
        await provider.set_reverse_dns(a.id, str(lab.gateway), "mx.example.com")

    with pytest.raises(ProviderError, match="main address"):
        await provider.remove_ip(a.id, main)
    await provider.remove_ip(a.id, extra)
    assert await provider.list_ips(a.id) == (main,)
    record = await provider.describe(a.id)
    assert record.reverse_dns == {}
    eth0 = ip_json("-n", record.namespace, "-4", "addr", "show", "dev", "eth0")
    assert [i["local"] for i in eth0[0]["addr_info"]] == [main]  # type: ignore[attr-defined]
    with pytest.raises(ProviderNotFound):
        await provider.remove_ip(a.id, extra)
    assert await provider.add_ip(a.id) == extra  # the freed address comes back first


async def test_resize_confirm_and_revert(lab: Lab) -> None:
    provider = lab.provider()
    vps = await provider.create("vps", "local", "local-small", "", SSH_KEY)
    assert (await provider.describe(vps.id)).boot == ()  # no user data, nothing to run

    resized = await provider.resize(vps.id, "local-medium")
    assert (resized.status, resized.plan) == ("resize_pending_confirm", "local-medium")
    record = await provider.describe(vps.id)
    assert (record.limits.vcpus, record.limits.memory_mb, record.limits.disk_gb) == (2, 2048, 20)
    assert record.previous_plan == "local-small"
    with pytest.raises(ProviderError, match="cannot resize"):
        await provider.resize(vps.id, "local-large")
    confirmed = await provider.confirm_resize(vps.id)
    assert (confirmed.status, confirmed.plan) == ("running", "local-medium")
    assert (await provider.describe(vps.id)).previous_plan is None

    await provider.resize(vps.id, "local-large")
    assert (await provider.describe(vps.id)).limits.memory_mb == 4096
    reverted = await provider.revert_resize(vps.id)
    assert (reverted.status, reverted.plan) == ("running", "local-medium")
    assert (await provider.describe(vps.id)).limits.memory_mb == 2048

    with pytest.raises(ProviderError, match="no resize waiting"):
        await provider.confirm_resize(vps.id)
    with pytest.raises(ProviderError, match="already on plan"):
        await provider.resize(vps.id, "local-medium")
    with pytest.raises(ProviderError, match="unknown local plan"):
        await provider.resize(vps.id, "huge")


async def test_terminate_leaves_nothing_and_frees_the_address(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    provider = lab.provider()
    a = await provider.create("vps-a", "local", "local-small", cloud_config("a"), SSH_KEY)
    b = await provider.create("vps-b", "local", "local-small", cloud_config("b"), SSH_KEY)
    assert await fetch(a.ipv4[0]) == "hello from a\n"
    assert await fetch(b.ipv4[0]) == "hello from b\n"
    da = await provider.describe(a.id)
    directory = provider.instance_dir(a.id)
    pids = namespace_pids(da.namespace) | {ref.pid for ref in da.boot}
    assert len(pids) >= 3  # the runcmd shell, sleep and http.server at least
    # traffic to A from B fills B's neighbour cache: it must not outlive A's address
    assert await fetch_from((await provider.describe(b.id)).namespace, a.ipv4[0])

    caplog.clear()
    await provider.terminate(a.id)
    assert "SIGKILL" not in caplog.text  # SIGTERM sufficed
    assert da.namespace not in namespaces()
    assert da.host_veth not in links()
    ports = {str(link["ifname"]) for link in ip_json("link", "show", "master", lab.bridge)}
    assert ports == {(await provider.describe(b.id)).host_veth}
    assert not [pid for pid in pids if running(pid)]
    assert not directory.exists()
    with pytest.raises(ProviderNotFound):
        await provider.get(a.id)
    assert [i.id for i in await provider.list()] == [b.id]
    await provider.terminate(a.id)  # already gone: done
    assert await fetch(b.ipv4[0]) == "hello from b\n"

    # the freed address is handed out again and works at its new home at once
    c = await provider.create("vps-c", "local", "local-small", cloud_config("c"), SSH_KEY)
    assert c.ipv4 == a.ipv4 and c.id != a.id
    assert await fetch(c.ipv4[0]) == "hello from c\n"
    assert await fetch_from((await provider.describe(b.id)).namespace, c.ipv4[0]) == (
        "hello from c\n"
    )

    await provider.terminate(b.id)
    await provider.terminate(c.id)
    await provider.teardown()
    assert lab.bridge not in links()
    assert not [n for n in namespaces() if n.startswith(lab.prefix)]
    assert entries(lab.root / "state") == [".lock"]


async def test_a_restarted_provider_sees_existing_vpss(lab: Lab) -> None:
    first = lab.provider()
    a = await first.create("vps-a", "local", "local-small", cloud_config("a"), SSH_KEY)
    b = await first.create("vps-b", "local", "local-small", "", SSH_KEY)
    await first.add_ip(b.id)
    await first.set_reverse_dns(a.id, a.ipv4[0], "mx1.example.com")

    second = lab.provider()  # same state directory: the control plane restarted
    listed = await second.list()
    assert [(i.id, i.status) for i in listed] == [(a.id, "running"), (b.id, "running")]
    assert (await second.describe(a.id)).reverse_dns == {a.ipv4[0]: "mx1.example.com"}
    c = await second.create("vps-c", "local", "local-small", "", SSH_KEY)
    taken = {*a.ipv4, *(await second.list_ips(b.id))}
    assert len(taken) == 3 and c.ipv4[0] not in taken
    assert await second.create("vps-a", "local", "local-small", "", SSH_KEY) == a

    boot = (await second.describe(a.id)).boot[0]
    await second.terminate(a.id)  # started by the first provider, stopped by the second
    assert not running(boot.pid)
    assert (await first.describe(b.id)).id == b.id
    assert {i.id for i in await first.list()} == {b.id, c.id}


async def test_script_user_data_runs_in_the_namespace(lab: Lab) -> None:
    provider = lab.provider()
    script = textwrap.dedent(
        """\
        #!/bin/sh
        echo "$MAILFLEET_INSTANCE_ID" > "$MAILFLEET_LOCAL_ROOT/id"
        ip -4 -o addr show dev eth0 > "$MAILFLEET_LOCAL_ROOT/addr"
        exec sleep 300
        """
    )
    vps = await provider.create("vps", "local", "local-small", script, SSH_KEY)
    rootfs = provider.instance_dir(vps.id) / "rootfs"
    await wait_for(lambda: (rootfs / "addr").exists() and (rootfs / "addr").stat().st_size > 0)
    assert (rootfs / "id").read_text().strip() == vps.id
    assert f"inet {vps.ipv4[0]}/" in (rootfs / "addr").read_text()
    boot = (await provider.describe(vps.id)).boot[0]
    assert running(boot.pid)
    await provider.terminate(vps.id)
    assert not running(boot.pid)


async def test_a_half_made_vps_is_rebuilt_by_the_next_create(lab: Lab) -> None:
    provider = lab.provider()
    vps = await provider.create("vps", "local", "local-small", cloud_config("v"), SSH_KEY)
    assert await fetch(vps.ipv4[0]) == "hello from v\n"
    old = await provider.describe(vps.id)
    old_pids = namespace_pids(old.namespace)
    # what a control plane that died in the middle of create leaves: a "creating" record
    record = provider.instance_dir(vps.id) / "instance.json"
    data = json.loads(read(record))
    data["status"] = "creating"
    write(record, json.dumps(data))
    assert (await provider.get(vps.id)).status == "creating"

    again = await provider.create("vps", "local", "local-small", cloud_config("v"), SSH_KEY)
    assert (again.id, again.status, again.ipv4) == (vps.id, "running", vps.ipv4)
    assert not [pid for pid in old_pids if running(pid)]
    assert (await provider.describe(vps.id)).boot != old.boot
    assert await fetch(vps.ipv4[0]) == "hello from v\n"


@pytest.mark.parametrize(
    ("user_data", "message"),
    [
        ("#cloud-config\nwrite_files: [\n", "not valid YAML"),
        ("#cloud-config\n- a list\n", "must be a YAML mapping"),
        ("#cloud-config\nwrite_files:\n  - content: x\n", r"write_files\[0\]\.path"),
        ("#cloud-config\nwrite_files:\n  - {path: /x, source: {uri: 'http://x'}}\n", "source"),
        ("#cloud-config\nwrite_files:\n  - {path: /x, permissions: '0999'}\n", "octal"),
        ("#cloud-config\nwrite_files:\n  - {path: /x, encoding: b64, content: '%%'}\n", "b64"),
        ("#cloud-config\nruncmd:\n  - {a: b}\n", r"runcmd\[0\]"),
        ("#include\nhttp://example.com/x\n", "starts with"),
    ],
)
async def test_bad_user_data_builds_nothing(lab: Lab, user_data: str, message: str) -> None:
    provider = lab.provider()
    with pytest.raises(ValueError, match=message):
        await provider.create("vps", "local", "local-small", user_data, SSH_KEY)
    assert await provider.list() == ()
    assert not [n for n in namespaces() if n.startswith(lab.prefix)]


async def test_bad_requests_and_a_full_pool(lab: Lab) -> None:
    tiny = f"{lab.subnet.network_address + 200}/30"  # two usable addresses
    provider = lab.provider(state_dir=lab.root / "tiny", pools=(tiny,))
    with pytest.raises(ProviderError, match="unknown local region"):
        await provider.create("vps", "mars", "local-small", "", SSH_KEY)
    with pytest.raises(ProviderError, match="unknown local plan"):
        await provider.create("vps", "local", "local-huge", "", SSH_KEY)
    with pytest.raises(ProviderNotFound):
        await provider.get("../../etc")
    await provider.terminate("0badc0de")  # never existed: nothing to do

    one = await provider.create("one", "local", "local-small", "", SSH_KEY)
    two = await provider.create("two", "local", "local-small", "", SSH_KEY)
    with pytest.raises(ProviderError, match="no free address"):
        await provider.create("three", "local", "local-small", "", SSH_KEY)
    with pytest.raises(ProviderError, match="no free address"):
        await provider.add_ip(one.id)
    assert [i.id for i in await provider.list()] == [one.id, two.id]
    assert len([n for n in namespaces() if n.startswith(lab.prefix)]) == 2
    with pytest.raises(ProviderError, match="local instances remain"):
        await provider.teardown()


async def test_needs_root_and_iproute2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    without_ip = LocalProvider(LocalSettings(state_dir=tmp_path, ip_binary="/nonexistent/ip"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    as_user = LocalProvider(LocalSettings(state_dir=tmp_path))
    for provider in (as_user, without_ip):
        for call in every_call(provider):
            with pytest.raises(ProviderError, match="needs root and iproute2"):
                await call()
        monkeypatch.undo()
    assert entries(tmp_path) == []


def every_call(p: LocalProvider) -> list[Callable[[], Awaitable[object]]]:
    vps = "0badc0de"
    return [
        p.regions,
        p.plans,
        lambda: p.create("vps", "local", "local-small", "", SSH_KEY),
        lambda: p.get(vps),
        p.list,
        lambda: p.terminate(vps),
        lambda: p.resize(vps, "local-medium"),
        lambda: p.confirm_resize(vps),
        lambda: p.revert_resize(vps),
        lambda: p.list_ips(vps),
        lambda: p.add_ip(vps),
        lambda: p.remove_ip(vps, "198.18.1.2"),
        lambda: p.set_reverse_dns(vps, "198.18.1.2", "mx.example.com"),
        lambda: p.describe(vps),
        lambda: p.boot_failure(vps),
        lambda: p.set_limits(vps, Limits(1, 1024, 10)),
        p.teardown,
    ]


def test_settings_are_checked(tmp_path: Path) -> None:
    for bad in (
        {"bridge_address": "10.0.0.1/24"},
        {"pools": ("198.20.0.0/24",)},
        {"pools": ()},
        {"prefix": "toolongprefix"},
        {"bridge": "a-bridge-name-too-long"},
        {"bridge_address": "198.18.0.0/15"},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
            LocalProvider(LocalSettings(state_dir=tmp_path, **bad))


# -- issue 12: boot failures, relative state, the bridge's MAC, the VPS cgroup ----------------


def link_mac(name: str, namespace: str | None = None) -> str:
    where = ["-n", namespace] if namespace else []
    return str(ip_json(*where, "link", "show", "dev", name)[0]["address"])


def neighbour_mac(namespace: str, address: ipaddress.IPv4Address) -> str | None:
    entries = ip_json("-n", namespace, "neigh", "show", "to", str(address))
    return str(entries[0]["lladdr"]) if entries and "lladdr" in entries[0] else None


async def test_the_bridge_keeps_its_mac_when_a_vps_goes(lab: Lab) -> None:
    provider = lab.provider()
    a = await provider.create("vps-a", "local", "local-small", cloud_config("a"), SSH_KEY)
    b = await provider.create("vps-b", "local", "local-small", cloud_config("b"), SSH_KEY)
    records = {i.id: await provider.describe(i.id) for i in (a, b)}
    ports = {vps_id: link_mac(r.host_veth) for vps_id, r in records.items()}
    # a bridge left to itself wears its lowest port MAC: remove the VPS behind that port
    gone, stays = sorted(records, key=lambda vps_id: ports[vps_id])
    mac = link_mac(lab.bridge)
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b01  # locally administered, unicast
    assert mac not in ports.values()
    address = (await provider.get(stays)).ipv4[0]
    assert await fetch(address) == f"hello from {'ab'[[a.id, b.id].index(stays)]}\n"
    assert neighbour_mac(records[stays].namespace, lab.gateway) == mac  # cached by the VPS

    await provider.terminate(gone)
    assert link_mac(lab.bridge) == mac
    assert neighbour_mac(records[stays].namespace, lab.gateway) == mac  # still right
    assert await fetch(address, within=2.0)  # answered at once, no stall


async def test_a_relative_state_dir_is_fixed_when_the_provider_is_built(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(lab.root)
    provider = lab.provider(state_dir=Path("var/local-provider"))  # `make run`'s default
    elsewhere = lab.root / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the control plane's working directory moves on
    vps = await provider.create("vps", "local", "local-small", cloud_config("r"), SSH_KEY)
    assert provider.instance_dir(vps.id) == lab.root / "var/local-provider" / vps.id
    assert await fetch(vps.ipv4[0]) == "hello from r\n"  # its runcmd script was found
    assert await provider.boot_failure(vps.id) is None
    assert entries(elsewhere) == []


async def test_a_failed_boot_is_reported_with_the_end_of_its_log(lab: Lab) -> None:
    provider = lab.provider()
    noise = "".join(f"  - echo line {n}\n" for n in range(30))
    failing = f"#cloud-config\nruncmd:\n{noise}  - echo 'no agent, 4711' >&2\n  - exit 3\n"
    vps = await provider.create("vps", "local", "local-small", failing, SSH_KEY)
    deadline = time.monotonic() + 5
    while (failure := await provider.boot_failure(vps.id)) is None:
        assert time.monotonic() < deadline, "the failed boot was never reported"
        await asyncio.sleep(0.05)
    head, *tail = failure.splitlines()
    assert (
        head == f"local instance {vps.id}: its boot exited with status 3; last lines of boot.log:"
    )
    assert tail == [f"line {n}" for n in range(11, 30)] + ["no agent, 4711"]  # the last 20

    healthy = await provider.create("ok", "local", "local-small", cloud_config("ok"), SSH_KEY)
    assert await fetch(healthy.ipv4[0]) == "hello from ok\n"
    assert await provider.boot_failure(healthy.id) is None
    os.kill((await provider.describe(healthy.id)).boot[0].pid, 9)
    deadline = time.monotonic() + 5
    while (failure := await provider.boot_failure(healthy.id)) is None:
        assert time.monotonic() < deadline, "the killed boot was never reported"
        await asyncio.sleep(0.05)
    assert "its boot was killed; last lines of boot.log:" in failure


AGENT_TOML = f"""\
[control_plane]
address = "198.19.0.1:8443"
enroll_address = "198.19.0.1:8444"
ca_pin = "sha256:{"a" * 64}"
join_token = "mfjoin_not_a_real_token"
"""
# What the agent reports, measured inside the VPS by the agent's own sampler and facts,
# with the agent.toml the provider laid out.
REPORT = """\
import json, os, time
from pathlib import Path
from agent.config import load_config
from agent.facts import collect_facts
from agent.metrics import Sampler
root = Path(os.environ["MAILFLEET_LOCAL_ROOT"])
config = load_config(root / "etc/mailfleet/agent.toml", root)
sampler = Sampler(vps_cgroup=config.vps_cgroup)
sampler.sample()
start, end = time.process_time(), time.monotonic() + 0.3
while time.monotonic() < end:
    pass
sample = sampler.sample()
own = 100 * (time.process_time() - start) / 0.3
facts = collect_facts("test", config.vps_cgroup)
report = {
    "vps_cgroup": config.vps_cgroup,
    "memory_total": sample.memory_total_bytes,
    "memory_used": sample.memory_used_bytes,
    "cpu_percent": sample.cpu_percent,
    "own_cpu_percent": own,
    "facts_memory_total": facts["memory_total_bytes"],
    "facts_cpus": facts["cpu"]["logical_count"],
    "own_cgroups": Path("/proc/self/cgroup").read_text(),
}
(root / "report.tmp").write_text(json.dumps(report))
os.replace(root / "report.tmp", root / "report.json")
"""


def cgroup_file(path: str, name: str) -> Path:
    """A cgroup's file, read straight from the mounted hierarchy (v1: per controller)."""
    if Path("/sys/fs/cgroup/memory").is_dir():  # v1 (hybrid)
        controller = "memory" if name.startswith("cgroup.") else name.split(".")[0]
        return Path("/sys/fs/cgroup") / controller / path.lstrip("/") / name
    return Path("/sys/fs/cgroup") / path.lstrip("/") / name


def cgroup_limits(path: str) -> tuple[int, str]:
    """(memory limit, CPU quota/period) as the kernel holds them."""
    if Path("/sys/fs/cgroup/memory").is_dir():
        memory = int(cgroup_file(path, "memory.limit_in_bytes").read_text())
        quota = cgroup_file(path, "cpu.cfs_quota_us").read_text().strip()
        period = cgroup_file(path, "cpu.cfs_period_us").read_text().strip()
        return memory, f"{quota} {period}"
    memory = int(cgroup_file(path, "memory.max").read_text())
    return memory, cgroup_file(path, "cpu.max").read_text().strip()


async def test_a_vps_lives_in_a_cgroup_sized_from_its_plan(lab: Lab) -> None:
    provider = lab.provider()
    user_data = "#cloud-config\n" + json.dumps(
        {
            "write_files": [
                {"path": "/etc/mailfleet/agent.toml", "permissions": "0600", "content": AGENT_TOML}
            ],
            "runcmd": [[sys.executable, "-c", REPORT], "exec sleep 300"],
        }
    )
    umask = os.umask(0)  # nothing may rely on the umask to keep the join token private
    try:
        vps = await provider.create("vps", "local", "local-small", user_data, SSH_KEY)
    finally:
        os.umask(umask)
    record = await provider.describe(vps.id)
    path = f"/mailfleet-local/{record.namespace}"
    assert record.cgroup == path
    assert cgroup_limits(path) == (1024**3, "100000 100000")  # local-small: 1 GiB, 1 CPU

    rootfs = provider.instance_dir(vps.id) / "rootfs"
    report_file = rootfs / "report.json"
    await wait_for(report_file.exists, within=15)
    report = json.loads(report_file.read_text())
    assert report["vps_cgroup"] == path
    assert report["memory_total"] == report["facts_memory_total"] == 1024**3
    assert 0 < report["memory_used"] < 1024**3
    assert report["facts_cpus"] == 1
    # its own CPU time over the interval is the cgroup's use of its one CPU
    assert report["cpu_percent"] > 5
    assert abs(report["cpu_percent"] - report["own_cpu_percent"]) < 15
    assert f"memory:{path}\n" in report["own_cgroups"] or f"0::{path}\n" in report["own_cgroups"]
    boot = record.boot[0].pid  # the boot itself (and so all it starts) joined the cgroup
    assert boot in {int(p) for p in cgroup_file(path, "cgroup.procs").read_text().split()}

    agent_toml = rootfs / "etc/mailfleet/agent.toml"
    assert agent_toml.read_text().startswith(f'vps_cgroup = "{path}"\n')
    directory = provider.instance_dir(vps.id)
    modes = {
        f.name: f.stat().st_mode & 0o777
        for f in (agent_toml, directory / "user-data", directory / "runcmd.sh")
    }
    assert modes == {"agent.toml": 0o600, "user-data": 0o600, "runcmd.sh": 0o700}

    await provider.resize(vps.id, "local-medium")  # resizes rewrite the limits
    assert cgroup_limits(path) == (2 * 1024**3, "200000 100000")
    await provider.revert_resize(vps.id)
    assert cgroup_limits(path) == (1024**3, "100000 100000")

    await provider.terminate(vps.id)
    assert not cgroup_file(path, "cgroup.procs").parent.exists()
    assert not running(boot)


# Lays out a VPS's files as the provider does, with a umask of 0, under strace.
LAY_OUT = """\
import os, sys
from pathlib import Path
from control_plane.provisioning.providers import local_boot as boot
os.umask(0)
directory, user_data = Path(sys.argv[1]), sys.argv[2]
plan = boot.parse_user_data(user_data)
boot.write_files(plan, directory / "rootfs")
boot.prepare(plan, user_data, directory)
"""
TRACED = "open,openat,creat,chmod,fchmod,fchmodat"
_CREATE = re.compile(r'open(?:at)?\((?:AT_FDCWD, )?"([^"]+)", ([A-Z_|]+)(?:, (0\d+))?\)')
_CHMOD = re.compile(r'f?chmod(?:at)?\((?:AT_FDCWD, )?(?:"([^"]+)"|\d+)[^,]*, (0\d+)')


def test_files_holding_the_join_token_are_never_wider_than_0600(tmp_path: Path) -> None:
    """Every create and chmod on the way, not just the final mode: no window of 0644."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    user_data = "#cloud-config\n" + json.dumps(
        {
            "write_files": [
                {"path": "/etc/mailfleet/agent.toml", "permissions": "0600", "content": AGENT_TOML}
            ],
            "runcmd": ["exec mailfleet-agent run"],
        }
    )
    directory = tmp_path / "vps"
    (directory / "rootfs").mkdir(parents=True)
    trace = tmp_path / "trace"
    subprocess.run(
        [strace, "-f", "-qq", "-o", str(trace), "-e", f"trace={TRACED}",
         sys.executable, "-c", LAY_OUT, str(directory), user_data],
        check=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    lines = [
        line
        for line in trace.read_text().splitlines()
        if str(directory) in line or "fchmod(" in line  # fchmod names no path
    ]
    creates = [m.groups() for line in lines if (m := _CREATE.search(line)) and "O_CREAT" in m[2]]
    assert {Path(path).name for path, _, _ in creates} >= {"agent.toml.tmp", "user-data.tmp"}
    for path, flags, mode in creates:
        assert mode == "0600", f"{path} created {mode} ({flags})"
    for line in lines:
        if (m := _CHMOD.search(line)) is not None:
            assert int(m[2], 8) & 0o077 == 0, line
    written = [
        directory / "user-data",
        directory / "runcmd.sh",
        directory / "rootfs/etc/mailfleet/agent.toml",
    ]
    assert [f.stat().st_mode & 0o777 for f in written] == [0o600, 0o700, 0o600]
    assert sorted(p.name for p in directory.iterdir()) == ["rootfs", "runcmd.sh", "user-data"]


async def test_a_failed_boot_fails_provisioning_at_once_with_its_log(
    lab: Lab,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    db: Database,
    vault: Vault,
    pki: AgentPki,
    make_tenant: MakeTenant,
) -> None:
    """`make run`'s relative home, an agent that cannot start: failed in seconds, saying why
    (not "running", then a timeout after 600 s)."""
    agent = lab.root / "mailfleet-agent"
    agent.write_text("#!/bin/sh\necho 'mailfleet-agent: cannot start, 4711 reasons' >&2\nexit 1\n")
    agent.chmod(0o755)
    monkeypatch.chdir(lab.root)
    local = settings.model_copy(
        update={
            "local_provider": True,
            "local_provider_dir": Path("var/local-provider"),
            "local_provider_bridge": lab.bridge,
            "local_provider_bridge_address": f"{lab.gateway}/{lab.subnet.prefixlen}",
            "local_provider_pool": str(lab.pool),
            "local_provider_prefix": lab.prefix,
            "local_provider_agent_command": agent,
            "provision_poll_seconds": 0.1,
            "provision_lease_seconds": 2.0,
        }
    )
    assert local.provision_enroll_timeout_seconds >= 60
    providers = ProviderRegistry(local, vault)
    assert providers.local is not None
    lab.providers.append(providers.local)
    await providers.start()
    (lab.root / "elsewhere").mkdir()
    monkeypatch.chdir(lab.root / "elsewhere")
    hub = AgentHub()
    runner = ProvisioningRunner(local, db, Workflow(local, db, vault, pki, hub, providers))
    task = asyncio.create_task(runner.run())
    app = create_app(
        local, database=db, vault=vault, hub=hub, providers=providers, wake_workflow=runner.wake
    )
    tenant = await make_tenant()
    order = {"name": "mx1", "provider": "local", "region": "local", "plan": "local-small"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://mailfleet.test"
        ) as plane:
            response = await plane.post(
                "/api/v1/servers", json={**order, "mail_stack": "none"}, headers=tenant.headers
            )
            assert response.status_code == 201, response.text
            url = f"/api/v1/servers/{response.json()['id']}"
            deadline = time.monotonic() + 10
            while (server := (await plane.get(url, headers=tenant.headers)).json())[
                "state"
            ] != "failed":
                assert time.monotonic() < deadline, f"still {server['state']}"
                await asyncio.sleep(0.05)
            assert server["failed_step"] in ("booting", "enrolling")
            reason = server["failure_reason"]
            assert "its boot exited with status 1; last lines of boot.log:" in reason
            assert reason.endswith("mailfleet-agent: cannot start, 4711 reasons")
            events = (await plane.get(f"{url}/events", headers=tenant.headers)).json()["items"]
            assert events[-1]["state"] == "failed" and events[-1]["message"] == reason

            assert (await plane.delete(url, headers=tenant.headers)).status_code == 202
            deadline = time.monotonic() + 20
            while (await plane.get(url, headers=tenant.headers)).status_code != 404:
                assert time.monotonic() < deadline, "not deprovisioned"
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await providers.aclose()
