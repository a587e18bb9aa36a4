"""What the agent renders for MailU is valid Compose, for every option it supports: Compose
itself (``docker compose config``, or v1's ``docker-compose config``, whichever this machine
has) checks each combination; the ports published are exactly the ones MailU's front serves
(``PORTS``); ``mailu.env`` holds MailU's settings only; the web-mail follows the spec."""

from __future__ import annotations

import importlib
import itertools
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agent.mailu.render import data_directories, render_compose, render_env
from agent.mailu.spec import parse_spec
from tests.agent.conftest import PAYLOAD

yaml: Any = importlib.import_module("yaml")
# Every setting MailU 2024.06 reads (core/admin/mailu/configuration.py, core/*/start.py,
# socrate's PORTS handling, docs/configuration.rst) that the agent writes; a key outside it
# is one MailU ignores (LOG_DRIVER, for one, is a value of Mailu's compose template).
MAILU_SETTINGS = {
    "SECRET_KEY", "SUBNET", "DOMAIN", "HOSTNAMES", "POSTMASTER", "TLS_FLAVOR",
    "AUTH_RATELIMIT_IP", "AUTH_RATELIMIT_USER", "DISABLE_STATISTICS", "ADMIN", "WEB_ADMIN",
    "WEBMAIL", "WEB_WEBMAIL", "API", "WEB_API", "API_TOKEN", "WEBDAV", "ANTIVIRUS", "PORTS",
    "DKIM_SELECTOR", "SCAN_MACROS", "MESSAGE_SIZE_LIMIT", "MESSAGE_RATELIMIT", "RELAYNETS",
    "RELAYHOST", "FETCHMAIL_ENABLED", "RECIPIENT_DELIMITER", "DMARC_RUA", "DMARC_RUF",
    "WELCOME", "SITENAME", "LOG_LEVEL", "POSTFIX_LOG_FILE", "TZ", "INITIAL_ADMIN_ACCOUNT",
    "INITIAL_ADMIN_DOMAIN", "INITIAL_ADMIN_PW", "INITIAL_ADMIN_MODE",
}  # fmt: skip
COMBINATIONS = list(
    itertools.product(("none", "roundcube", "snappymail"), (False, True), ("cert", "letsencrypt"))
)


def composes() -> list[list[str]]:
    """Each Compose this machine has: the v2 plugin, v1, or both."""
    found = []
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        found.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    return found


def rendered(directory: Path, webmail: str, antivirus: bool, tls: str) -> dict[str, Any]:
    spec = parse_spec({**PAYLOAD, "webmail": webmail, "antivirus": antivirus, "tls_flavor": tls})
    directory.mkdir()
    (directory / "docker-compose.yml").write_text(render_compose(spec, directory))
    (directory / "mailu.env").write_text(render_env(spec))
    for sub in data_directories(spec):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    env = dict(
        line.split("=", 1)
        for line in (directory / "mailu.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {"compose": yaml.safe_load((directory / "docker-compose.yml").read_text()), "env": env}


def test_compose_accepts_every_combination_the_agent_renders(tmp_path: Path) -> None:
    found = composes()
    if not found:
        pytest.skip("no Docker Compose here (make system-deps installs docker-compose)")
    checks = []
    for webmail, antivirus, tls in COMBINATIONS:
        directory = tmp_path / f"{webmail}-{antivirus}-{tls}"
        files = rendered(directory, webmail, antivirus, tls)
        assert ("webmail" in files["compose"]["services"]) is (webmail != "none")
        assert ("antivirus" in files["compose"]["services"]) is antivirus
        if tls == "cert":  # the compose file is the same for both flavors (mailu.env differs)
            checks += [(compose, directory) for compose in found]

    def check(compose: list[str], directory: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, "--project-name", "mailu", "--project-directory", str(directory),
             "--file", str(directory / "docker-compose.yml"), "config", "--quiet"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    with ThreadPoolExecutor(4) as pool:  # v1 is a Python program: seconds to start each
        results = list(pool.map(lambda job: check(*job), checks))
    for (compose, directory), checked in zip(checks, results, strict=True):
        assert checked.returncode == 0, (compose, directory.name, checked.stderr)


@pytest.mark.parametrize(("webmail", "antivirus", "tls"), COMBINATIONS)
def test_ports_settings_and_web_mail_follow_the_spec(
    tmp_path: Path, webmail: str, antivirus: bool, tls: str
) -> None:
    files = rendered(tmp_path / "mailu", webmail, antivirus, tls)
    env, services = files["env"], files["compose"]["services"]
    served = {int(port) for port in env["PORTS"].split(",")}
    published = {int(port.rsplit(":", 2)[1]) for port in services["front"]["ports"]}
    assert published == served and {110, 143}.isdisjoint(served)
    assert all(
        port.startswith(f"{PAYLOAD['bind_address']}:") for port in services["front"]["ports"]
    )
    assert set(env) <= MAILU_SETTINGS, set(env) - MAILU_SETTINGS
    assert env["WEBMAIL"] == webmail and env["TLS_FLAVOR"] == tls
    assert env["ANTIVIRUS"] == ("clamav" if antivirus else "none")
    if webmail != "none":
        mounts = services["webmail"]["volumes"]
        assert f"{tmp_path / 'mailu'}/overrides/{webmail}:/overrides:ro" in mounts
        assert (tmp_path / "mailu" / "overrides" / webmail).is_dir()
        assert "webmail" in services["front"]["networks"]
    if antivirus:
        assert "clamav" in services["antispam"]["networks"]
        assert services["antivirus"]["image"] == "clamav/clamav-debian:1.4"
    assert files["compose"]["networks"]["oletools"]["internal"] is True
    assert "&id" not in (tmp_path / "mailu" / "docker-compose.yml").read_text()
