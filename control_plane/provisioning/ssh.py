"""Each server's admin SSH key pair: made here, the private half kept only in Vault.

The public half goes to the provider (and so into the VPS's ``authorized_keys``); the
private half is read from Vault when someone needs a shell, and a tenant may take one copy
of it (``download_once``). Rotation writes a new pair as a new Vault version, so the old
one stays readable in the version history until the new key is known to be installed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_plane.vault.client import Vault, server_secret_path

_SSH_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)


@dataclass(frozen=True)
class SshKeyPair:
    private_key: str  # OpenSSH PEM
    public_key: str  # one authorized_keys line


@dataclass(frozen=True)
class SshLogin:
    """How MailFleet logs in to a server's machine as root: a private key (OpenSSH or PEM
    text) or a password. Read from Vault into memory for one connection, never kept."""

    private_key: str | None = None
    password: str | None = None


def admin_key_path(tenant_id: uuid.UUID, server_id: uuid.UUID) -> str:
    return server_secret_path(tenant_id, server_id, "admin_ssh")


def login_path(tenant_id: uuid.UUID, server_id: uuid.UUID) -> str:
    """An adopted machine's credential, as its owner gave it (``ssh_adopt.py``); apart from
    ``admin_ssh`` so the one-time download never hands it back."""
    return server_secret_path(tenant_id, server_id, "ssh_login")


async def read_login(
    vault: Vault, tenant_id: uuid.UUID, server_id: uuid.UUID, adopted: bool
) -> SshLogin | None:
    """The credential the install over SSH logs in with: an adopted machine's own, else
    the server's admin key (None: not in Vault)."""
    if adopted:
        stored = await vault.get(login_path(tenant_id, server_id))
        if stored is None:
            return None
        return SshLogin(stored.get("private_key"), stored.get("password"))
    pair = await read_admin_key(vault, tenant_id, server_id)
    return SshLogin(private_key=pair.private_key) if pair is not None else None


def _as_secret(pair: SshKeyPair) -> dict[str, str]:
    return {"private_key": pair.private_key, "public_key": pair.public_key}


def new_key_pair(comment: str) -> SshKeyPair:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return SshKeyPair(private_key=private, public_key=f"{public} {comment}")


async def ensure_admin_key(vault: Vault, tenant_id: uuid.UUID, server_id: uuid.UUID) -> str:
    """The server's public key, making the pair on first call (idempotent, race-safe)."""

    def make() -> dict[str, str]:
        return _as_secret(new_key_pair(f"mailfleet-{server_id}"))

    return (await vault.ensure(admin_key_path(tenant_id, server_id), make))["public_key"]


def public_half(private_key: str, comment: str) -> str:
    """The ``authorized_keys`` line of a private key in OpenSSH or PEM form; ``ValueError``
    when it is not an unencrypted private key we can read."""
    data = private_key.encode()
    try:
        key: object = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"not a readable private key: {type(exc).__name__}") from None
    if not isinstance(key, _SSH_KEYS):
        raise ValueError(f"not a key type SSH takes: {type(key).__name__}")
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{public.decode()} {comment}"


class IssuedAdminKey:
    """``IssuedKeys`` for one server: a key pair its provider made (Hostwinds'
    ``add_ssh_key``) replaces the one made here in the server's ``admin_ssh`` secret, so all
    that reads the admin key (a shell, a download, the agent's install over SSH) gets the key
    the VPS trusts. ``provider_key`` records the provider's name for it."""

    def __init__(self, vault: Vault, tenant_id: uuid.UUID, server_id: uuid.UUID) -> None:
        self.vault, self.tenant_id, self.server_id = vault, tenant_id, server_id
        self.path = admin_key_path(tenant_id, server_id)

    async def issued(self, key_name: str) -> bool:
        stored = await self.vault.get(self.path)
        return stored is not None and stored.get("provider_key") == key_name

    async def keep(self, key_name: str, private_key: str) -> None:
        public = public_half(private_key, f"mailfleet-{self.server_id}")
        secret = {"private_key": private_key, "public_key": public, "provider_key": key_name}
        await self.vault.put(self.path, secret)


async def rotate_admin_key(vault: Vault, tenant_id: uuid.UUID, server_id: uuid.UUID) -> SshKeyPair:
    pair = new_key_pair(f"mailfleet-{server_id}")
    await vault.put(
        admin_key_path(tenant_id, server_id),
        {"private_key": pair.private_key, "public_key": pair.public_key},
    )
    return pair


async def read_admin_key(
    vault: Vault, tenant_id: uuid.UUID, server_id: uuid.UUID
) -> SshKeyPair | None:
    stored = await vault.get(admin_key_path(tenant_id, server_id))
    if stored is None:
        return None
    return SshKeyPair(private_key=stored["private_key"], public_key=stored["public_key"])


async def delete_server_secrets(vault: Vault, tenant_id: uuid.UUID, server_id: uuid.UUID) -> None:
    """Destroy every secret under the server's prefix (all versions)."""
    prefix = server_secret_path(tenant_id, server_id)
    for name in await vault.list(prefix):
        if not name.endswith("/"):
            await vault.delete(f"{prefix}/{name}")
