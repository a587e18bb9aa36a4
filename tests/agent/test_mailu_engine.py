"""The real engine and the stand-ins themselves: what the agent renders comes up with
Compose, binds the VPS's address and passes the images' healthchecks; the engine leaves
nothing behind when it stops."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.agent.conftest import VPS_ADDRESS, InstalledMailu
from tests.support.docker_engine import (
    delete_namespace,
    make_namespace,
    run_in_namespace,
    start_engine,
)


def test_the_rendered_mailu_project_runs_and_its_healthchecks_pass(
    mailu_installed: InstalledMailu,
) -> None:
    """The shared install (agent-rendered files, Compose, the stand-ins): every service's
    container runs, the images' healthchecks pass, and the mail port answers on the VPS's
    address inside the namespace only."""

    def states() -> dict[str, str]:
        listed = mailu_installed.engine.engine.docker(
            "ps", "--all", "--filter", "label=com.docker.compose.project=mailu",
            "--format", '{{.Label "com.docker.compose.service"}}={{.Status}}',
        ).stdout  # fmt: skip
        return dict(line.split("=", 1) for line in listed.splitlines())

    def healthy(found: dict[str, str]) -> bool:
        up = all(s.startswith("Up") for s in found.values())
        return up and all("(healthy)" in s for n, s in found.items() if n != "redis")

    # The install is shared: the certificate tests restart the front, whose healthcheck
    # then starts again, so this waits (bounded) for every check to pass once more.
    deadline = time.monotonic() + 60
    found = states()
    while not healthy(found) and time.monotonic() < deadline:
        time.sleep(0.5)
        found = states()
    assert set(found) == {
        "front", "resolver", "admin", "imap", "smtp", "oletools", "antispam", "redis"
    }  # fmt: skip
    assert healthy(found), found

    async def banner() -> bytes:
        with socket.create_connection((VPS_ADDRESS, 25), timeout=5) as connection:
            return connection.recv(100)

    assert run_in_namespace(mailu_installed.engine.namespace, banner).startswith(b"220 ")


def test_a_stopped_engine_leaves_no_process_mount_rule_or_link(tmp_path: Path) -> None:
    namespace = f"mfdk-stop-{tmp_path.name[-6:]}"
    make_namespace(namespace)
    try:
        before = subprocess.run(
            ["nsenter", f"--net=/var/run/netns/{namespace}", "iptables-save"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        engine = start_engine(namespace, tmp_path / "engine")
        engine.docker("network", "create", "probe")
        pid = engine.process.pid
        engine.stop()
        after = subprocess.run(
            ["nsenter", f"--net=/var/run/netns/{namespace}", "iptables-save"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        strip = [line for line in before.splitlines() if not line.startswith("#")]
        assert [line for line in after.splitlines() if not line.startswith("#")] == strip
        assert not Path(f"/proc/{pid}").exists()
        assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()
        assert str(engine.exec_root) not in Path("/proc/self/mountinfo").read_text()
        links = subprocess.run(
            ["ip", "-n", namespace, "-o", "link"], capture_output=True, text=True, check=True
        ).stdout
        assert "br-" not in links
        assert not (tmp_path / "engine" / "data").exists()
    finally:
        delete_namespace(namespace)
