"""The real engine and the stand-ins themselves: a compose file the agent renders comes up
with Compose, binds the VPS's address and passes the images' healthchecks; the engine
leaves nothing behind when it stops."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

from agent.mailu.render import render_compose, render_env
from agent.mailu.spec import parse_spec
from tests.agent.conftest import VPS_ADDRESS, MailuEngine
from tests.support.docker_engine import (
    delete_namespace,
    make_namespace,
    run_in_namespace,
    start_engine,
)

SPEC = {
    "domain": "example.net",
    "hostnames": ["mx1.example.net"],
    "tls_flavor": "cert",
    "bind_address": VPS_ADDRESS,
    "secret_key": "k" * 32,
    "api_token": "t" * 32,
    "admin_password": "p" * 20,
}


def compose_command() -> list[str]:
    return ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]


def test_a_rendered_mailu_project_starts_and_its_healthchecks_pass(
    tmp_path: Path, mailu_engine: MailuEngine
) -> None:
    spec = parse_spec(SPEC)
    directory = tmp_path / "mailu"
    directory.mkdir()
    (directory / "docker-compose.yml").write_text(render_compose(spec, directory))
    (directory / "mailu.env").write_text(render_env(spec))
    (directory / "mailu.env").chmod(0o600)
    up = subprocess.run(
        [*compose_command(), "--project-name", "mailu", "up", "--detach"],
        cwd=directory, env=mailu_engine.engine.env(), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    deadline = time.monotonic() + 30
    while True:
        listed = mailu_engine.engine.docker(
            "ps", "-a", "--filter", "label=com.docker.compose.project=mailu",
            "--format", "{{json .}}",
        ).stdout  # fmt: skip
        states = {
            json.loads(line)["Labels"].split("com.docker.compose.service=")[1].split(",")[0]:
            json.loads(line)["Status"]
            for line in listed.splitlines()
        }  # fmt: skip
        if len(states) == 8 and all("(healthy)" in s or n == "redis" for n, s in states.items()):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.5)

    async def banner() -> bytes:
        with socket.create_connection((VPS_ADDRESS, 25), timeout=5) as connection:
            return connection.recv(100)

    # The mail port answers on the VPS's address, inside the namespace only.
    assert run_in_namespace(mailu_engine.namespace, banner).startswith(b"220 ")


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
