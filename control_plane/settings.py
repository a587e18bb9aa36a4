"""Control-plane settings, read from ``MAILFLEET_*`` environment variables.

Secrets never come from the environment: where one is needed (a database password, a Vault
token or AppRole secret id) the setting names a file that holds it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MAILFLEET_"
SERVE_RECORD = "serve.json"
log = logging.getLogger(__name__)


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
        default=Path("./var"),
        validate_default=True,
        description="State directory (SQLite, local OpenBao); made absolute once, at start.",
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
    health_ca_file: Path | None = Field(
        default=None,
        description="CA bundle the mail-port health probes trust besides the system's "
        "(servers with certificates from a private CA).",
    )
    acme_caa_identity: str = Field(
        default="letsencrypt.org", description="The CA's CAA issuer domain (published in CAA)."
    )
    acme_order_seconds: float = Field(
        default=180.0, gt=0, le=3600, description="How long the CA may take to finalise an order."
    )
    acme_visible_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="How long every authoritative server may take to show a challenge.",
    )
    acme_retry_pause_seconds: float = Field(
        default=5.0, ge=0, le=600, description="The pause before a failed order's one retry."
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
    api_shutdown_seconds: int = Field(
        default=10,
        ge=1,
        description="On stop, how long requests still running may finish before they are cut.",
    )
    api_keep_alive_seconds: int = Field(
        default=75,
        gt=0,
        le=3600,
        description="How long the API keeps an idle HTTP connection open. Longer than the "
        "idle timeouts of the clients and load balancers in front (HAProxy purges idle "
        "connections after 5 s; httpx expires its own after 5 s), so the client side closes "
        "first: a connection closed by the server as a request arrives on it fails that "
        "request (a POST cannot be retried blindly).",
    )
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
    dispatch_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Each replica's full pass over its agents' queued commands (the safety "
        "net: on PostgreSQL, LISTEN/NOTIFY wakes the replica holding the agent at once).",
    )
    notify_retry_seconds: float = Field(default=1.0, gt=0, le=300)
    command_wait_recheck_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="A long poll on a command (GET …/commands/{id}?wait_seconds) is woken "
        "when the command settles (by this replica, or by another through LISTEN/NOTIFY); "
        "it also re-reads the command this often, the safety net for a lost wake-up.",
    )
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long a replica trusts an API key it verified before checking it "
        "again: a key revoked on another replica (or by the CLI) is refused within this time, "
        "at once on the replica that revoked it; 0 checks every request.",
    )
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

    # Health checks (control_plane/health/): the sweep, its flap guard and thresholds.
    health_interval_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="Each ready server's checks run this often."
    )
    health_flap_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="A check turning failing is re-checked once after this before it counts "
        "(0: at once).",
    )
    health_probe_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Each connect and read of a probe gives up after this.",
    )
    health_dns_interval_seconds: float = Field(
        default=3600.0, gt=0, le=7 * 86_400, description="How often DNS drift is checked."
    )
    health_concurrency: int = Field(
        default=100, ge=1, le=10_000, description="Servers checked at once by one replica."
    )
    health_lease_seconds: float = Field(
        default=120.0,
        ge=1,
        le=3600,
        description="A replica's claim on a server it is checking; a run that takes longer is "
        "cut short (its checks unknown), and a crashed replica's claim lapses after it.",
    )
    health_tick_seconds: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="How often an idle sweep looks for due servers (checks made due by "
        "another replica, e.g. an agent's stream dropping there).",
    )
    health_unknowns_critical: int = Field(
        default=3, ge=1, le=100, description="Unknown results in a row that make a check critical."
    )
    mailu_queue_threshold: int = Field(
        default=100, ge=0, description="A MailU mail queue longer than this is a warning."
    )

    # Incidents (control_plane/incidents/): grouping before the first notification.
    incident_group_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="A new incident's first notification waits this long; the same server's "
        "(or subject's) other incidents opened meanwhile go out in the same notification.",
    )

    # Alerts (control_plane/alerts/): channels, delivery retries, the SMTP relay.
    alert_allow_private_targets: bool = Field(
        default=False,
        description="Let alert channels send to loopback, private, link-local and other "
        "non-public addresses, and to http:// URLs (tests; a lab). Off: refused (SSRF guard).",
    )
    alert_retry_base_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A failed delivery is tried again after this, doubling each time.",
    )
    alert_max_attempts: int = Field(
        default=6, ge=1, le=50, description="Tries per delivery before it counts as failed."
    )
    alert_send_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Each send's connect-and-answer limit."
    )
    alert_lease_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="A sender's claim on a delivery while it sends; taken over once stale.",
    )
    alert_delivery_batch: int = Field(
        default=50, ge=1, le=1000, description="Deliveries one round of the job claims."
    )
    pagerduty_events_url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue",
        description="PagerDuty Events API v2 endpoint (enqueue).",
    )
    smtp_relay_host: str | None = Field(
        default=None,
        description="The SMTP relay alert email goes through (never a watched server); its "
        "password is in Vault (PUT /api/v1/alert-relay).",
    )
    smtp_relay_port: int = Field(default=587, ge=1, le=65535)
    smtp_relay_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (587), tls (implicit, 465) or none."
    )
    smtp_relay_username: str | None = Field(default=None, description="Login, if any.")
    smtp_relay_from: str = Field(
        default="mailfleet@localhost", description="The From address of alert email."
    )
    alert_ca_file: Path | None = Field(
        default=None,
        description="Extra CA certificates (PEM) trusted for alert targets and the SMTP relay, "
        "besides the system's (a private PKI).",
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
    provision_install_timeout_seconds: float = Field(
        default=1800, gt=0, description="The agent's install over SSH, connecting included."
    )
    provision_ssh_connect_seconds: float = Field(
        default=180,
        gt=0,
        description="How long the install over SSH keeps trying to reach a VPS's sshd (it "
        "may still be starting) before the step fails with the last error.",
    )
    agent_package: str = Field(
        default="mailfleet",
        description="What install-agent.sh pip-installs on a new VPS (a spec, wheel path or "
        "URL) when MAILFLEET_API_ADVERTISE_URL is unset.",
    )
    api_advertise_url: str | None = Field(
        default=None,
        description="This control plane's API as new VPSs reach it (https://…): they install "
        "the agent from the package it serves there (GET /agent/install.sh), never from a "
        "package index.",
    )
    agent_wheelhouse_dir: Path | None = Field(
        default=None,
        description="Where the agent package VPSs install (the agent's wheel and its "
        "dependencies) is built; default MAILFLEET_HOME/agent-wheels.",
    )
    agent_wheelhouse_extra: Path | None = Field(
        default=None,
        description="A directory of wheels added to the agent package as they are (built for "
        "a VPS Python other than this machine's: `pip download --python-version …`).",
    )
    agent_restic_binary: Path | None = Field(
        default=None,
        description="A static restic (>= 0.14) served with the agent package, installed on "
        "VPSs whose distribution's restic is older.",
    )
    preinstalled_agent: Path | None = Field(
        default=None,
        description="The mailfleet-agent executable already on the machines MailFleet does not "
        "build itself (Hostwinds', adopted ones: an image made with the agent in it): their "
        "install writes agent.toml and starts it instead of pip-installing the agent.",
    )
    hostwinds_unverified_actions: bool = Field(
        default=False,
        description="Use Hostwinds API actions no public source confirms (today: `add_ip`, "
        "adding an address to a server); off until a live test settles them.",
    )
    hostwinds_user_data: bool = Field(
        default=False,
        description="Send cloud-init `user_data` with Hostwinds' `add_instance` (no public "
        "source documents the field); off until a live test settles it.",
    )

    # The local provider: "VPSs" as network namespaces on this host (demos, tests).
    ssh_adoption: bool = Field(
        default=True,
        description="Offer the `ssh` provider: adopting a machine the customer has, which the "
        "control plane then logs in to over SSH at the address it was given.",
    )
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
    local_provider_docker: bool = Field(
        default=False,
        description="Each local VPS runs its own Docker engine (Debian's dockerd, inside its "
        "namespace) for MailU, where dockerd is installed.",
    )
    local_provider_docker_images: Path | None = Field(
        default=None,
        description="A `docker save` archive loaded into each local VPS's engine (local VPSs "
        "have no route out to pull from a registry).",
    )
    local_provider_agent_command: Path | None = Field(
        default=None,
        description="The mailfleet-agent executable local VPSs run; default: next to Python's.",
    )
    local_provider_agent: Literal["preinstalled", "package"] = Field(
        default="preinstalled",
        description="The agent local VPSs run: `preinstalled` (this host's mailfleet-agent, "
        "started at once) or `package` (installed from the agent package this control plane "
        "serves, as on a rented VPS: a virtualenv under the VPS's root, a few seconds).",
    )
    local_provider_boot: Literal["cloud-init", "ssh"] = Field(
        default="cloud-init",
        description="How local VPSs get their agent: `cloud-init` (user data run at boot) or "
        "`ssh` (each VPS runs a real sshd on its address; MailFleet installs over SSH).",
    )

    # Health: resources from stored samples, outbound SMTP through the observer (area D).
    health_sustain_seconds: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description="A resource (disk, inodes, memory, CPU) counts as over a threshold only "
        "when every sample of this long a window is over it.",
    )
    health_sample_gap_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="The longest gap between stored samples (and since the last one) a "
        "resource window may have; a wider gap leaves it uncovered: unknown, not ok. Keep it "
        "a few times MAILFLEET_METRICS_INTERVAL_SECONDS.",
    )
    health_resource_info_percent: float = Field(
        default=80.0, gt=0, le=100, description="Sustained use at or above this: failing, info."
    )
    health_resource_warning_percent: float = Field(
        default=90.0, gt=0, le=100, description="Sustained use at or above this: warning."
    )
    health_resource_critical_percent: float = Field(
        default=95.0, gt=0, le=100, description="Sustained use at or above this: critical."
    )
    smtp_observer_addr: HostPort | None = Field(
        default=None,
        description="Where `serve` runs the SMTP observer agents connect out to on port 25 "
        "(it answers EHLO with the address it sees, never takes mail); unset: no outbound "
        "SMTP check.",
    )
    smtp_observer_advertise: HostPort | None = Field(
        default=None,
        description="The observer's address as agents are told it; default "
        "MAILFLEET_SMTP_OBSERVER_ADDR.",
    )
    smtp_observer_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="The observer drops a client this long silent."
    )
    smtp_observer_max_connections: int = Field(
        default=200, ge=1, le=100_000, description="The observer's concurrent connections."
    )
    health_outbound_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="The agent's outbound SMTP probe (connect, banner, EHLO, QUIT) gives up "
        "after this.",
    )
    health_outbound_expire_seconds: float = Field(
        default=120.0,
        gt=0,
        le=86_400,
        description="An outbound probe not delivered to its agent by then counts as unknown.",
    )
    reputation_auto_pause: str = Field(
        default="listing,bounces",
        pattern=r"^((listing|bounces)(,(listing|bounces))*)?$",
        description="What pauses an address by itself: 'listing' (listed on a list marked "
        "major), 'bounces' (bounce rate over MAILFLEET_REPUTATION_BOUNCE_RATE in a day); "
        "comma-separated, empty: never.",
    )
    reputation_bounce_rate: float = Field(
        default=0.05, gt=0, le=1, description="A day's bounce share that pauses an address."
    )
    reputation_bounce_min_messages: int = Field(
        default=100,
        ge=1,
        le=10_000_000,
        description="Messages a day needs before its bounce rate can pause an address.",
    )
    # Mail counts (control_plane/mailstats/): the agents' Postfix log figures.
    mail_stats_interval_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="Each server's agent reports its mail "
        "counts (mail.stats) this often; bounce rates are checked as they arrive.",
    )  # fmt: skip
    mail_stats_timeout_seconds: float = Field(
        default=120.0, gt=0, le=3600, description="A mail.stats command may run this long."
    )
    mail_stats_batch: int = Field(
        default=200, ge=1, le=10_000, description="mail.stats commands queued per periodic "
        "round at most (spreads a large fleet over several rounds).",
    )  # fmt: skip
    # DNSBL monitoring (control_plane/dnsbl/): the catalog, resolvers, sweep and delisting.
    dnsbl_lists: list[dict[str, Any]] | None = Field(
        default=None,
        description="The DNSBL catalog as a JSON list of {zone, kind: ip|domain, name, major, "
        "weight, removal_url} (replaces the defaults whole); unset: the default lists.",
    )
    dnsbl_resolvers: str = Field(
        default="",
        description="Resolvers the DNSBL lookups ask, host[:port] comma-separated; empty: the "
        "system's (/etc/resolv.conf). Spamhaus refuses public resolvers: use your own.",
    )
    dnsbl_interval_seconds: float = Field(
        default=3600.0, gt=0, le=7 * 86_400, description="Each address and domain is looked up "
        "on every list this often.",
    )  # fmt: skip
    dnsbl_timeout_seconds: float = Field(
        default=3.0, gt=0, le=60, description="A DNSBL lookup (all its attempts) gives up after "
        "this: unknown.",
    )  # fmt: skip
    dnsbl_concurrency: int = Field(
        default=500, ge=1, le=10_000, description="DNSBL queries in flight in one replica."
    )
    dnsbl_batch: int = Field(
        default=250, ge=1, le=5000, description="Subjects claimed (and stored) together."
    )
    dnsbl_lease_seconds: float = Field(
        default=300.0, ge=1, le=86_400, description="A replica's claim on the subjects it is "
        "looking up; a crashed replica's claim lapses after it.",
    )  # fmt: skip
    dnsbl_tick_seconds: float = Field(
        default=5.0, gt=0, le=600, description="How often an idle DNSBL sweep looks for due work."
    )
    dnsbl_test_point_ttl_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="How long a list's RFC 5782 test-point "
        "verdict is trusted before it is asked again.",
    )  # fmt: skip
    dnsbl_check_min_seconds: float = Field(
        default=60.0, ge=0, le=86_400, description="A check asked for (POST …/reputation/check) "
        "of an address looked up less than this ago is refused (409): a caller in a loop must "
        "not spend the lists' free-use query budget.",
    )  # fmt: skip
    dnsbl_delist_recheck_seconds: float = Field(
        default=14_400.0, gt=0, le=30 * 86_400, description="A submitted delisting request is "
        "rechecked this often.",
    )  # fmt: skip
    dnsbl_delist_stale_days: float = Field(
        default=14.0, gt=0, le=365, description="A delisting request still listed after this "
        "many days is stale.",
    )  # fmt: skip
    dnsbl_history_days: float = Field(
        default=90.0, gt=0, le=3650, description="DNSBL check history is kept this long."
    )
    # IP switches (control_plane/ipswitch): drain, DNS grace, step deadline, lease, tick.
    ip_switch_drain_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="After an IP switch moves the sending role, how long the old address "
        "drains (connections it still carries finish) before the switch succeeds.",
    )
    ip_switch_dns_grace_seconds: float = Field(
        default=86_400.0,
        ge=0,
        le=30 * 86_400,
        description="How long the old address stays in the A record and SPF after a switch "
        "(cached answers and mail in flight still name it).",
    )
    ip_switch_step_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="A switch step (or its undo) not finished within this fails (and the "
        "switch rolls back).",
    )
    ip_switch_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A replica's claim on a running switch; another takes over once it lapses.",
    )
    ip_switch_tick_seconds: float = Field(
        default=2.0, gt=0, le=300, description="How often replicas look for due switch steps."
    )
    # Usage tiers (control_plane/metrics: ingest, partitions, retention) — the tiers work.
    metrics_raw_retention_days: float = Field(
        default=14.0, gt=0, le=366, description="Raw agent samples are kept this long."
    )
    metrics_minute_retention_days: float = Field(
        default=90.0, gt=0, le=366, description="1-minute rollups are kept this long."
    )
    metrics_hourly_retention_days: float = Field(
        default=730.0, gt=0, le=3660, description="Hourly rollups are kept this long."
    )
    metrics_partition_ahead_days: int = Field(
        default=7, ge=2, le=90, description="On PostgreSQL, daily partitions of raw samples "
        "and 1-minute rollups exist this many days ahead (made at start and by a periodic job).",
    )  # fmt: skip
    metrics_maintenance_seconds: float = Field(
        default=3600.0, gt=0, le=86_400, description="How often partitions are made ahead "
        "and expired data dropped (any replica; the work is idempotent).",
    )  # fmt: skip
    # Usage history and capacity planning (control_plane/usage, control_plane/capacity).
    forecast_window_days: float = Field(
        default=30.0, gt=0, le=365, description="History a forecast is fitted on."
    )
    forecast_warning_days: float = Field(
        default=7.0, gt=0, le=90, description="A forecast crossing 80/90/95 % within this "
        "many days raises a forecast check.",
    )  # fmt: skip
    forecast_interval_seconds: float = Field(
        default=3600.0, gt=0, le=86_400, description="How often each server's forecasts "
        "are recomputed (and forecast checks sent).",
    )  # fmt: skip
    forecast_min_days: int = Field(
        default=3, ge=2, le=60, description="Days with data a forecast needs (fewer: unknown)."
    )
    forecast_anomaly_k: float = Field(
        default=5.0, gt=0, le=50, description="An hour is an anomaly when it is more than "
        "this many (normal-scaled) MADs from its hour-of-week (or hour-of-day) median.",
    )  # fmt: skip
    # Recommendations and resizes (control_plane/resize).
    recommendation_percentile: float = Field(
        default=90.0, gt=0, le=100, description="Usage percentile a plan is sized to."
    )
    recommendation_headroom: float = Field(
        default=1.15, ge=1.0, le=5.0, description="Headroom multiplied onto that percentile "
        "(VPA-style target = p90 × 1.15).",
    )  # fmt: skip
    local_plan_prices: str = Field(
        default="", description="Monthly prices of the local provider's plans, e.g. "
        "'local-small=5.00,local-medium=10.00' (unlisted plans cost 0), so demos show money.",
    )  # fmt: skip
    recommendation_window_days: float = Field(
        default=30.0, gt=0, le=730, description="Usage a recommendation is sized on (hourly)."
    )
    recommendation_min_hours: int = Field(
        default=24, ge=1, le=17_520, description="Hourly points per resource a recommendation "
        "needs in its window (fewer: unknown, not enough data).",
    )  # fmt: skip
    resize_step_timeout_seconds: float = Field(
        default=900.0, gt=0, le=86_400, description="A resize step (or its revert) not "
        "finished within this fails (and the resize is reverted).",
    )  # fmt: skip
    resize_lease_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="A replica's claim on a running resize; "
        "another takes over once it lapses.",
    )  # fmt: skip
    resize_tick_seconds: float = Field(
        default=2.0, gt=0, le=300, description="How often replicas look for due resize steps."
    )

    # Cost tracking (costs/).
    cost_currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$", description="The currency of the prices set "
        "by settings (local plans, extra IPs, backup storage, bandwidth).",
    )  # fmt: skip
    ip_monthly_price: Decimal = Field(
        default=Decimal("4.99"), ge=0, description="An extra IP address a month (every "
        "address of a server beyond the one its plan includes).",
    )  # fmt: skip
    backup_storage_prices: str = Field(
        default="s3=0.023,b2=0.006,gs=0.020,azure=0.018,sftp=0.010,rest=0.010,local=0",
        description="Backup storage per GB-month by repository kind (restic's repository "
        "URL scheme; a plain path is 'local'), e.g. 's3=0.023,sftp=0.01'.",
    )  # fmt: skip
    bandwidth_overage_price: Decimal = Field(
        default=Decimal("0.01"), ge=0, description="A GB sent beyond the plan's monthly "
        "allowance.",
    )  # fmt: skip
    price_refresh_interval_seconds: float = Field(
        default=86_400.0, gt=0, le=30 * 86_400, description="How often the price catalog "
        "is refreshed from the providers' price lists and the settings.",
    )  # fmt: skip
    cost_metering_interval_seconds: float = Field(
        default=3600.0, gt=0, le=86_400, description="How often today's backup sizes, "
        "bandwidth and shared servers' split weights are read into the ledger.",
    )  # fmt: skip
    budget_check_interval_seconds: float = Field(
        default=3600.0, gt=0, le=86_400, description="How often budgets are compared with "
        "month-to-date cost and its projection.",
    )  # fmt: skip
    invoice_tolerance_percent: Decimal = Field(
        default=Decimal("2"), ge=0, le=100, description="An invoice line further than this "
        "from MailFleet's own figure for the server is flagged.",
    )  # fmt: skip

    # The web console (web/).
    web_session_idle_seconds: float = Field(
        default=1800.0, gt=0, le=30 * 86_400, description="A console session unused this "
        "long ends (sign in again).",
    )  # fmt: skip
    web_login_max_failures: int = Field(
        default=10, ge=1, le=10_000, description="Failed console sign-ins one client address "
        "may make within MAILFLEET_WEB_LOGIN_WINDOW_SECONDS before it is refused (429).",
    )  # fmt: skip
    web_login_window_seconds: float = Field(
        default=900.0, gt=0, le=86_400, description="The window failed sign-ins are counted in."
    )
    trusted_proxies: str = Field(
        default="", description="Comma-separated addresses or networks (e.g. '127.0.0.1,"
        "10.0.0.0/8') whose X-Forwarded-Proto/-For the console believes.",
    )  # fmt: skip

    def auto_pauses_on(self, trigger: str) -> bool:
        """Whether ``trigger`` ('listing' or 'bounces') pauses an address by itself."""
        return trigger in self.reputation_auto_pause.split(",")

    @model_validator(mode="after")
    def _resource_levels_ascend(self) -> Settings:
        levels = (
            self.health_resource_info_percent,
            self.health_resource_warning_percent,
            self.health_resource_critical_percent,
        )
        if not levels[0] <= levels[1] <= levels[2]:
            raise ValueError(
                "MAILFLEET_HEALTH_RESOURCE_{INFO,WARNING,CRITICAL}_PERCENT must ascend"
            )
        return self

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        """Resolved here, once: later work (a local VPS's boot) runs in other directories."""
        return value.expanduser().resolve()

    @field_validator("dnsbl_lists")
    @classmethod
    def _dnsbl_catalog(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is not None:  # a bad catalog is a start-up error, not an hourly one
            from control_plane.dnsbl.catalog import parse_lists

            parse_lists(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():  # a typo stops the start, not every request behind the proxy
                ipaddress.ip_network(part.strip(), strict=False)
        return value

    @field_validator("local_plan_prices")
    @classmethod
    def _plan_prices(cls, value: str) -> str:
        parse_plan_prices(value)
        return value

    @field_validator("backup_storage_prices")
    @classmethod
    def _storage_prices(cls, value: str) -> str:
        parse_storage_prices(value)
        return value

    @field_validator("dnsbl_resolvers")
    @classmethod
    def _dnsbl_resolvers(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            host = parse_host_port(item)[0] if item.count(":") == 1 or "]" in item else item
            ipaddress.ip_address(host)  # asked directly: an address, not a name to resolve
        return value

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

    @field_validator("vault_addr", "api_advertise_url")
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
    def sqlite_file(self) -> Path | None:
        """The SQLite database file, if the database is one (None for PostgreSQL)."""
        # SQLAlchemy is imported here, not with the module: every `mailfleet` run reads
        # the settings, and most of them never look at the URL.
        from sqlalchemy.engine import make_url

        url = make_url(self.resolved_database_url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(url.database).absolute()

    @property
    def agent_wheelhouse(self) -> Path:
        return self.agent_wheelhouse_dir or self.home / "agent-wheels"

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
    def smtp_observer_advertised(self) -> str | None:
        return self.smtp_observer_advertise or self.smtp_observer_addr

    @property
    def managed_vault(self) -> bool:
        """True when MailFleet runs its own single-machine OpenBao."""
        return self.vault_addr is None


def parse_plan_prices(
    value: str, *, key: str = "plan", example: str = "local-small=5.00"
) -> dict[str, Decimal]:
    """``local-small=5.00,local-medium=10.00`` → plan id → monthly price (ValueError);
    ``key`` and ``example`` word the error for other lists (``kind``, ``s3=0.023``)."""
    prices: dict[str, Decimal] = {}
    for pair in filter(None, (part.strip() for part in value.split(","))):
        name, sep, price = pair.partition("=")
        try:
            amount = Decimal(price.strip())
        except ArithmeticError:
            amount = Decimal("NaN")
        if not sep or not name.strip() or not amount.is_finite() or amount < 0:
            raise ValueError(f"expected {key}=price pairs (e.g. {example}), got {pair!r}")
        prices[name.strip()] = amount
    return prices


def parse_storage_prices(value: str) -> dict[str, Decimal]:
    """``s3=0.023,sftp=0.01`` → repository kind → price per GB-month (ValueError)."""
    return parse_plan_prices(value, key="kind", example="s3=0.023")


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation errors into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{ENV_PREFIX}{field.upper()}: {message}") from None


@dataclass(frozen=True)
class Home:
    """Where a command finds its state, and why there (said when something is missing)."""

    path: Path
    source: str


def home_pointer() -> Path:
    """Where ``serve`` records its home for commands run in other directories."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mailfleet" / "home"


def find_home() -> Home:
    """The one rule for commands other than ``serve``: ``MAILFLEET_HOME``; else the home the
    last ``mailfleet serve`` recorded (``home_pointer()``); else ``./var``."""
    given = os.environ.get(f"{ENV_PREFIX}HOME")
    if given:
        return Home(Path(given).expanduser().resolve(), "MAILFLEET_HOME")
    pointer = home_pointer()
    try:
        recorded = Path(pointer.read_text().strip())
    except (OSError, ValueError):
        recorded = None
    if recorded is not None and recorded.is_absolute() and recorded.is_dir():
        return Home(recorded, f"recorded by 'mailfleet serve' in {pointer}")
    return Home(Path("var").resolve(), "the default ./var")


def _recordable(settings: Settings) -> dict[str, Any]:
    """The settings ``serve`` was given (the environment holds no secrets; a database URL
    carrying a password is left out)."""
    from sqlalchemy.engine import make_url

    names = set(settings.model_fields_set) - {"home"}
    if settings.database_url and make_url(settings.database_url).password is not None:
        names.discard("database_url")
    return settings.model_dump(mode="json", include=names)


def record_serve(settings: Settings, pid: int) -> None:
    """Leave this ``serve``'s settings in ``$MAILFLEET_HOME/serve.json`` and its home in the
    user's config, so the CLI in another shell (another directory, no variables set) works
    on the same state with the same providers."""
    record = {"pid": pid, "home": str(settings.home), "settings": _recordable(settings)}
    target = settings.home / SERVE_RECORD
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(target)
        pointer = home_pointer()
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.write_text(f"{settings.home}\n")
    except (OSError, RuntimeError) as exc:  # RuntimeError: no home directory to be found
        log.warning("could not record settings for commands in other shells: %s", exc)


def recorded_settings(home: Path) -> dict[str, Any]:
    """What the last ``serve`` on ``home`` recorded; {} when none did."""
    try:
        record = json.loads((home / SERVE_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    found = record.get("settings") if isinstance(record, dict) else None
    return dict(found) if isinstance(found, dict) else {}


def load_client_settings() -> tuple[Settings, Home]:
    """Settings for commands other than ``serve``: the environment first, then what ``serve``
    recorded in the home (``find_home``), then the defaults."""
    home = find_home()
    recorded = {
        name: value
        for name, value in recorded_settings(home.path).items()
        if f"{ENV_PREFIX}{name.upper()}" not in os.environ
    }
    return load_settings(**recorded, home=home.path), home
