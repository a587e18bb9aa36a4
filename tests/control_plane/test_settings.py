from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_ones(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAILFLEET_HOME", str(tmp_path))
    settings = load_settings()
    assert (
        settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/mailfleet.db"
    )
    assert settings.api_addr == "127.0.0.1:8080"
    assert settings.grpc_addr == "127.0.0.1:8443"
    assert settings.managed_vault


def test_postgres_urls_get_the_async_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLEET_DATABASE_URL", "postgresql://mf@db.internal/mailfleet")
    assert load_settings().resolved_database_url == "postgresql+asyncpg://mf@db.internal/mailfleet"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAILFLEET_API_ADDR", "localhost"),
        ("MAILFLEET_API_ADDR", "127.0.0.1:99999"),
        ("MAILFLEET_GRPC_ADDR", "[::1:8443"),
        ("MAILFLEET_DATABASE_URL", "mysql://x/y"),
        ("MAILFLEET_VAULT_ADDR", "vault.internal:8200"),
        ("MAILFLEET_LOG_LEVEL", "chatty"),
        ("MAILFLEET_VAULT_TIMEOUT_SECONDS", "-1"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(f"{name}: ")
    assert "\n" not in message


def test_ipv6_addresses_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLEET_API_ADDR", "[::1]:8080")
    assert load_settings().api_addr == "[::1]:8080"
