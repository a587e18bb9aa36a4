"""Control-plane settings, read from ``MAILFLEET_*`` environment variables.

Secrets never come from the environment: where one is needed (a database password, a Vault
token or AppRole secret id) the setting names a file that holds it.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MAILFLEET_"


class SettingsError(Exception):
    """A setting is invalid; the message names it and fits on one line."""


def parse_host_port(value: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port`` and check both halves."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port, got {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port}")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"unbalanced brackets in {value!r}")
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    return host, port


def _check_host_port(value: str) -> str:
    parse_host_port(value)
    return value


HostPort = Annotated[str, AfterValidator(_check_host_port)]

_DRIVERS = {
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "sqlite": "sqlite+aiosqlite",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


class Settings(BaseSettings):
    """Everything the control plane reads from its environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    home: Path = Field(
        default=Path("./var"), description="State directory (SQLite, local OpenBao)."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: an SQLite file under MAILFLEET_HOME.",
    )
    database_password_file: Path | None = Field(
        default=None, description="File holding the database password (kept out of the URL)."
    )
    dns_resolvers: str = Field(
        default="",
        description="Recursive resolvers the DNS checks ask, host:port comma-separated; "
        "empty: the system's (/etc/resolv.conf).",
    )
    dns_lookup_timeout_seconds: float = Field(
        default=3.0, gt=0, le=60, description="A DNS check's lookup gives up after this."
    )
    acme_directory_url: str = Field(
        default="https://acme-v02.api.letsencrypt.org/directory",
        description="ACME directory; Let's Encrypt staging: "
        "https://acme-staging-v02.api.letsencrypt.org/directory.",
    )
    acme_email: str | None = Field(default=None, description="ACME account contact.")
    acme_ca_file: Path | None = Field(
        default=None, description="CA bundle to trust for the ACME server's own HTTPS."
    )
    acme_caa_identity: str = Field(
        default="letsencrypt.org", description="The CA's CAA issuer domain (published in CAA)."
    )
    tls_renew_days: int = Field(
        default=30, ge=1, le=89, description="Renew this long before expiry."
    )
    tls_retry_base_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A failed certificate renewal waits this long before the next attempt, "
        "twice as long after each further failure in a row.",
    )
    tls_retry_max_seconds: float = Field(
        default=21600.0, gt=0, description="The longest wait between renewal attempts (6 h)."
    )
    state_backup_repository: str | None = Field(
        default=None,
        description="restic repository for the control plane's own state (database dump and "
        "Vault raft snapshot): `mailfleet backup-control-plane`.",
    )
    state_backup_password_file: Path | None = Field(
        default=None, description="File holding that repository's password."
    )
    state_backup_env_file: Path | None = Field(
        default=None,
        description="File (mode 0600) of NAME=value lines: that repository's backend "
        "credentials (AWS_*, B2_*, …), never kept in Vault.",
    )
    api_addr: HostPort = "127.0.0.1:8080"
    grpc_addr: HostPort = Field(default="127.0.0.1:8443", description="Agent link (mutual TLS).")
    enroll_addr: HostPort = Field(
        default="127.0.0.1:8444", description="Enrollment (TLS + join token; no client cert)."
    )
    gateway_advertise_addr: HostPort | None = Field(
        default=None, description="Agent-link address given to agents; default MAILFLEET_GRPC_ADDR."
    )
    enroll_advertise_addr: HostPort | None = Field(
        default=None,
        description="Enrollment address given to agents; default MAILFLEET_ENROLL_ADDR.",
    )
    gateway_tls_names: str = Field(
        default="localhost",
        description="Comma-separated DNS names and IPs for the gateway certificate.",
    )
    vault_pki_mount: str = Field(
        default="mailfleet-pki", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
    )
    agent_certificate_ttl_seconds: int = Field(default=86_400, ge=10, le=30 * 86_400)
    gateway_certificate_ttl_seconds: int = Field(
        default=30 * 86_400,
        ge=20,
        description="Gateway certificate lifetime; renewed at 70-90 % of it, without a restart.",
    )
    join_token_ttl_seconds: int = Field(default=1800, ge=60, le=3600)
    heartbeat_interval_seconds: float = Field(default=10.0, gt=0, le=300)
    agent_unknown_after_seconds: float = Field(default=40.0, gt=0, le=3600)
    metrics_interval_seconds: float = Field(default=15.0, gt=0, le=3600)
    vault_addr: str | None = Field(
        default=None, description="Vault/OpenBao URL; unset: MailFleet runs a local OpenBao."
    )
    vault_token_file: Path | None = None
    vault_approle_role_id: str | None = None
    vault_approle_secret_id_file: Path | None = None
    vault_ca_cert: Path | None = None
    vault_kv_mount: str = Field(default="mailfleet", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    vault_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    local_vault_addr: HostPort = "127.0.0.1:8200"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    periodic_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="How often the periodic jobs (DKIM rotations, backup schedules) look for "
        "due work.",
    )

    # Provisioning: the durable workflow (see control_plane/provisioning/workflow.py).
    provision_poll_seconds: float = Field(
        default=2.0, gt=0, le=60, description="How often a waiting step looks again."
    )
    provision_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        le=600,
        description="A step's claim on a server; renewed while it runs, taken over once stale.",
    )
    provision_concurrency: int = Field(default=8, ge=1, le=256)
    provision_create_timeout_seconds: float = Field(default=600, gt=0)
    provision_boot_timeout_seconds: float = Field(default=900, gt=0)
    provision_enroll_timeout_seconds: float = Field(default=600, gt=0)
    provision_mail_timeout_seconds: float = Field(default=2400, gt=0)
    provision_dns_timeout_seconds: float = Field(default=900, gt=0)
    provision_tls_timeout_seconds: float = Field(default=1800, gt=0)
    provision_deprovision_timeout_seconds: float = Field(default=1800, gt=0)
    agent_package: str = Field(
        default="mailfleet",
        description="What install-agent.sh pip-installs on a new VPS (a spec, wheel path or URL).",
    )

    # The local provider: "VPSs" as network namespaces on this host (demos, tests).
    local_provider: bool = Field(default=False, description="Offer the `local` provider.")
    local_provider_dir: Path | None = Field(
        default=None, description="Its state; default MAILFLEET_HOME/local-provider."
    )
    local_provider_bridge: str = Field(default="mfbr0", pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    local_provider_bridge_address: str = Field(
        default="198.18.0.1/15", description="The host's address on the bridge, with prefix."
    )
    local_provider_pool: str = Field(
        default="198.18.1.0/24", description="Comma-separated networks VPS addresses come from."
    )
    local_provider_prefix: str = Field(default="mf", pattern=r"^[a-z][a-z0-9]{0,5}$")
    local_provider_extra_path: str = Field(
        default="",
        description="Directories put first on local VPSs' PATH (colon-separated), e.g. a "
        "docker CLI's.",
    )
    local_provider_agent_command: Path | None = Field(
        default=None,
        description="The mailfleet-agent executable local VPSs run; default: next to Python's.",
    )

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in _DRIVERS:
            raise ValueError(
                "expected sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB"
            )
        return f"{_DRIVERS[scheme]}://{rest}"

    @field_validator("vault_addr")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s):// URL, got {value!r}")
        return value.rstrip("/") if value else value

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL with the SQLite default filled in under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / 'mailfleet.db').resolve()}"

    @property
    def advertised_gateway(self) -> str:
        return self.gateway_advertise_addr or self.grpc_addr

    @property
    def advertised_enroll(self) -> str:
        return self.enroll_advertise_addr or self.enroll_addr

    @property
    def local_provider_state_dir(self) -> Path:
        return self.local_provider_dir or self.home / "local-provider"

    @property
    def managed_vault(self) -> bool:
        """True when MailFleet runs its own single-machine OpenBao."""
        return self.vault_addr is None


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation errors into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{ENV_PREFIX}{field.upper()}: {message}") from None
