"""The agent's install over SSH: the ``installing_agent`` step of servers whose provider
bootstraps by SSH (Hostwinds documents no user data, see ``providers/hostwinds.py``).

The control plane connects as ``root`` to the VPS's address with the server's admin key
(an adopted machine: the key or password its owner gave), read from Vault into this
process's memory only (asyncssh is handed the key object, never a file; nothing here logs
it). Then, over that one connection:

1. the host key: the first one met is pinned on the server (``on_first_key`` records it
   before anything else is sent); later connections accept that key only, so a VPS whose
   address was taken over, or a machine in the middle, never gets the join token
   (``HostKeyChanged``);
2. ``agent.toml`` (a fresh join token) is written from stdin by ``sh`` under ``umask 077``
   into a file that must not exist yet (``set -C``), then renamed into place: it is 0600
   from its first byte;
3. the install script shipped in this package (``bootstrap.ssh_install``) is run by ``sh -s``
   from stdin, its output (stderr merged) handed line by line to ``on_line`` (the server's
   events).

One call makes one connection attempt: a VPS whose sshd is still coming up (refused,
unreachable, key not yet authorized) raises ``Unreachable``, and the workflow tries again
later (``Retry``, so a runner is never held waiting and a deletion is not kept waiting)
until ``MAILFLEET_PROVISION_SSH_CONNECT_SECONDS`` have passed. The join token is issued
(``agent_toml``) only once logged in. A ``$MAILFLEET_LOCAL_ROOT`` set by the machine's sshd
(the local provider's VPSs share the host's filesystem) re-roots the config path, as
cloud-init's runcmd does there.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncssh

from control_plane.errors import MailFleetError
from control_plane.provisioning.bootstrap import AGENT_CONFIG_PATH, AgentInstall, ssh_install

SSH_PORT = 22
USER = "root"
ATTEMPT_SECONDS = 15.0  # one attempt's TCP connect, and its key exchange and login
TAIL_LINES = 5  # output lines a failed install's reason quotes

_CONFIG_DIR, _, _CONFIG_NAME = AGENT_CONFIG_PATH.rpartition("/")
WRITE_CONFIG = (
    'umask 077 && dir="${MAILFLEET_LOCAL_ROOT:-}"' + shlex.quote(_CONFIG_DIR) + " && "
    'mkdir -p "$dir" && rm -f "$dir/.agent.toml.new" && (set -C && cat > "$dir/.agent.toml.new") '
    f'&& mv -f "$dir/.agent.toml.new" "$dir/{_CONFIG_NAME}"'
)


class InstallFailed(MailFleetError):
    """The install over SSH could not be done; ``detail`` says why (no secret in it)."""


class HostKeyChanged(InstallFailed):
    """The VPS offered another host key than the one pinned on first contact."""


class Unreachable(InstallFailed):
    """No login (yet): refused, timed out, or the key not accepted; may pass as sshd starts."""


class CredentialRefused(Unreachable):
    """sshd answered but refused the key or password: on a machine being set up the key may
    not be authorized yet; on an adopted one the credential is wrong."""


@dataclass(frozen=True)
class Target:
    """Where and as whom: the VPS's address, the private key (OpenSSH or PEM text, from
    Vault) or, for an adopted machine, possibly a password instead, and the pinned host key
    (``type base64``) if there is one."""

    address: str
    private_key: str | None
    pinned_host_key: str | None
    port: int = SSH_PORT
    password: str | None = None


def host_key_line(key: asyncssh.SSHKey) -> str:
    """``type base64`` of a public key: what is pinned (no comment, no newline)."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


class _Pinning(asyncssh.SSHClient):
    """Accepts the host key that matches the pin (any key when there is none yet), and
    remembers the key offered so a refusal can name it."""

    def __init__(self, pinned: str | None) -> None:
        self.pinned = pinned
        self.offered: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.offered = key
        return self.pinned is None or host_key_line(key) == self.pinned


async def install_agent(
    target: Target,
    agent_toml: Callable[[], Awaitable[str]],
    install: AgentInstall,
    on_first_key: Callable[[str], Awaitable[None]],
    on_line: Callable[[str], Awaitable[None]],
) -> None:
    """Log in, pin (or check) the host key, write ``agent.toml``, run the install script."""
    conn = await _connect(target, on_first_key)
    async with conn:
        await _run(conn, WRITE_CONFIG, await agent_toml(), "writing agent.toml", on_line=None)
        script, args = ssh_install(install)
        command = "sh -s -- " + " ".join(shlex.quote(a) for a in args)
        await _run(conn, command, script, "the agent's install script", on_line)


async def _connect(
    target: Target, on_first_key: Callable[[str], Awaitable[None]]
) -> asyncssh.SSHClientConnection:
    """One connection attempt; the pin checked (or made) before anything is sent."""
    client_keys = None
    if target.private_key is not None:
        try:
            client_keys = [asyncssh.import_private_key(target.private_key)]
        except (asyncssh.KeyImportError, ValueError):
            raise InstallFailed(
                "the server's SSH key in Vault is not a private key asyncssh reads"
            ) from None
    elif target.password is None:
        raise InstallFailed("no SSH key or password to log in with")
    # A password also answers keyboard-interactive's one prompt (sshd with PAM asks that way).
    methods = ["publickey"] if client_keys else ["password", "keyboard-interactive"]
    what = "SSH key" if client_keys else "SSH password"
    pinned = target.pinned_host_key
    algs: list[str] | tuple[()] = ()
    if pinned is not None:
        algs = [a.decode() for a in asyncssh.import_public_key(pinned).sig_algorithms]
    where = f"{USER}@{target.address}:{target.port}"
    client = _Pinning(pinned)
    try:
        conn = await asyncssh.connect(
            target.address,
            target.port,
            username=USER,
            client_factory=lambda: client,
            client_keys=client_keys,
            password=None if client_keys else target.password,
            known_hosts=([], [], []),  # every key goes through _Pinning
            server_host_key_algs=algs,
            agent_path=None,
            config=None,
            preferred_auth=methods,
            connect_timeout=ATTEMPT_SECONDS,
            login_timeout=ATTEMPT_SECONDS,
        )
    except asyncssh.HostKeyNotVerifiable:
        offered = client.offered
        seen = offered.get_fingerprint() if offered is not None else "another key"
        pin = asyncssh.import_public_key(pinned).get_fingerprint() if pinned else "?"
        raise HostKeyChanged(
            f"SSH host key of {target.address} changed: pinned {pin} on first contact, "
            f"now offered {seen}; refusing to send the agent's join token there"
        ) from None
    except asyncssh.PermissionDenied:
        raise CredentialRefused(f"{where} refused the server's {what}") from None
    except (OSError, TimeoutError, asyncssh.Error) as exc:
        raise Unreachable(f"{where}: {_reason(exc)}") from None
    if pinned is None and client.offered is not None:
        await on_first_key(host_key_line(client.offered))
    return conn


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's own words name no cause: "Connect call failed"
    return str(exc) or type(exc).__name__


async def _run(
    conn: asyncssh.SSHClientConnection,
    command: str,
    stdin: str,
    what: str,
    on_line: Callable[[str], Awaitable[None]] | None,
) -> None:
    """Run ``command`` with ``stdin``; each output line to ``on_line``; a non-zero exit
    raises ``InstallFailed`` quoting the last lines."""
    tail: list[str] = []
    async with conn.create_process(command, stderr=asyncssh.STDOUT) as process:
        process.stdin.write(stdin)
        process.stdin.write_eof()
        async for raw in process.stdout:
            line = str(raw).rstrip("\n")
            if not line.strip():
                continue  # nothing to say (a blank between merged stdout and stderr)
            tail = [*tail[-(TAIL_LINES - 1) :], line]
            if on_line is not None:
                await on_line(line)
        result = await process.wait()
    if result.exit_status != 0:
        status = (
            f"exited with status {result.exit_status}"
            if result.exit_status is not None
            else f"was killed by {result.exit_signal[0] if result.exit_signal else 'a signal'}"
        )
        said = "; last output: " + " | ".join(tail) if tail else ""
        raise InstallFailed(f"{what} {status}{said}")
