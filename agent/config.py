"""agent.toml: where the control plane is, the CA pin and a join token — nothing else secret.

```toml
state_dir = "/var/lib/mailfleet-agent"      # optional
vps_cgroup = "/mailfleet-local/mf-1a2b3c4d" # optional: memory and CPU are this cgroup's
mail_log = "/mailu/logs/mail.log"           # optional: Postfix's log (mail.stats reads it)
mail_queue_dir = "/mailu/mailqueue"         # optional: Postfix's queue (queue length metric)
docker_host = "unix:///run/docker.sock"     # optional: the engine MailU runs on (DOCKER_HOST)
[control_plane]
address = "cp.example.com:8443"             # agent link (mutual TLS)
enroll_address = "cp.example.com:8444"      # enrollment (TLS, join token)
ca_pin = "sha256:…"                         # SHA-256 of the agent CA's public key
join_token = "mfjoin_…"                     # single use; spent at first enrollment
```
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/mailfleet/agent.toml")
DEFAULT_STATE_DIR = Path("/var/lib/mailfleet-agent")
# Postfix's log as MailU writes it with POSTFIX_LOG_FILE (its syslog also logs to stdout), on
# a volume under MailU's data root; the engine's log API replaces it once that work lands.
DEFAULT_MAIL_LOG = Path("/mailu/logs/mail.log")
# The smtp container's /queue (Postfix's queue_directory) on the host, as MailU's compose
# flavor mounts it ("{{ root }}/mailqueue:/queue", root = /mailu).
DEFAULT_MAIL_QUEUE_DIR = Path("/mailu/mailqueue")
# Where in root's home the agent and the programs it runs write; the systemd unit keeps the
# rest of /root and /home read-only (ProtectHome=read-only, these in ReadWritePaths=):
# authorized_keys (ssh.authorize) and ssh's known_hosts for sftp repositories, the tokens
# rclone refreshes in its configuration, the docker CLI's state.
HOME_WRITES = (Path("/root/.ssh"), Path("/root/.config/rclone"), Path("/root/.docker"))
_PIN = re.compile(r"^sha256:[0-9a-f]{64}$")
_CGROUP = re.compile(r"^(/[A-Za-z0-9_.:@-]+)+$")
_DOCKER_HOST = re.compile(r"^(unix:///[A-Za-z0-9_./-]+|tcp://[A-Za-z0-9.-]+:\d{1,5})$")
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


def under_root(root: Path, path: Path) -> Path:
    """``path`` on a machine whose filesystem starts at ``root`` (``/`` on a real VPS).

    The agent keeps every path it uses absolute in its own terms (``/etc/…``,
    ``/var/lib/…``) and places them with this, so the same agent runs on a VPS and inside a
    local provider's namespace, whose files live under a directory of the host.
    """
    if root == Path("/"):
        return path
    return root / path.relative_to(path.anchor) if path.is_absolute() else root / path


class ConfigError(Exception):
    """agent.toml is missing or wrong; the message names the key."""


@dataclass(frozen=True)
class AgentConfig:
    address: str
    enroll_address: str
    ca_pin: str
    join_token: str | None
    state_dir: Path
    # The VPS's cgroup where the "VPS" is a cgroup on a bigger host (agent.cgroup).
    vps_cgroup: str | None = None
    mail_log: Path = DEFAULT_MAIL_LOG  # placed under the root by load_config
    mail_queue_dir: Path = DEFAULT_MAIL_QUEUE_DIR  # placed under the root by load_config
    # The Docker engine MailU runs on (a local VPS's own dockerd); None: the CLI's default.
    docker_host: str | None = None
    # Tunables for tests and odd networks; the defaults are what ships.
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 120.0
    metrics_buffer_bytes: int = 64 * 1024 * 1024
    nft_binary: str = "nft"  # nftables, for the network.* commands
    nft_timeout_seconds: float = 10.0


def _string(table: dict[str, object], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}{key}: required, a non-empty string")
    return value


def load_config(path: Path, root: Path = Path("/")) -> AgentConfig:
    """Read ``path`` (already placed under ``root``); ``state_dir`` is placed under ``root``."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    cp = data.get("control_plane")
    if not isinstance(cp, dict):
        raise ConfigError("control_plane: required table missing")
    address = _string(cp, "address", "control_plane.")
    enroll = _string(cp, "enroll_address", "control_plane.")
    for key, value in (("address", address), ("enroll_address", enroll)):
        if not _ADDRESS.match(value):
            raise ConfigError(f"control_plane.{key}: expected host:port, got {value!r}")
    pin = _string(cp, "ca_pin", "control_plane.").lower()
    if not _PIN.match(pin):
        raise ConfigError("control_plane.ca_pin: expected sha256:<64 hex digits>")
    token = cp.get("join_token")
    if token is not None and not isinstance(token, str):
        raise ConfigError("control_plane.join_token: must be a string")
    tuning = data.get("agent", {})
    if not isinstance(tuning, dict):
        raise ConfigError("agent: must be a table")
    try:
        options = {
            k: type_(tuning[k])
            for k, type_ in (
                ("backoff_initial_seconds", float),
                ("backoff_max_seconds", float),
                ("metrics_buffer_bytes", int),
                ("nft_binary", str),
                ("nft_timeout_seconds", float),
            )
            if k in tuning
        }
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"agent: {exc}") from None
    state_dir = data.get("state_dir", str(DEFAULT_STATE_DIR))
    if not isinstance(state_dir, str):
        raise ConfigError("state_dir: must be a path string")
    mail_log = data.get("mail_log", str(DEFAULT_MAIL_LOG))
    if not isinstance(mail_log, str) or not mail_log.startswith("/"):
        raise ConfigError("mail_log: expected an absolute path string")
    mail_queue_dir = data.get("mail_queue_dir", str(DEFAULT_MAIL_QUEUE_DIR))
    if not isinstance(mail_queue_dir, str) or not mail_queue_dir.startswith("/"):
        raise ConfigError("mail_queue_dir: expected an absolute path string")
    docker_host = data.get("docker_host")
    if docker_host is not None and not (
        isinstance(docker_host, str) and _DOCKER_HOST.match(docker_host)
    ):
        raise ConfigError("docker_host: expected unix:///path/to/docker.sock or tcp://host:port")
    vps_cgroup = data.get("vps_cgroup")
    if vps_cgroup is not None and not (
        isinstance(vps_cgroup, str) and _CGROUP.match(vps_cgroup) and ".." not in vps_cgroup
    ):
        raise ConfigError("vps_cgroup: expected a cgroup path such as /mailfleet-local/mf-1")
    return AgentConfig(
        address=address,
        enroll_address=enroll,
        ca_pin=pin,
        join_token=token or None,
        state_dir=under_root(root, Path(state_dir)),
        vps_cgroup=vps_cgroup,
        mail_log=under_root(root, Path(mail_log)),
        mail_queue_dir=under_root(root, Path(mail_queue_dir)),
        docker_host=docker_host,
        **options,  # type: ignore[arg-type]
    )
