"""The network commands with real nftables in a real VPS-like namespace.

A "VPS" namespace with two addresses (IP1 main, IP2 extra) on a veth to a "peer" namespace,
where a sink on tcp/25 and tcp/2525 answers each connection with the address it came from.
The agent's handlers run inside the VPS namespace (tests/agent/network/vps_driver.py).
"""

from __future__ import annotations

import json
import os
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

from tests.support.netns import ip, namespace_pids, netns_unavailable, pick_subnet

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
class Lab:
    vps: str
    peer_ns: str
    ip1: str
    ip2: str
    peer: str
    state: Path
    driver: subprocess.Popen[str]

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.driver.stdin is not None and self.driver.stdout is not None
        self.driver.stdin.write(json.dumps(request) + "\n")
        self.driver.stdin.flush()
        ready, _, _ = select.select([self.driver.stdout], [], [], ANSWER_TIMEOUT)
        assert ready, f"the VPS driver did not answer {request}"
        answer: dict[str, Any] = json.loads(self.driver.stdout.readline())
        return answer

    def call(self, kind: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.ask({"call": kind, "payload": payload or {}})
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    def fails(self, kind: str, payload: dict[str, Any], **extra: Any) -> str:
        answer = self.ask({"call": kind, "payload": payload, **extra})
        assert "error" in answer, answer
        return str(answer["error"])

    def connect(self, count: int = 1, port: int = 25) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.ask({"connect": [self.peer, port], "count": count})[
            "result"
        ]
        return result

    def seen(self, count: int = 1, port: int = 25) -> list[str]:
        """Where the peer saw each connection come from ("refused" for a refused one)."""
        return [c.get("seen") or c["outcome"] for c in self.connect(count, port)]

    def nft(self, *args: str) -> str:
        run = subprocess.run(
            ["ip", "netns", "exec", self.vps, "nft", *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout


def _start(ns: str, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    reason = _nft_unavailable()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    vps, peer_ns = f"mfn{tag}", f"mfn{tag}p"
    hosts = [str(h) for h in pick_subnet().hosts()]
    processes: list[subprocess.Popen[str]] = []
    ip("netns", "add", vps)
    try:
        ip("netns", "add", peer_ns)
        ip("-n", vps, "link", "add", "eth0", "type", "veth", "peer", "eth0", "netns", peer_ns)
        for ns, addresses in ((vps, hosts[1:3]), (peer_ns, hosts[:1])):
            for address in addresses:
                ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        sink = _start(peer_ns, "-c", SINK, "25", "2525")
        processes.append(sink)
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        driver = _start(vps, "-m", "tests.agent.network.vps_driver", str(tmp_path / "network.json"))
        processes.append(driver)
        yield Lab(vps, peer_ns, hosts[1], hosts[2], hosts[0], tmp_path / "network.json", driver)
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
        for ns in (vps, peer_ns):
            for pid in namespace_pids(ns) if ns in ip("netns", "list") else ():
                os.kill(pid, 9)
            ip("netns", "del", ns, check=False)


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

    lab.nft("delete", "table", "ip", "mailfleet")  # what a reboot leaves
    assert lab.seen() == [lab.ip1]
    assert lab.call("network.snat.show")["to_ip"] is None

    assert lab.ask({"reapply": True}) == {"result": True}
    assert lab.call("network.snat.show")["to_ip"] == lab.ip2
    assert lab.seen(3) == [lab.ip2, lab.ip2, "refused"]


def test_nothing_to_reapply_on_a_fresh_machine(lab: Lab) -> None:
    assert lab.ask({"reapply": True}) == {"result": False}
    assert lab.call("network.limits.show") == {"day": None, "ips": {}}
    assert lab.call("network.snat.show") == {
        "to_ip": None,
        "ports": [25],
        "addresses": [lab.ip1, lab.ip2],
    }
