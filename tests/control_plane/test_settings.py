from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.settings import (
    Home,
    SettingsError,
    find_home,
    load_client_settings,
    load_settings,
    record_serve,
)


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


def test_the_home_is_made_absolute_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().home == tmp_path.resolve() / "var"
    monkeypatch.setenv("MAILFLEET_HOME", "state")
    settings = load_settings()
    monkeypatch.chdir("/")
    assert settings.home == tmp_path.resolve() / "state"
    assert settings.local_provider_state_dir == tmp_path.resolve() / "state" / "local-provider"


def test_serve_records_its_settings_for_commands_in_other_shells(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    served = load_settings(
        home=tmp_path / "home",
        local_provider=True,
        local_provider_pool="198.18.7.0/28",
        database_url="postgresql://mf:hunter2@db.internal/mailfleet",
    )
    record_serve(served, 4242)
    record = (tmp_path / "home" / "serve.json").read_text()
    assert "hunter2" not in record

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded, home = load_client_settings()
    assert home.path == tmp_path / "home" and "recorded by 'mailfleet serve'" in home.source
    assert loaded.home == tmp_path / "home"
    assert loaded.local_provider and loaded.local_provider_pool == "198.18.7.0/28"
    assert loaded.database_url is None  # a URL with a password stays in serve's environment

    monkeypatch.setenv("MAILFLEET_LOCAL_PROVIDER", "0")  # the environment wins
    assert not load_client_settings()[0].local_provider
    monkeypatch.setenv("MAILFLEET_HOME", str(elsewhere))
    assert find_home() == Home(elsewhere, "MAILFLEET_HOME")
    assert not load_client_settings()[0].local_provider_pool.startswith("198.18.7.")
