"""Cloud-init user data that turns a fresh VPS into an enrolled MailFleet server.

The user data carries exactly three things: the agent's ``agent.toml`` (control-plane
addresses, the CA pin and a one-time join token), the install script, and the command that
runs it. Nothing else secret: the join token is single use, short-lived and bound to this
server, and the CA pin is public. The agent makes its own key on the VPS and enrolls.

This is the ``cloud-init`` bootstrap. Providers that document no user data (Hostwinds) use
the ``ssh`` bootstrap instead (``ssh_install.py``): the same ``agent.toml`` and install script,
sent over SSH once the VPS runs (``ssh_install`` below names the script).

How the agent gets there depends on the machine (``AgentInstall``):

- ``package``: the agent package this control plane serves (``agent_package.py``). A short
  script (``FETCH_SCRIPT``) fetches ``URL/agent/install.sh`` (``install-agent.sh`` with the
  wheelhouse's SHA-256s in it) and runs it with ``--root "${MAILFLEET_LOCAL_ROOT:-/}"``: on a
  rented VPS the root is ``/``; a local VPS installs under its own root, from the same
  served files, fetched over its namespace link.
- ``pip``: a real VPS without ``MAILFLEET_API_ADVERTISE_URL``. ``install-agent.sh`` (shipped
  in this package, also at ``packaging/install-agent.sh``) makes a virtualenv, pip-installs
  ``MAILFLEET_AGENT_PACKAGE`` from a package index and enables its systemd unit.
- ``preinstalled``: the image already holds the agent (the local provider's namespaces
  share this host's filesystem, so they use the control plane's own installation). The
  agent runs in the foreground of the boot, with ``--root`` set to the machine's root
  directory — ``$MAILFLEET_LOCAL_ROOT`` where the provider re-roots files, ``/`` elsewhere.
"""

from __future__ import annotations

import importlib
import shlex
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

Bootstrap = Literal["ssh", "cloud-init"]  # how a provider's machines get their agent
_yaml: Any = importlib.import_module("yaml")  # untyped; see local_boot for why by name

AGENT_CONFIG_PATH = "/etc/mailfleet/agent.toml"
INSTALL_SCRIPT_PATH = "/usr/local/sbin/mailfleet-install-agent"


@dataclass(frozen=True)
class AgentInstall:
    """How a provider's machines get the agent."""

    method: Literal["package", "pip", "preinstalled"]
    package: str = "mailfleet"  # pip: what to install
    command: str = "mailfleet-agent"  # preinstalled: the executable
    url: str = ""  # package: the control plane's API as the machine reaches it

    @classmethod
    def served(cls, url: str) -> AgentInstall:
        return cls("package", url=url.rstrip("/"))

    @classmethod
    def pip(cls, package: str) -> AgentInstall:
        return cls("pip", package=package)

    @classmethod
    def preinstalled(cls, command: str) -> AgentInstall:
        return cls("preinstalled", command=command)


# The ``package`` install's first step, on the machine: the served install script, fetched
# with Python (cloud images have it: cloud-init is Python; else curl) and run under the
# machine's root.
FETCH_SCRIPT = """#!/bin/sh
# Fetch the MailFleet agent's install script from the control plane (URL) and run it.
set -eu
url="${1:?usage: fetch URL}"
script=$(mktemp)
trap 'rm -f "$script"' EXIT
if command -v python3 >/dev/null; then
  python3 -c 'import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/agent/install.sh", timeout=120) as answer:
    shutil.copyfileobj(answer, sys.stdout.buffer)' "$url" > "$script"
else
  curl -fsS --max-time 120 "$url/agent/install.sh" > "$script"
fi
sh "$script" --url "$url" --root "${MAILFLEET_LOCAL_ROOT:-/}"
"""


def install_script() -> str:
    return _shipped("install-agent.sh")


def _shipped(name: str) -> str:
    return resources.files("control_plane.provisioning").joinpath(name).read_text()


def ssh_install(install: AgentInstall) -> tuple[str, list[str]]:
    """The script (and its arguments) the install over SSH runs by ``sh -s`` once
    ``agent.toml`` is in place: ``install-agent.sh`` for ``pip``; ``start-agent.sh``, which
    starts the machine's own agent in the background, for ``preinstalled``."""
    if install.method == "package":
        return FETCH_SCRIPT, [install.url]
    if install.method == "pip":
        return install_script(), ["--package", install.package]
    return _shipped("start-agent.sh"), [install.command]


def render_user_data(agent_toml: str, install: AgentInstall) -> str:
    """``#cloud-config`` user data for one server (see the module docstring)."""
    files: list[dict[str, str]] = [
        {"path": AGENT_CONFIG_PATH, "permissions": "0600", "content": agent_toml}
    ]
    if install.method == "package":
        files.append({"path": INSTALL_SCRIPT_PATH, "permissions": "0700", "content": FETCH_SCRIPT})
        # runcmd is not re-rooted on a local VPS (write_files are): the path names its root
        fetch = f'"${{MAILFLEET_LOCAL_ROOT:-}}"{INSTALL_SCRIPT_PATH}'
        runcmd: list[Any] = [f"sh {fetch} {shlex.quote(install.url)}"]
    elif install.method == "pip":
        files.append(
            {"path": INSTALL_SCRIPT_PATH, "permissions": "0700", "content": install_script()}
        )
        runcmd = [[INSTALL_SCRIPT_PATH, "--package", install.package]]
    else:
        command = shlex.quote(install.command)
        runcmd = [f'exec {command} run --root "${{MAILFLEET_LOCAL_ROOT:-/}}"']
    document = {"write_files": files, "runcmd": runcmd}
    body: str = _yaml.safe_dump(document, sort_keys=False, width=1000)
    return "#cloud-config\n" + body
