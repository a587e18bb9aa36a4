"""The agent's systemd unit lets the agent write where it writes: no test here runs systemd
(it is not PID 1), so the unit is read as systemd reads it and checked by systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.config import HOME_WRITES
from agent.ssh_keys import AUTHORIZED_KEYS
from tests.support.processes import BIN

HIDING = {"true", "yes", "1", "on", "tmpfs"}


def service_section() -> dict[str, list[str]]:
    """The [Service] keys, each with every value it is given (systemd lets keys repeat)."""
    text = subprocess.run([BIN / "mailfleet-agent", "systemd-unit"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    section, found = "", dict[str, list[str]]()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_root_s_home_is_writable_where_the_agent_writes() -> None:
    unit = service_section()
    protect = (unit.get("ProtectHome") or ["no"])[-1]
    assert protect not in HIDING  # /root hidden: no authorized_keys, no ssh keys for sftp
    assert any(AUTHORIZED_KEYS.is_relative_to(p) for p in HOME_WRITES)
    if protect != "read-only":
        return
    writable = {e for values in unit.get("ReadWritePaths", []) for e in values.split()}
    for path in HOME_WRITES:
        assert {str(path), f"-{path}"} & writable, path
    # A ReadWritePaths= entry that does not exist fails the start (or, with "-", stays
    # read-only): authorized_keys' directory is made first, outside the sandbox.
    assert str(AUTHORIZED_KEYS.parent) in writable
    made = [v for v in unit.get("ExecStartPre", []) if v.startswith("+")]
    assert any("mkdir" in v and str(AUTHORIZED_KEYS.parent) in v.split() for v in made), made


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    text = subprocess.run([BIN / "mailfleet-agent", "systemd-unit"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    unit = tmp_path / "mailfleet-agent.service"
    unit.write_text(text.replace("/opt/mailfleet-agent/bin/mailfleet-agent", "/bin/true"))
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("ProtectHome=", "ProtectHomee="))  # control: a typo is seen
    checked = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr
    control = subprocess.run(["systemd-analyze", "verify", broken], capture_output=True, text=True)
    assert "ProtectHomee" in control.stderr
