"""``docker-compose.yml`` and ``mailu.env`` for a spec, the way Mailu's setup utility lays
them out for its compose flavor (services, images pinned to one release, the data root's
sub-directories as bind mounts, a private subnet with the resolver at a fixed address, the
mail ports published on the VPS address only). Our own rendering of those facts.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from agent.mailu.spec import CLAMAV_IMAGE, REDIS_IMAGE, MailuSpec

_yaml: Any = importlib.import_module("yaml")  # untyped library, imported by name


class _Dumper(_yaml.SafeDumper):  # type: ignore[misc]
    """Each value written out where it is used: no ``&id001`` anchors for shared lists."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# The ports MailU's front serves (its PORTS setting), and only those are published: Mailu's
# default (25, 80, 443, 465, 993, 995, 4190) plus submission (587), how mailboxes send with
# their SMTP credentials. POP3 and IMAP without TLS (110, 143) stay off, as Mailu's default.
SERVED_PORTS = (25, 80, 443, 465, 587, 993, 995, 4190)
DATA_DIRECTORIES = (
    "data", "dkim", "mail", "mailqueue", "filter", "clamav", "redis", "certs", "webmail",
    "overrides/nginx", "overrides/dovecot", "overrides/postfix", "overrides/rspamd", "logs",
)  # fmt: skip


def data_directories(spec: MailuSpec) -> tuple[str, ...]:
    """MailU's data root's sub-directories; the web-mail's overrides are named after it."""
    webmail = () if spec.webmail == "none" else (f"overrides/{spec.webmail}",)
    return (*DATA_DIRECTORIES, *webmail)


# Postfix's log as a file too (MailU's syslog still logs to stdout, and rotates the file
# weekly): the agent's mail counts read it at <data root>/logs/mail.log (agent.toml mail_log).
POSTFIX_LOG_FILE = "/logs/mail.log"


def render_env(spec: MailuSpec) -> str:
    settings: dict[str, str] = {
        "SECRET_KEY": spec.secret_key,
        "SUBNET": spec.subnet,
        "DOMAIN": spec.domain,
        "HOSTNAMES": ",".join(spec.hostnames),
        "POSTMASTER": spec.postmaster,
        "TLS_FLAVOR": spec.tls_flavor,
        "AUTH_RATELIMIT_IP": spec.auth_ratelimit_ip,
        "AUTH_RATELIMIT_USER": spec.auth_ratelimit_user,
        "DISABLE_STATISTICS": "True",
        "ADMIN": "true",
        "WEB_ADMIN": "/admin",
        "WEBMAIL": spec.webmail,
        "WEB_WEBMAIL": "/webmail",
        "API": "true",
        "WEB_API": "/api",
        "API_TOKEN": spec.api_token,
        "WEBDAV": "none",
        "ANTIVIRUS": "clamav" if spec.antivirus else "none",
        "PORTS": ",".join(str(port) for port in SERVED_PORTS),
        "DKIM_SELECTOR": spec.dkim_selector,
        "SCAN_MACROS": "true",
        "MESSAGE_SIZE_LIMIT": str(spec.message_size_limit),
        "MESSAGE_RATELIMIT": spec.message_ratelimit,
        "RELAYNETS": "",
        "RELAYHOST": "",
        "FETCHMAIL_ENABLED": "False",
        "RECIPIENT_DELIMITER": "+",
        "DMARC_RUA": spec.postmaster,
        "DMARC_RUF": spec.postmaster,
        "WELCOME": "false",
        "SITENAME": "MailFleet",
        "LOG_LEVEL": "WARNING",
        "POSTFIX_LOG_FILE": POSTFIX_LOG_FILE,
        "TZ": "Etc/UTC",
        "INITIAL_ADMIN_ACCOUNT": spec.postmaster,
        "INITIAL_ADMIN_DOMAIN": spec.domain,
        "INITIAL_ADMIN_PW": spec.admin_password,
        # Vault holds the password: "update" re-applies it on every start, so a rotation
        # (a re-render) takes effect.
        "INITIAL_ADMIN_MODE": "update",
    }
    header = (
        "# MailU settings, written by the MailFleet agent: edits are replaced on the next\n"
        "# install. Holds secrets: mode 0600, read only by MailU's containers.\n"
    )
    return header + "".join(f"{key}={value}\n" for key, value in settings.items())


def render_compose(spec: MailuSpec, data_root: Path) -> str:
    def volume(directory: str, target: str, read_only: bool = False) -> str:
        return f"{data_root / directory}:{target}" + (":ro" if read_only else "")

    dns = [spec.resolver_address]

    def service(image: str, **extra: Any) -> dict[str, Any]:
        return {
            "image": image,
            "restart": "always",
            "env_file": "mailu.env",
            "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
            **extra,
        }

    ports = [f"{spec.bind_address}:{port}:{port}" for port in SERVED_PORTS]
    services: dict[str, Any] = {
        "redis": {
            "image": REDIS_IMAGE,
            "restart": "always",
            "volumes": [volume("redis", "/data")],
            "depends_on": ["resolver"],
            "dns": dns,
        },
        "front": service(
            spec.image("nginx"),
            ports=ports,
            networks=["default", "webmail"] if spec.webmail != "none" else ["default"],
            volumes=[volume("certs", "/certs"), volume("overrides/nginx", "/overrides", True)],
            depends_on=["resolver"],
            dns=dns,
        ),
        "resolver": service(
            spec.image("unbound"),
            networks={"default": {"ipv4_address": spec.resolver_address}},
        ),
        "admin": service(
            spec.image("admin"),
            # The REST API for the agent, on the VPS's loopback only: front would serve it
            # over HTTPS alone, and the control plane never needs Mailu's ports open.
            ports=[f"127.0.0.1:{spec.api_port}:8080"],
            volumes=[volume("data", "/data"), volume("dkim", "/dkim")],
            depends_on=["redis", "resolver"],
            dns=dns,
        ),
        "imap": service(
            spec.image("dovecot"),
            volumes=[volume("mail", "/mail"), volume("overrides/dovecot", "/overrides", True)],
            depends_on=["front", "resolver"],
            dns=dns,
        ),
        "smtp": service(
            spec.image("postfix"),
            volumes=[
                volume("mailqueue", "/queue"),
                volume("logs", "/logs"),
                volume("overrides/postfix", "/overrides", True),
            ],
            depends_on=["front", "resolver"],
            dns=dns,
        ),
        "oletools": {
            "image": spec.image("oletools"),
            "restart": "always",
            "hostname": "oletools",
            "networks": ["oletools"],
            "depends_on": ["resolver"],
            "dns": dns,
        },
        "antispam": service(
            spec.image("rspamd"),
            hostname="antispam",
            networks=["default", "oletools", *(["clamav"] if spec.antivirus else [])],
            volumes=[
                volume("filter", "/var/lib/rspamd"),
                volume("overrides/rspamd", "/overrides", True),
            ],
            depends_on=[
                "front",
                "redis",
                "oletools",
                *(["antivirus"] if spec.antivirus else []),
                "resolver",
            ],
            dns=dns,
        ),
    }
    if spec.antivirus:
        services["antivirus"] = {
            "image": CLAMAV_IMAGE,
            "restart": "always",
            "volumes": [volume("clamav", "/var/lib/clamav")],
            "networks": ["clamav"],
        }
    if spec.webmail != "none":
        services["webmail"] = service(
            spec.image("webmail"),
            volumes=[
                volume("webmail", "/data"),
                volume(f"overrides/{spec.webmail}", "/overrides", True),
            ],
            networks=["webmail"],
            depends_on=["front"],
        )
    networks: dict[str, Any] = {
        "default": {
            "driver": "bridge",
            "ipam": {"driver": "default", "config": [{"subnet": spec.subnet}]},
        },
        "oletools": {"driver": "bridge", "internal": True},
    }
    if spec.antivirus:
        networks["clamav"] = {"driver": "bridge"}
    if spec.webmail != "none":
        networks["webmail"] = {"driver": "bridge"}
    # No top-level ``name``: Compose v1 refuses it; the agent names the project on the
    # command line, as both versions accept.
    document = {"services": services, "networks": networks}
    header = "# MailU, rendered by the MailFleet agent from the control plane's settings.\n"
    body: str = _yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000)
    return header + body
