"""The secrets module against a real OpenBao."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from control_plane.settings import Settings, SettingsError
from control_plane.vault.client import Vault, VaultError, secret_path
from control_plane.vault.connect import external_vault
from tests.support.openbao import DevOpenBao


async def test_put_get_version_and_delete(vault: Vault) -> None:
    path = secret_path("tests", uuid.uuid4())
    assert await vault.get(path) is None
    assert await vault.put(path, {"password": "s3cret"}) == 1
    assert await vault.put(path, {"password": "rotated"}) == 2
    assert await vault.get(path) == {"password": "rotated"}
    assert path.rsplit("/", 1)[1] in await vault.list("tests")
    await vault.delete(path)
    assert await vault.get(path) is None
    await vault.delete(path)  # deleting twice is fine


async def test_check_and_set_refuses_a_lost_update(vault: Vault) -> None:
    path = secret_path("tests", uuid.uuid4())
    await vault.put(path, {"v": "1"}, cas=0)
    with pytest.raises(VaultError):
        await vault.put(path, {"v": "2"}, cas=0)
    assert await vault.get(path) == {"v": "1"}


async def test_wrong_token_and_unreachable_vault_are_clear_errors(openbao: DevOpenBao) -> None:
    wrong = Vault(openbao.url, token="not-the-token")
    with pytest.raises(VaultError, match="permission denied"):
        await wrong.get("anything")
    nowhere = Vault("http://127.0.0.1:9", token="x", timeout=1)
    with pytest.raises(VaultError, match="unreachable"):
        await nowhere.get("anything")
    assert not await nowhere.is_ready()


def test_secret_paths_cannot_escape_their_prefix() -> None:
    assert secret_path("smtp", "t1", "box@example.com") == "smtp/t1/box@example.com"
    for bad in ("..", "a/b", "", "x" * 201, "sp ace"):
        with pytest.raises(ValueError, match="invalid secret path segment"):
            secret_path("smtp", bad)


def test_vault_repr_hides_the_token(openbao: DevOpenBao) -> None:
    assert openbao.token not in repr(Vault(openbao.url, token=openbao.token))


async def test_token_comes_from_a_file_never_the_environment(
    openbao: DevOpenBao, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(openbao.token + "\n")
    client = external_vault(Settings(vault_addr=openbao.url, vault_token_file=token_file))
    assert await client.is_ready()
    with pytest.raises(SettingsError, match="MAILFLEET_VAULT_TOKEN_FILE"):
        external_vault(Settings(vault_addr=openbao.url))
    with pytest.raises(SettingsError, match="cannot read"):
        external_vault(Settings(vault_addr=openbao.url, vault_token_file=tmp_path / "missing"))
