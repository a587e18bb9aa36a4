"""Domains and mailboxes in the installed MailU, through its REST API on the VPS.

Commands: ``mailu.domain.ensure`` / ``.delete`` (``{"domain": …}``),
``mailu.mailbox.ensure`` / ``.delete`` (``{"email": …, "quota_bytes": …, "enabled": …,
"displayed_name": …}`` plus ``raw_password``, which the control plane's gateway adds from
Vault at delivery), ``mailu.alias.ensure`` / ``.delete`` (``{"email": …, "destination":
[…], "comment": …}``) and ``mailu.dkim.remove`` (``{"selector": …, "domains": […]}``, a
retired selector's key files). "Ensure" is idempotent: repeating it leaves MailU as asked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import idna

from agent.errors import CommandError
from agent.files import write_atomically
from agent.mailu.api import MailuApi
from agent.mailu.install import Progress, mailu_dir

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_SELECTOR = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")


def _domain(payload: dict[str, Any]) -> str:
    name = str(payload.get("domain", "")).lower()
    if not _DOMAIN.match(name):
        raise CommandError("payload.domain: a domain name in IDNA form")
    return name


def _email(payload: dict[str, Any]) -> str:
    email = str(payload.get("email", "")).lower()
    local, _, domain = email.rpartition("@")
    if not _LOCAL.match(local) or not _DOMAIN.match(domain):
        raise CommandError("payload.email: an address local@domain (domain in IDNA form)")
    return email


async def _with_api(root: Path, work: Any) -> dict[str, Any]:
    api = MailuApi.for_install(mailu_dir(root))
    try:
        result: dict[str, Any] = await work(api)
        return result
    finally:
        await api.aclose()


async def domain_ensure(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """The domain in MailU and, when the payload carries one, its DKIM key in place."""
    name = _domain(payload)
    key = payload.get("dkim_private_key")
    selector = str(payload.get("dkim_selector", ""))
    if key is not None:
        if not isinstance(key, str) or not key.startswith("-----BEGIN PRIVATE KEY-----"):
            raise CommandError("payload.dkim_private_key: a PKCS#8 PEM private key")
        if not _SELECTOR.match(selector):
            raise CommandError("payload.dkim_selector: a DNS label")

    async def work(api: MailuApi) -> dict[str, Any]:
        created = await api.ensure_domain(name)
        result: dict[str, Any] = {"domain": name, "created": created}
        if key is not None:
            path = install_dkim_key(mailu_dir(root), name, selector, key)
            result["dkim_key"] = str(path.relative_to(mailu_dir(root)))
        return result

    return await _with_api(root, work)


def install_dkim_key(directory: Path, domain: str, selector: str, key: str) -> Path:
    """Write the key where Mailu's admin reads it: ``dkim/<domain>.<selector>.key``.

    Mailu names the file after the domain as it stores it (Unicode for IDNs, its DKIM_PATH
    default). Mode 0600, owned like the ``dkim`` directory: Mailu's admin container owns
    that directory and must read the key; nobody else may.
    """
    unicode_name = idna.decode(domain)
    target = directory / "dkim" / f"{unicode_name}.{selector}.key"
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    owner = target.parent.stat()
    write_atomically(target, key, 0o600, (owner.st_uid, owner.st_gid))
    return target


async def domain_delete(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    name = _domain(payload)

    async def work(api: MailuApi) -> dict[str, Any]:
        return {"domain": name, "deleted": await api.delete_domain(name)}

    return await _with_api(root, work)


async def mailbox_ensure(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    email = _email(payload)
    password = payload.get("raw_password")
    if not isinstance(password, str) or len(password) < 12:
        raise CommandError("payload.raw_password: required, at least 12 characters")
    quota = payload.get("quota_bytes", 10**9)
    if not isinstance(quota, int) or isinstance(quota, bool) or quota < 0:
        raise CommandError("payload.quota_bytes: a number of bytes (0: no limit)")
    fields: dict[str, Any] = {
        "raw_password": password,
        "quota_bytes": quota,
        "enabled": payload.get("enabled", True) is not False,
        "displayed_name": str(payload.get("displayed_name", ""))[:160],
        "enable_imap": True,
        "enable_pop": False,
    }

    async def work(api: MailuApi) -> dict[str, Any]:
        return {"email": email, "action": await api.ensure_user(email, fields)}

    return await _with_api(root, work)


async def mailbox_delete(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    email = _email(payload)

    async def work(api: MailuApi) -> dict[str, Any]:
        return {"email": email, "deleted": await api.delete_user(email)}

    return await _with_api(root, work)


async def alias_ensure(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    email = _email(payload)
    raw = payload.get("destination")
    if not isinstance(raw, list) or not raw:
        raise CommandError("payload.destination: a non-empty list of addresses")
    destination = [_email({"email": d}) for d in raw]
    comment = str(payload.get("comment", ""))[:255]

    async def work(api: MailuApi) -> dict[str, Any]:
        return {"email": email, "action": await api.ensure_alias(email, destination, comment)}

    return await _with_api(root, work)


async def alias_delete(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    email = _email(payload)

    async def work(api: MailuApi) -> dict[str, Any]:
        return {"email": email, "deleted": await api.delete_alias(email)}

    return await _with_api(root, work)


async def dkim_remove(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Remove a retired selector's key files (MailU no longer signs with it)."""
    selector = str(payload.get("selector", ""))
    if not _SELECTOR.match(selector):
        raise CommandError("payload.selector: a DNS label")
    domains = payload.get("domains")
    if not isinstance(domains, list):
        raise CommandError("payload.domains: a list of domain names")
    removed = []
    for name in (_domain({"domain": d}) for d in domains):
        target = mailu_dir(root) / "dkim" / f"{idna.decode(name)}.{selector}.key"
        if target.exists():
            target.unlink()
            removed.append(str(target.relative_to(mailu_dir(root))))
    return {"selector": selector, "removed": removed}
