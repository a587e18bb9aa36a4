"""The local provider's ``ssh`` boot mode: a real OpenSSH ``sshd`` as the VPS's boot.

A VPS made in this mode runs no user data; its boot is ``sshd -D -e`` inside its network
namespace (and cgroup), listening on the VPS's main address, port 22, with a host key of its
own and the server's public key as root's only authorized key, so MailFleet's install over
SSH (``provisioning/ssh_install.py``) meets it the way it meets a rented VPS.

Everything sshd reads lives in ``<state>/<id>/ssh/`` (0600 files, made before sshd starts):
``sshd_config``, ``host_ed25519_key`` and ``authorized_keys``. The namespace shares the host's
filesystem, so sessions get ``$MAILFLEET_LOCAL_ROOT`` (the VPS's ``rootfs``, where the agent's
files go), ``$MAILFLEET_VPS_CGROUP`` and the VPS's ``PATH`` by ``SetEnv``, the way the
cloud-init boot gets them from its environment. ``StrictModes`` is off because the state
directory may sit under a world-writable one (``/tmp``); the files themselves are 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_plane.files import write_private

SSH_DIR = "ssh"
CONFIG = "sshd_config"
HOST_KEY = "host_ed25519_key"
AUTHORIZED_KEYS = "authorized_keys"
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it


def host_public_key(instance_dir: Path) -> str:
    """The VPS's host key as ``type base64`` (what MailFleet pins)."""
    data = (instance_dir / SSH_DIR / HOST_KEY).read_bytes()
    key = serialization.load_ssh_private_key(data, password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode()


def lay_out(
    instance_dir: Path,
    address: str,
    authorized_key: str,
    environment: dict[str, str],
    sshd_binary: str,
) -> list[str]:
    """Write sshd's files for one VPS; the command that runs it in the foreground."""
    for name, value in environment.items():
        if any(c in value for c in '"\n\\') or not name.isidentifier():
            raise ValueError(f"{name}={value!r} cannot be passed to sshd's SetEnv")
    directory = instance_dir / SSH_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    write_private(directory / HOST_KEY, key)
    write_private(directory / AUTHORIZED_KEYS, authorized_key.strip().encode() + b"\n")
    setenv = " ".join(f'{name}="{value}"' for name, value in environment.items())
    config = f"""\
ListenAddress {address}:22
HostKey {directory / HOST_KEY}
AuthorizedKeysFile {directory / AUTHORIZED_KEYS}
PidFile none
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTunnel no
PrintMotd no
SetEnv {setenv}
"""
    write_private(directory / CONFIG, config.encode())
    return [sshd_binary, "-D", "-e", "-f", str(directory / CONFIG)]


def available(sshd_binary: str) -> bool:
    return os.access(sshd_binary, os.X_OK)
