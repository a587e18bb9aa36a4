"""Domains, mailboxes, aliases and DKIM keys through Mailu's REST API after a real install
on a real engine: the agent, in the VPS's namespace, finds the API's port and token in the
files it wrote and reaches the stand-in admin container, which forwards to the Mailu API
double. Each test uses its own domain: they share one install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.errors import CommandError
from agent.mailu.mail import (
    alias_delete,
    alias_ensure,
    dkim_remove,
    domain_delete,
    domain_ensure,
    mailbox_delete,
    mailbox_ensure,
)
from tests.agent.conftest import SECRETS, InstalledMailu, quiet


@pytest.fixture
def vps(mailu_installed: InstalledMailu) -> InstalledMailu:
    return mailu_installed


async def test_domains_and_mailboxes_are_ensured_idempotently(vps: InstalledMailu) -> None:
    assert await vps.call(domain_ensure, {"domain": "example.net"}) == {
        "domain": "example.net",
        "created": True,
    }
    assert (await vps.call(domain_ensure, {"domain": "example.net"}))["created"] is False
    mailbox: dict[str, Any] = {
        "email": "sales@example.net",
        "raw_password": "first-password-123",
        "quota_bytes": 2 * 10**9,
        "displayed_name": "Sales",
    }
    assert (await vps.call(mailbox_ensure, mailbox))["action"] == "created"
    stored = vps.mailu()["users"]["sales@example.net"]
    assert stored["raw_password"] == "first-password-123" and stored["quota_bytes"] == 2 * 10**9
    assert stored["enable_pop"] is False and stored["enabled"] is True

    rotated = {**mailbox, "raw_password": "second-password-456", "enabled": False}
    assert (await vps.call(mailbox_ensure, rotated))["action"] == "updated"
    assert vps.mailu()["users"]["sales@example.net"]["raw_password"] == "second-password-456"
    assert vps.mailu()["users"]["sales@example.net"]["enabled"] is False

    assert (await vps.call(mailbox_delete, {"email": "sales@example.net"}))["deleted"] is True
    assert (await vps.call(mailbox_delete, {"email": "sales@example.net"}))["deleted"] is False
    assert (await vps.call(domain_delete, {"domain": "example.net"}))["deleted"] is True
    assert "example.net" not in vps.mailu()["domains"]
    assert "sales@example.net" not in vps.mailu()["users"]


async def test_mailu_refusals_come_back_as_clear_reasons(vps: InstalledMailu) -> None:
    root = vps.root
    mailbox = {"email": "x@nowhere.example", "raw_password": "long-enough-pass"}
    with pytest.raises(CommandError, match=r"404 Domain nowhere\.example does not exist"):
        await vps.call(mailbox_ensure, mailbox)
    with pytest.raises(CommandError, match=r"payload\.raw_password"):
        await vps.call(mailbox_ensure, {"email": "x@example.net", "raw_password": "short"})
    with pytest.raises(CommandError, match=r"payload\.domain"):
        await vps.call(domain_ensure, {"domain": "bad domain"})

    env = root / "mailu" / "mailu.env"
    written = env.read_text()
    env.write_text(written.replace(SECRETS["api_token"], "a-wrong-token-000"))
    try:
        with pytest.raises(CommandError, match="403 Invalid API token"):
            await vps.call(domain_ensure, {"domain": "refused.example"})
    finally:
        env.write_text(written)


async def test_without_mailu_installed_the_commands_say_so(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="MailU is not installed"):
        await domain_ensure(tmp_path, {"domain": "example.net"}, quiet)


async def test_a_domains_dkim_key_is_installed_where_mailu_reads_it(vps: InstalledMailu) -> None:
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
    result = await vps.call(domain_ensure, payload)
    assert result["dkim_key"] == "dkim/bücher.example.mf202611.key"  # Mailu's file name: Unicode
    path = vps.root / "mailu" / result["dkim_key"]
    assert path.read_text() == key and path.stat().st_mode & 0o777 == 0o600
    assert "DKIM_SELECTOR=dkim" in (vps.root / "mailu" / "mailu.env").read_text()
    with pytest.raises(CommandError, match=r"payload\.dkim_private_key"):
        await vps.call(domain_ensure, {**payload, "dkim_private_key": "not a key"})

    # A rotation installs the next selector's key beside it, then retires the old one.
    await vps.call(domain_ensure, {**payload, "dkim_selector": "mf202612"})
    retire = {"selector": "mf202611", "domains": ["xn--bcher-kva.example"]}
    assert (await vps.call(dkim_remove, retire))["removed"] == [result["dkim_key"]]
    assert not path.exists()
    assert (vps.root / "mailu" / "dkim" / "bücher.example.mf202612.key").exists()
    assert (await vps.call(dkim_remove, retire))["removed"] == []  # idempotent


async def test_aliases_deliver_only_to_mailu_users_and_are_ensured_idempotently(
    vps: InstalledMailu,
) -> None:
    await vps.call(domain_ensure, {"domain": "aliases.example"})
    for name in ("sales", "ops"):
        box = {"email": f"{name}@aliases.example", "raw_password": "long-enough-pass"}
        await vps.call(mailbox_ensure, box)
    alias = {
        "email": "info@aliases.example",
        "destination": ["sales@aliases.example"],
        "comment": "web",
    }
    assert (await vps.call(alias_ensure, alias))["action"] == "created"
    moved = {**alias, "destination": ["sales@aliases.example", "ops@aliases.example"]}
    assert (await vps.call(alias_ensure, moved))["action"] == "updated"
    stored = vps.mailu()["aliases"]["info@aliases.example"]
    assert stored["destination"] == ["sales@aliases.example", "ops@aliases.example"]
    stranger = {**alias, "destination": ["nobody@aliases.example"]}
    with pytest.raises(CommandError, match="404 Provided destination email address nobody"):
        await vps.call(alias_ensure, stranger)
    with pytest.raises(CommandError, match=r"payload\.destination"):
        await vps.call(alias_ensure, {**alias, "destination": []})
    assert (await vps.call(alias_delete, {"email": "info@aliases.example"}))["deleted"] is True
    assert (await vps.call(alias_delete, {"email": "info@aliases.example"}))["deleted"] is False
    await vps.call(domain_delete, {"domain": "aliases.example"})
