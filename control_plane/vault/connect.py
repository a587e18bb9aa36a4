"""Build the process's Vault client from settings: token file, AppRole, or the local OpenBao."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import hvac

from control_plane.settings import Settings, SettingsError
from control_plane.vault.client import Vault
from control_plane.vault.local import LocalOpenBao


def _read_secret_file(path: Path, setting: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise SettingsError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise SettingsError(f"{setting}: {path} is empty")
    return value


def external_vault(settings: Settings) -> Vault:
    """A client for the Vault named by MAILFLEET_VAULT_ADDR."""
    assert settings.vault_addr is not None
    options = {
        "kv_mount": settings.vault_kv_mount,
        "timeout": settings.vault_timeout_seconds,
        "ca_cert": settings.vault_ca_cert,
    }
    if settings.vault_approle_role_id:
        if settings.vault_approle_secret_id_file is None:
            raise SettingsError(
                "MAILFLEET_VAULT_APPROLE_SECRET_ID_FILE: "
                "required with MAILFLEET_VAULT_APPROLE_ROLE_ID"
            )
        role_id = settings.vault_approle_role_id
        secret_file = settings.vault_approle_secret_id_file

        def login(client: hvac.Client) -> None:
            secret_id = _read_secret_file(secret_file, "MAILFLEET_VAULT_APPROLE_SECRET_ID_FILE")
            client.auth.approle.login(role_id=role_id, secret_id=secret_id)

        return Vault(settings.vault_addr, login=login, **options)  # type: ignore[arg-type]
    if settings.vault_token_file is None:
        raise SettingsError(
            "MAILFLEET_VAULT_TOKEN_FILE: required with MAILFLEET_VAULT_ADDR (or use AppRole)"
        )
    token = _read_secret_file(settings.vault_token_file, "MAILFLEET_VAULT_TOKEN_FILE")
    return Vault(settings.vault_addr, token=token, **options)  # type: ignore[arg-type]


def running_vault(settings: Settings) -> Vault:
    """A client for the Vault ``serve`` uses, without starting one (for CLI commands)."""
    if not settings.managed_vault:
        return external_vault(settings)
    local = LocalOpenBao(settings.home, settings.local_vault_addr)
    try:
        token = json.loads(local.init_file.read_text())["root_token"]
    except (OSError, ValueError, KeyError):
        raise SettingsError(
            f"MAILFLEET_HOME: no local OpenBao under {local.dir}; run 'mailfleet serve' first"
        ) from None
    return Vault(
        local.url,
        token=token,
        kv_mount=settings.vault_kv_mount,
        timeout=settings.vault_timeout_seconds,
    )


@asynccontextmanager
async def open_vault(settings: Settings) -> AsyncIterator[Vault]:
    """The configured Vault for the lifetime of the block, starting a local OpenBao if needed."""
    local: LocalOpenBao | None = None
    if settings.managed_vault:
        local = LocalOpenBao(settings.home, settings.local_vault_addr)
        creds = await local.start()
        vault = Vault(
            creds.url,
            token=creds.token,
            kv_mount=settings.vault_kv_mount,
            timeout=settings.vault_timeout_seconds,
        )
    else:
        vault = external_vault(settings)
    try:
        await vault.ensure_kv_mount()
        yield vault
    finally:
        vault.close()
        if local is not None:
            local.stop()
