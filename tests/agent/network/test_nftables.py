"""The network commands with real nftables in a real VPS-like namespace.

A "VPS" namespace with two addresses (IP1 main, IP2 extra) on a veth to a "peer" namespace,
where a sink on tcp/25 and tcp/2525 answers each connection with the address it came from.
The agent's handlers run inside the VPS namespace (tests/agent/network/vps_driver.py).
"""

from __future__ import annotations

import json
import secrets
import select
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import ip, kill_namespace, netns_unavailable, pick_subnet

ROOT = Path(__file__).resolve().parents[3]
DAY, NEXT_DAY = "2026-11-30", "2026-12-01"
ANSWER_TIMEOUT = 30.0
SINK = """
import asyncio, sys
async def seen(reader, writer):
    writer.write(f"{writer.get_extra_info('peername')[0]}\\n".encode())
    await writer.drain()
    writer.close()
async def main():
    for port in sys.argv[1:]:
        await asyncio.start_server(seen, "0.0.0.0", int(port))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def _nft_unavailable() -> str | None:
    reason = netns_unavailable()
    if reason is None and subprocess.run(["nft", "--version"], capture_output=True).returncode:
        reason = "these tests need nftables (`nft`)"
    return reason


@dataclass
class Driver:
    """vps_driver.py running in one namespace, connecting to the peer's sink."""

    process: subprocess.Popen[str]
    peer: str

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], ANSWER_TIMEOUT)
        assert ready, f"the driver did not answer {request}"
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def connect(self, count: int = 1, port: int = 25) -> list[dict[str, Any]]:
        answer = self.ask({"connect": [self.peer, port], "count": count})
        result: list[dict[str, Any]] = answer["result"]
        return result

    def seen(self, count: int = 1, port: int = 25) -> list[str]:
        """Where the peer saw each connection come from ("refused" for a refused one)."""
        return [c.get("seen") or c["outcome"] for c in self.connect(count, port)]


@dataclass
class Lab(Driver):
    """The VPS (its driver runs the agent's handlers), its two addresses, the peer's."""

    vps: str
    ip1: str
    ip2: str
    state: Path
    namespaces: list[str]  # what the fixture deletes after the test
    processes: list[subprocess.Popen[str]]  # what it kills

    def call(self, kind: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.ask({"call": kind, "payload": payload or {}})
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    def fails(self, kind: str, payload: dict[str, Any], **extra: Any) -> str:
        answer = self.ask({"call": kind, "payload": payload, **extra})
        assert "error" in answer, answer
        return str(answer["error"])

    def nft(self, *args: str) -> str:
        run = subprocess.run(
            ["ip", "netns", "exec", self.vps, "nft", *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout

    def container(self) -> Driver:
        """A namespace behind the VPS as MailU's containers are behind Docker's bridge: the
        VPS forwards its traffic and masquerades it (Docker's rule, in a table of its own)."""
        ns = self.vps + "c"
        inside, gateway = (str(h) for h in list(pick_subnet().hosts())[:2])
        ip("netns", "add", ns)
        self.namespaces.append(ns)
        ip("-n", self.vps, "link", "add", "br0", "type", "veth", "peer", "eth0", "netns", ns)
        ip("-n", self.vps, "addr", "add", f"{gateway}/24", "dev", "br0")
        ip("-n", ns, "addr", "add", f"{inside}/24", "dev", "eth0")
        for where, link in ((self.vps, "br0"), (ns, "eth0"), (ns, "lo")):
            ip("-n", where, "link", "set", link, "up")
        ip("-n", ns, "route", "add", "default", "via", gateway)
        sysctl = ["ip", "netns", "exec", self.vps, "sysctl", "-qw", "net.ipv4.ip_forward=1"]
        subprocess.run(sysctl, check=True, timeout=10)
        masquerade = (
            "table ip docker_like {\n chain postrouting {\n"
            "  type nat hook postrouting priority srcnat; policy accept;\n"
            f'  ip saddr {inside}/24 oifname "eth0" masquerade\n }}\n}}\n'
        )
        subprocess.run(
            ["ip", "netns", "exec", self.vps, "nft", "-f", "-"],
            input=masquerade, text=True, check=True, timeout=10,
        )  # fmt: skip
        driver = start(self.processes, ns, "-m", "tests.agent.network.vps_driver", str(self.state))
        return Driver(driver, self.peer)


def start(processes: list[subprocess.Popen[str]], ns: str, *argv: str) -> subprocess.Popen[str]:
    """Python in namespace ``ns``, from this checkout; ``processes`` is what to kill after."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    processes.append(process)
    return process


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    reason = _nft_unavailable()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    vps, peer_ns = f"mfn{tag}", f"mfn{tag}p"
    peer, ip1, ip2 = (str(h) for h in list(pick_subnet().hosts())[:3])
    state = tmp_path / "network.json"
    namespaces: list[str] = []
    processes: list[subprocess.Popen[str]] = []
    try:
        for ns in (vps, peer_ns):
            ip("netns", "add", ns)
            namespaces.append(ns)
        ip("-n", vps, "link", "add", "eth0", "type", "veth", "peer", "eth0", "netns", peer_ns)
        for ns, addresses in ((vps, (ip1, ip2)), (peer_ns, (peer,))):
            for address in addresses:
                ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", vps, "route", "add", "default", "via", peer)  # the peer is "the internet"
        sink = start(processes, peer_ns, "-c", SINK, "25", "2525")
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        driver = start(processes, vps, "-m", "tests.agent.network.vps_driver", str(state))
        yield Lab(driver, peer, vps, ip1, ip2, state, namespaces, processes)
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
        for ns in namespaces:
            kill_namespace(ns)


def limits(**by_ip: Any) -> dict[str, Any]:
    """A ``limits`` payload: every address uncapped and running unless told otherwise."""
    return {a: {"cap": None, "paused": False, "reason": "", **item} for a, item in by_ip.items()}


def test_snat_moves_the_source_address_and_back(lab: Lab) -> None:
    assert lab.seen() == [lab.ip1]

    result = lab.call("network.snat.set", {"to_ip": lab.ip2, "ports": [2525]})

    assert result == {"to_ip": lab.ip2, "previous": None, "ports": [25, 2525]}
    assert lab.seen(2) == [lab.ip2, lab.ip2]
    assert lab.seen(port=2525) == [lab.ip2]  # the observer's port goes the same way
    shown = lab.call("network.snat.show")
    assert shown == {"to_ip": lab.ip2, "ports": [25, 2525], "addresses": [lab.ip1, lab.ip2]}

    assert lab.call("network.snat.set", {"to_ip": None, "ports": [25]}) == {
        "to_ip": None,
        "previous": lab.ip2,
        "ports": [25],
    }
    assert lab.seen() == [lab.ip1]
    assert lab.call("network.snat.show")["to_ip"] is None
    assert stat.S_IMODE(lab.state.stat().st_mode) == 0o600


def test_an_address_not_on_the_machine_fails_and_changes_nothing(lab: Lab) -> None:
    lab.call("network.snat.set", {"to_ip": lab.ip2, "ports": [25]})
    saved = lab.state.read_text()
    ruleset = lab.nft("list", "table", "ip", "mailfleet")
    stranger = lab.peer.rsplit(".", 1)[0] + ".200"

    error = lab.fails("network.snat.set", {"to_ip": stranger, "ports": [25]})

    assert f"{stranger} is not an address of this machine" in error
    assert lab.ip1 in error and lab.ip2 in error
    assert lab.seen() == [lab.ip2]
    assert lab.state.read_text() == saved
    assert lab.nft("list", "table", "ip", "mailfleet") == ruleset


def test_nft_failing_is_the_command_failing_with_nothing_saved(lab: Lab) -> None:
    error = lab.fails(
        "network.snat.set", {"to_ip": lab.ip2, "ports": [25]}, nft_binary="/nonexistent/nft"
    )

    assert "cannot run /nonexistent/nft" in error
    assert not lab.state.exists()
    assert lab.seen() == [lab.ip1]


def test_a_cap_refuses_the_next_connection_at_once_and_a_new_day_starts_from_zero(
    lab: Lab,
) -> None:
    result = lab.call("network.limits.set", {"day": DAY, "limits": limits(**{lab.ip1: {"cap": 3}})})
    assert result == {"day": DAY, "ips": {lab.ip1: {"cap": 3, "used": 0, "paused": False}}}

    attempts = lab.connect(4)

    assert [a["outcome"] for a in attempts] == ["connected"] * 3 + ["refused"]
    assert attempts[3]["ms"] < 500  # a reset, not a silent drop: Postfix defers at once
    assert lab.call("network.limits.show")["ips"][lab.ip1]["used"] == 3

    # The same day again (a re-push, a pause elsewhere): the count stands.
    again = {"day": DAY, "limits": limits(**{lab.ip1: {"cap": 3}, lab.ip2: {"paused": True}})}
    assert lab.call("network.limits.set", again)["ips"][lab.ip1]["used"] == 3
    assert lab.seen() == ["refused"]

    # The cap raised during the day: two more, counted on top of the three.
    raised = {"day": DAY, "limits": limits(**{lab.ip1: {"cap": 5}})}
    assert lab.call("network.limits.set", raised)["ips"][lab.ip1]["used"] == 3
    assert lab.seen(3) == [lab.ip1, lab.ip1, "refused"]

    tomorrow = {"day": NEXT_DAY, "limits": limits(**{lab.ip1: {"cap": 2}})}
    assert lab.call("network.limits.set", tomorrow)["ips"][lab.ip1]["used"] == 0
    assert lab.seen(3) == [lab.ip1, lab.ip1, "refused"]
    assert "before the day in force" in lab.fails("network.limits.set", raised)


def test_the_cap_of_the_snat_address_is_the_one_that_counts(lab: Lab) -> None:
    lab.call("network.snat.set", {"to_ip": lab.ip2, "ports": [25, 2525]})
    lab.call(
        "network.limits.set",
        {"day": DAY, "limits": limits(**{lab.ip1: {"cap": 10}, lab.ip2: {"cap": 2}})},
    )

    assert lab.seen(3) == [lab.ip2, lab.ip2, "refused"]
    shown = lab.call("network.limits.show")
    assert {a: v["used"] for a, v in shown["ips"].items()} == {lab.ip1: 0, lab.ip2: 2}
    assert lab.seen(port=2525) == [lab.ip2]  # only tcp/25 is capped

    lab.call("network.snat.set", {"to_ip": None, "ports": [25]})
    assert lab.seen(2) == [lab.ip1, lab.ip1]


def test_pause_refuses_and_resume_allows(lab: Lab) -> None:
    paused = limits(**{lab.ip1: {"cap": None, "paused": True, "reason": "listed"}})
    result = lab.call("network.limits.set", {"day": DAY, "limits": paused})

    assert result["ips"][lab.ip1] == {"cap": None, "used": 0, "paused": True}
    assert lab.seen(2) == ["refused", "refused"]

    lab.call("network.limits.set", {"day": DAY, "limits": limits(**{lab.ip1: {}})})
    assert lab.seen(2) == [lab.ip1, lab.ip1]
    assert lab.call("network.limits.show")["ips"][lab.ip1]["used"] == 2  # counted, uncapped


def test_the_saved_state_comes_back_after_a_reboot(lab: Lab) -> None:
    lab.call("network.snat.set", {"to_ip": lab.ip2, "ports": [25]})
    lab.call("network.limits.set", {"day": DAY, "limits": limits(**{lab.ip2: {"cap": 2}})})
    assert lab.seen() == [lab.ip2]

    # An agent restart: the kernel still has today's count.
    assert lab.ask({"reapply": True}) == {"result": True}
    assert lab.call("network.limits.show")["ips"][lab.ip2]["used"] == 1

    # The agent stops, the VPS reboots: the kernel has nothing of ours.
    assert lab.ask({"stop": True}) == {"result": None}
    lab.nft("delete", "table", "ip", "mailfleet")
    assert lab.seen() == [lab.ip1]
    assert lab.call("network.snat.show")["to_ip"] is None

    assert lab.ask({"reapply": True}) == {"result": True}
    assert lab.call("network.snat.show")["to_ip"] == lab.ip2
    assert lab.call("network.limits.show")["ips"][lab.ip2]["used"] == 1  # not a fresh allowance
    assert lab.seen(2) == [lab.ip2, "refused"]


def test_nothing_to_reapply_on_a_fresh_machine(lab: Lab) -> None:
    assert lab.ask({"reapply": True}) == {"result": False}
    assert lab.call("network.limits.show") == {"day": None, "ips": {}}
    assert lab.call("network.snat.show") == {
        "to_ip": None,
        "ports": [25],
        "addresses": [lab.ip1, lab.ip2],
    }


def test_mail_forwarded_from_a_container_is_translated_and_capped(lab: Lab) -> None:
    """MailU's Postfix sends from a container: forwarded, then masqueraded by Docker."""
    mailu = lab.container()
    # Without SNAT it is masqueraded to the main address, whose cap it counts against.
    lab.call("network.limits.set", {"day": DAY, "limits": limits(**{lab.ip1: {"cap": 2}})})
    assert mailu.seen(3) == [lab.ip1, lab.ip1, "refused"]

    # Our SNAT comes before Docker's masquerade, and the cap is the SNAT address's.
    lab.call("network.snat.set", {"to_ip": lab.ip2, "ports": [25]})
    both = limits(**{lab.ip1: {"cap": 2}, lab.ip2: {"cap": 1}})
    assert lab.call("network.limits.set", {"day": DAY, "limits": both})["ips"] == {
        lab.ip1: {"cap": 2, "used": 2, "paused": False},
        lab.ip2: {"cap": 1, "used": 0, "paused": False},
    }
    attempts = mailu.connect(2)
    assert [a.get("seen") or a["outcome"] for a in attempts] == [lab.ip2, "refused"]
    assert attempts[1]["ms"] < 500  # reset, so Postfix defers at once
    assert lab.call("network.limits.show")["ips"][lab.ip2]["used"] == 1
