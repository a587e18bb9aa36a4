from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.ssh_keys import NotAnAdminKey, authorize

SERVER = "01a2246d-1b87-721c-8e00-b9bf316c245b"


def public_key() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    text = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{text.decode()} mailfleet-{SERVER}"


OLD, NEW = public_key(), public_key()
CUSTOMER = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 alice@laptop"


def test_rotation_replaces_only_mailfleets_line(tmp_path: Path) -> None:
    path = tmp_path / "root" / ".ssh" / "authorized_keys"
    assert authorize(tmp_path, OLD)["replaced"] == 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    path.write_text(f"{CUSTOMER}\n{OLD}\n")
    result = authorize(tmp_path, NEW)
    assert result["replaced"] == 1 and result["fingerprint"].startswith("SHA256:")
    assert path.read_text() == f"{CUSTOMER}\n{NEW}\n"
    assert authorize(tmp_path, NEW)["replaced"] == 1  # again: same file
    assert path.read_text() == f"{CUSTOMER}\n{NEW}\n"


@pytest.mark.parametrize(
    "line",
    [
        "",
        CUSTOMER,
        NEW.replace("mailfleet-", "other-"),
        NEW + "\n" + OLD,
        f"ssh-ed25519 AAAAnotakey mailfleet-{SERVER}",
        f"ssh-ed25519 {CUSTOMER.split()[1]} mailfleet-{SERVER}",
    ],
)
def test_anything_but_a_mailfleet_key_is_refused(tmp_path: Path, line: str) -> None:
    with pytest.raises(NotAnAdminKey):
        authorize(tmp_path, line)
    assert not (tmp_path / "root" / ".ssh" / "authorized_keys").exists()
