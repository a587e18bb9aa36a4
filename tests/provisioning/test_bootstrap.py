"""Cloud-init user data: what a new VPS is given, checked with the local provider's parser."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from control_plane.enrollment.agent_config import render_agent_toml
from control_plane.provisioning.bootstrap import (
    AGENT_CONFIG_PATH,
    FETCH_SCRIPT,
    INSTALL_SCRIPT_PATH,
    AgentInstall,
    install_script,
    render_user_data,
    ssh_install,
)
from control_plane.provisioning.providers.local_boot import parse_user_data
from control_plane.provisioning.ssh import new_key_pair
from control_plane.provisioning.ssh_install import WRITE_CONFIG

ROOT = Path(__file__).resolve().parents[2]
TOML = render_agent_toml(
    server_id="0190-x",
    server_name='mx "one"',
    gateway_address="cp.example.net:8443",
    enroll_address="cp.example.net:8444",
    ca_pin="sha256:" + "c" * 64,
    join_token="mfjoin_abc",
    expires_at=datetime(2026, 11, 28, tzinfo=UTC),
)


def test_pip_user_data_writes_the_config_and_runs_the_install_script() -> None:
    plan = parse_user_data(render_user_data(TOML, AgentInstall.pip("mailfleet==0.1.0")))
    assert plan.kind == "cloud-config" and plan.ignored == ()
    files = {f.path: f for f in plan.write_files}
    assert files[AGENT_CONFIG_PATH].content.decode() == TOML
    assert files[AGENT_CONFIG_PATH].permissions == 0o600
    assert files[INSTALL_SCRIPT_PATH].content.decode() == install_script()
    assert files[INSTALL_SCRIPT_PATH].permissions == 0o700
    assert plan.runcmd == (f"{INSTALL_SCRIPT_PATH} --package mailfleet==0.1.0",)


def test_package_user_data_fetches_the_served_install_script_and_runs_it_under_the_root(
    tmp_path: Path,
) -> None:
    """The ``package`` install: user data (or the install over SSH) carries a short script
    that fetches URL/agent/install.sh and runs it with --url and the machine's --root."""
    plan = parse_user_data(render_user_data(TOML, AgentInstall.served("http://10.0.0.1:8080/")))
    files = {f.path: f for f in plan.write_files}
    assert files[AGENT_CONFIG_PATH].content.decode() == TOML
    assert files[INSTALL_SCRIPT_PATH].content.decode() == FETCH_SCRIPT
    assert plan.runcmd == (
        f'sh "${{MAILFLEET_LOCAL_ROOT:-}}"{INSTALL_SCRIPT_PATH} http://10.0.0.1:8080',
    )
    assert ssh_install(AgentInstall.served("https://cp.example.net")) == (
        FETCH_SCRIPT,
        ["https://cp.example.net"],
    )
    # It runs what it fetched with the URL and the root (a stand-in python3 "fetches").
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text("#!/bin/sh\necho 'echo \"ran $*\"'\n")
    fake.chmod(0o755)
    ran = subprocess.run(
        ["sh", "-s", "http://cp:1"],
        input=FETCH_SCRIPT, capture_output=True, text=True, check=False,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "MAILFLEET_LOCAL_ROOT": "/srv/vps 1"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "ran --url http://cp:1 --root /srv/vps 1\n"


def test_preinstalled_user_data_runs_the_agent_under_the_machine_root() -> None:
    plan = parse_user_data(render_user_data(TOML, AgentInstall.preinstalled("/opt/m f/agent")))
    assert [f.path for f in plan.write_files] == [AGENT_CONFIG_PATH]
    assert plan.runcmd == ("exec '/opt/m f/agent' run --root \"${MAILFLEET_LOCAL_ROOT:-/}\"",)


def test_the_shipped_install_script_is_the_packaged_one_and_valid_shell(tmp_path: Path) -> None:
    shipped = ROOT / "packaging" / "install-agent.sh"
    packaged = ROOT / "control_plane" / "provisioning" / "install-agent.sh"
    # One file, not a copy that can drift from what the wheel ships and user data embeds.
    assert shipped.is_symlink() and shipped.resolve() == packaged.resolve()
    assert shipped.stat().st_mode & 0o111, "packaging/install-agent.sh must be executable"

    def syntax(path: Path) -> int:
        return subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode

    broken = tmp_path / "broken.sh"
    broken.write_text(install_script().replace("esac", "", 1))
    assert syntax(broken) != 0  # the check catches a script that cannot parse
    assert syntax(shipped) == 0
    # and the script runs: an unknown option is refused before it touches the machine
    refused = subprocess.run(["sh", str(shipped), "--bogus"], capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr == "install-agent.sh: unknown option --bogus\n"


def test_ssh_key_pairs_are_ed25519_openssh() -> None:
    pair = new_key_pair("mailfleet-test")
    assert pair.public_key.startswith("ssh-ed25519 ") and pair.public_key.endswith(
        " mailfleet-test"
    )
    assert pair.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert new_key_pair("x").public_key != new_key_pair("x").public_key


def test_the_ssh_install_writes_agent_toml_private_and_names_its_script(tmp_path: Path) -> None:
    """What the install over SSH runs on the VPS: agent.toml from stdin under umask 077 into a
    fresh file (a leftover readable one is replaced, not reused), then the packaged script."""
    directory = tmp_path / "etc" / "mailfleet"
    directory.mkdir(parents=True)
    leftover = directory / ".agent.toml.new"
    leftover.write_text("old")
    leftover.chmod(0o644)
    written = subprocess.run(
        ["sh", "-c", f"umask 022; {WRITE_CONFIG}"],
        input=TOML,
        text=True,
        capture_output=True,
        env={"MAILFLEET_LOCAL_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert written.returncode == 0, written.stderr
    config = directory / "agent.toml"
    assert config.read_text() == TOML and (config.stat().st_mode & 0o777) == 0o600
    assert not leftover.exists()

    assert ssh_install(AgentInstall.pip("mailfleet==0.1.0")) == (
        install_script(),
        ["--package", "mailfleet==0.1.0"],
    )
    script, args = ssh_install(AgentInstall.preinstalled("/opt/agent"))
    assert args == ["/opt/agent"] and script.startswith("#!/bin/sh\n")
    checked = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
