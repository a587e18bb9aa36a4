from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from tests.support.processes import BIN

GOOD = """
state_dir = "{state}"
[control_plane]
address = "cp.example.net:8443"
enroll_address = "cp.example.net:8444"
ca_pin = "sha256:{pin}"
join_token = "mfjoin_x"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_a_good_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD.format(state=tmp_path, pin="a" * 64)))
    assert config.address == "cp.example.net:8443"
    assert config.state_dir == tmp_path
    assert config.join_token == "mfjoin_x"
    assert config.backoff_max_seconds == 120.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[control_plane]\n", "control_plane.address"),
        (GOOD.replace("cp.example.net:8443", "nowhere"), "control_plane.address"),
        (GOOD.replace("sha256:{pin}", "md5:{pin}"), "control_plane.ca_pin"),
        (GOOD.replace("[control_plane]", "[control_plane"), "not valid TOML"),
        ("x = 1\n", "control_plane: required"),
    ],
)
def test_bad_configs_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text.format(state=tmp_path, pin="a" * 64)))


def agent_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mailfleet-agent"), "run", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_agent_run_with_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[control_plane]\naddress = 1\n")
    result = agent_run("--config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: control_plane.address: required, a non-empty string"
    ]


def test_a_root_places_the_state_under_it(tmp_path: Path) -> None:
    text = GOOD.format(state="/var/lib/mailfleet-agent", pin="b" * 64)
    config = load_config(write(tmp_path, text), root=tmp_path / "vps")
    assert config.state_dir == tmp_path / "vps" / "var" / "lib" / "mailfleet-agent"
    assert load_config(write(tmp_path, text)).state_dir == Path("/var/lib/mailfleet-agent")
    # MailU's queue (the smtp container's /queue on the host), placed under the root too.
    assert config.mail_queue_dir == tmp_path / "vps" / "mailu" / "mailqueue"
    moved = load_config(write(tmp_path, 'mail_queue_dir = "/srv/q"\n' + text))
    assert moved.mail_queue_dir == Path("/srv/q")
    with pytest.raises(ConfigError, match="mail_queue_dir"):
        load_config(write(tmp_path, 'mail_queue_dir = "q"\n' + text))


def test_agent_run_reads_its_config_under_the_root(tmp_path: Path) -> None:
    """Without --config, the agent reads ROOT/etc/mailfleet/agent.toml (a local VPS's)."""
    config = tmp_path / "etc" / "mailfleet" / "agent.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[control_plane]\naddress = 1\n")
    result = agent_run("--root", str(tmp_path))
    assert result.returncode == 2
    assert "control_plane.address" in result.stderr
    missing = agent_run("--root", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: --root {tmp_path / 'nowhere'}: not a directory"
    ]


@pytest.mark.parametrize("bad", ['"mailfleet-local/mf-1"', '"/a/../b"', '"/a b"', "3"])
def test_vps_cgroup_is_an_absolute_cgroup_path(tmp_path: Path, bad: str) -> None:
    base = GOOD.format(state=tmp_path, pin="a" * 64)
    config = load_config(write(tmp_path, 'vps_cgroup = "/mailfleet-local/mf-1a2b3c4d"\n' + base))
    assert config.vps_cgroup == "/mailfleet-local/mf-1a2b3c4d"
    assert load_config(write(tmp_path, base)).vps_cgroup is None
    with pytest.raises(ConfigError, match="vps_cgroup"):
        load_config(write(tmp_path, f"vps_cgroup = {bad}\n" + base))


@pytest.mark.parametrize("bad", ['"/run/docker.sock"', '"unix://relative"', '"ssh://h"', "3"])
def test_docker_host_names_the_engine_mailu_runs_on(tmp_path: Path, bad: str) -> None:
    base = GOOD.format(state=tmp_path, pin="a" * 64)
    line = 'docker_host = "unix:///srv/vps/docker.sock"\n'
    assert load_config(write(tmp_path, line + base)).docker_host == "unix:///srv/vps/docker.sock"
    assert load_config(write(tmp_path, base)).docker_host is None
    with pytest.raises(ConfigError, match="docker_host"):
        load_config(write(tmp_path, f"docker_host = {bad}\n" + base))
