"""Domains and mailboxes through Mailu's REST API after a real install against the docker
double, whose "admin container" is the Mailu API double: the agent finds the API's port and
token in the files it wrote."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent.errors import CommandError
from agent.mailu.install import install
from agent.mailu.mail import (
    alias_delete,
    alias_ensure,
    dkim_remove,
    domain_delete,
    domain_ensure,
    mailbox_delete,
    mailbox_ensure,
)
from tests.agent.test_mailu_install import PAYLOAD as REAL_PAYLOAD
from tests.agent.test_mailu_install import SECRETS
from tests.fakes import docker_cli
from tests.fakes.docker_cli import OnPath as Docker
from tests.fakes.docker_cli import payload_for_double

PAYLOAD = payload_for_double(REAL_PAYLOAD)  # still on the docker double


def quiet(percent: int, message: str) -> None:
    pass


class Installed:
    def __init__(self, root: Path, docker: Docker) -> None:
        self.root, self.docker = root, docker

    def mailu(self) -> dict[str, Any]:
        """What the Mailu API double holds (its state file)."""
        path = docker_cli.api_state_file(self.docker.state, self.root / "mailu")
        return dict(json.loads(path.read_text())) if path.exists() else {}


@pytest_asyncio.fixture
async def vps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Installed]:
    docker = Docker(tmp_path, monkeypatch)
    try:
        await install(tmp_path / "vps", PAYLOAD, quiet)
        yield Installed(tmp_path / "vps", docker)
    finally:
        docker_cli.stop_all(docker.state)


async def test_domains_and_mailboxes_are_ensured_idempotently(vps: Installed) -> None:
    root = vps.root
    assert await domain_ensure(root, {"domain": "example.net"}, quiet) == {
        "domain": "example.net",
        "created": True,
    }
    assert (await domain_ensure(root, {"domain": "example.net"}, quiet))["created"] is False
    mailbox: dict[str, Any] = {
        "email": "sales@example.net",
        "raw_password": "first-password-123",
        "quota_bytes": 2 * 10**9,
        "displayed_name": "Sales",
    }
    assert (await mailbox_ensure(root, mailbox, quiet))["action"] == "created"
    stored = vps.mailu()["users"]["sales@example.net"]
    assert stored["raw_password"] == "first-password-123" and stored["quota_bytes"] == 2 * 10**9
    assert stored["enable_pop"] is False and stored["enabled"] is True

    rotated = {**mailbox, "raw_password": "second-password-456", "enabled": False}
    assert (await mailbox_ensure(root, rotated, quiet))["action"] == "updated"
    assert vps.mailu()["users"]["sales@example.net"]["raw_password"] == "second-password-456"
    assert vps.mailu()["users"]["sales@example.net"]["enabled"] is False

    assert (await mailbox_delete(root, {"email": "sales@example.net"}, quiet))["deleted"] is True
    assert (await mailbox_delete(root, {"email": "sales@example.net"}, quiet))["deleted"] is False
    assert (await domain_delete(root, {"domain": "example.net"}, quiet))["deleted"] is True
    assert vps.mailu()["domains"] == {} and vps.mailu()["users"] == {}


async def test_mailu_refusals_come_back_as_clear_reasons(vps: Installed) -> None:
    root = vps.root
    mailbox = {"email": "x@nowhere.example", "raw_password": "long-enough-pass"}
    with pytest.raises(CommandError, match=r"404 Domain nowhere\.example does not exist"):
        await mailbox_ensure(root, mailbox, quiet)
    with pytest.raises(CommandError, match=r"payload\.raw_password"):
        await mailbox_ensure(root, {"email": "x@example.net", "raw_password": "short"}, quiet)
    with pytest.raises(CommandError, match=r"payload\.domain"):
        await domain_ensure(root, {"domain": "bad domain"}, quiet)

    env = root / "mailu" / "mailu.env"
    env.write_text(env.read_text().replace(SECRETS["api_token"], "a-wrong-token-000"))
    with pytest.raises(CommandError, match="403 Invalid API token"):
        await domain_ensure(root, {"domain": "example.net"}, quiet)


async def test_without_mailu_installed_the_commands_say_so(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="MailU is not installed"):
        await domain_ensure(tmp_path, {"domain": "example.net"}, quiet)


async def test_a_domains_dkim_key_is_installed_where_mailu_reads_it(vps: Installed) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    payload = {
        "domain": "xn--bcher-kva.example",
        "dkim_selector": "mf202611",
        "dkim_private_key": key,
    }
    result = await domain_ensure(vps.root, payload, quiet)
    assert result["dkim_key"] == "dkim/bücher.example.mf202611.key"  # Mailu's file name: Unicode
    path = vps.root / "mailu" / result["dkim_key"]
    assert path.read_text() == key and path.stat().st_mode & 0o777 == 0o600
    assert "DKIM_SELECTOR=dkim" in (vps.root / "mailu" / "mailu.env").read_text()
    with pytest.raises(CommandError, match=r"payload\.dkim_private_key"):
        await domain_ensure(vps.root, {**payload, "dkim_private_key": "not a key"}, quiet)

    # A rotation installs the next selector's key beside it, then retires the old one.
    await domain_ensure(vps.root, {**payload, "dkim_selector": "mf202612"}, quiet)
    retire = {"selector": "mf202611", "domains": ["xn--bcher-kva.example"]}
    assert (await dkim_remove(vps.root, retire, quiet))["removed"] == [result["dkim_key"]]
    assert not path.exists()
    assert (vps.root / "mailu" / "dkim" / "bücher.example.mf202612.key").exists()
    assert (await dkim_remove(vps.root, retire, quiet))["removed"] == []  # idempotent


async def test_aliases_deliver_only_to_mailu_users_and_are_ensured_idempotently(
    vps: Installed,
) -> None:
    root = vps.root
    await domain_ensure(root, {"domain": "example.net"}, quiet)
    for name in ("sales", "ops"):
        box = {"email": f"{name}@example.net", "raw_password": "long-enough-pass"}
        await mailbox_ensure(root, box, quiet)
    alias = {"email": "info@example.net", "destination": ["sales@example.net"], "comment": "web"}
    assert (await alias_ensure(root, alias, quiet))["action"] == "created"
    moved = {**alias, "destination": ["sales@example.net", "ops@example.net"]}
    assert (await alias_ensure(root, moved, quiet))["action"] == "updated"
    stored = vps.mailu()["aliases"]["info@example.net"]
    assert stored["destination"] == ["sales@example.net", "ops@example.net"]
    stranger = {**alias, "destination": ["nobody@example.net"]}
    with pytest.raises(CommandError, match="404 Provided destination email address nobody"):
        await alias_ensure(root, stranger, quiet)
    with pytest.raises(CommandError, match=r"payload\.destination"):
        await alias_ensure(root, {**alias, "destination": []}, quiet)
    assert (await alias_delete(root, {"email": "info@example.net"}, quiet))["deleted"] is True
    assert (await alias_delete(root, {"email": "info@example.net"}, quiet))["deleted"] is False
