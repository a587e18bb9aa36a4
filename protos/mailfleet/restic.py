"""What request data may reach restic: one rule set, enforced by the control plane (a 422
naming the field) and again by the agent (restic runs as root on the VPS).

restic runs with a fixed environment (``SAFE_PATH`` and little else) plus the backend
credentials named in ``BACKEND_ENV``: the variables restic's documentation lists for its
S3, Azure, B2, Google, Swift/OpenStack, REST and rclone backends. Left out on purpose:
every name that makes restic or a program it starts read a file or run a command on the
machine (``AWS_SHARED_CREDENTIALS_FILE``, ``AWS_PROFILE``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``RESTIC_PASSWORD_COMMAND``, ``RCLONE_CONFIG*``, ``RCLONE_PASSWORD_COMMAND``, …) and
anything a dynamic loader or a shell reads (``PATH``, ``LD_PRELOAD``, …).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

BACKEND_ENV = frozenset(
    {
        # S3 (and S3-compatible servers)
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
        # Azure Blob Storage
        "AZURE_ACCOUNT_NAME", "AZURE_ACCOUNT_KEY", "AZURE_ACCOUNT_SAS", "AZURE_ENDPOINT_SUFFIX",
        # Backblaze B2
        "B2_ACCOUNT_ID", "B2_ACCOUNT_KEY",
        # Google Cloud Storage (a token; the credentials-file variable is a path)
        "GOOGLE_PROJECT_ID", "GOOGLE_ACCESS_TOKEN",
        # OpenStack Swift (keystone v1, v2, v3, application credentials, token)
        "ST_AUTH", "ST_USER", "ST_KEY",
        "OS_AUTH_URL", "OS_REGION_NAME", "OS_USERNAME", "OS_USER_ID", "OS_PASSWORD",
        "OS_TENANT_ID", "OS_TENANT_NAME", "OS_USER_DOMAIN_NAME", "OS_USER_DOMAIN_ID",
        "OS_PROJECT_NAME", "OS_PROJECT_DOMAIN_NAME", "OS_PROJECT_DOMAIN_ID", "OS_TRUST_ID",
        "OS_APPLICATION_CREDENTIAL_ID", "OS_APPLICATION_CREDENTIAL_NAME",
        "OS_APPLICATION_CREDENTIAL_SECRET", "OS_STORAGE_URL", "OS_AUTH_TOKEN",
        # REST server
        "RESTIC_REST_USERNAME", "RESTIC_REST_PASSWORD",
        # rclone
        "RCLONE_BWLIMIT",
    }
)  # fmt: skip

# Where neither a repository nor a restore may write, nor a backup read: the system, root's
# home, and the agent's own key, certificate and state.
PROTECTED = tuple(
    PurePosixPath(p)
    for p in (
        "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
        "/root", "/run", "/sbin", "/sys", "/usr", "/var/lib/mailfleet-agent",
        "/var/cache/mailfleet-agent", "/var/spool/cron", "/var/lib/docker",
    )
)  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# How the agent words a restic run that could not get at the repository. restic 0.14 has no
# exit code for these (10-12 came in 0.17), so the agent reads restic's words; the control
# plane reads these in a failed ``backup.check`` or drill: it could not check anything, so
# the finding is unknown, not a verdict on the backups.
NO_REPOSITORY = "no restic repository at this location"
LOCKED = "the repository is locked by another restic process"
KEY_MISMATCH = "wrong repository password"
REFUSED_CREDENTIALS = "the repository's storage refused the backend credentials"
UNREACHABLE = "the repository is unreachable"
DENIED = "permission denied at the repository"
NOT_REACHED = (NO_REPOSITORY, LOCKED, KEY_MISMATCH, REFUSED_CREDENTIALS, UNREACHABLE, DENIED)


def refused_env(names: Iterable[str]) -> list[str]:
    """The names among ``names`` restic must not be given, sorted."""
    return sorted(name for name in names if name not in BACKEND_ENV)


def env_problem(env: dict[str, str]) -> tuple[str, str] | None:
    """(name, why) for the first variable that may not reach restic, or None."""
    for name in refused_env(env):
        return name, "not a backend credential restic documents (see the allowed names)"
    for name, value in sorted(env.items()):
        if "\0" in value:
            return name, "a value without NUL characters"
    return None


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a plain absolute path (``..``, control characters), or None."""
    if not path.startswith("/") or _CONTROL.search(path):
        return "an absolute path, one line"
    if ".." in PurePosixPath(path).parts:
        return "an absolute path without '..'"
    return None


def protected(path: str) -> bool:
    """Whether ``path`` is, or lies inside, a directory in ``PROTECTED`` (or is ``/``)."""
    pure = PurePosixPath(path)
    return pure == PurePosixPath("/") or any(
        pure == top or top in pure.parents for top in PROTECTED
    )


def writable_path_problem(path: str) -> str | None:
    """Why restic may not write at ``path`` (a restore target, a local repository)."""
    problem = path_problem(path)
    if problem is None and protected(path):
        problem = f"not / nor inside {', '.join(str(p) for p in PROTECTED)}"
    return problem


def readable_path_problem(path: str) -> str | None:
    """Why restic may not back up ``path``: inside a protected directory or holding one
    (``/var`` holds the agent's key), which would hand root's secrets to the repository."""
    problem = path_problem(path)
    pure = PurePosixPath(path)
    if problem is None and (protected(path) or any(pure in top.parents for top in PROTECTED)):
        problem = f"not /, nor inside or above {', '.join(str(p) for p in PROTECTED)}"
    return problem


def repository_url_problem(url: str) -> str | None:
    """Why ``url`` is not a repository restic may be pointed at, or None.

    A local repository obeys ``writable_path_problem``. An ``sftp:`` host or user starting
    with ``-`` would reach ``ssh`` as an option (``-oProxyCommand=…``); an ``rclone:``
    remote given as a connection string (``:sftp,ssh=…:``, ``remote,opt=…:``) configures
    the backend inline, and some backends' options run programs: only named remotes.
    """
    if _CONTROL.search(url) or " " in url:
        return "one line without spaces"
    if url.startswith("/"):
        return writable_path_problem(url)
    scheme, _, rest = url.partition(":")
    if scheme == "sftp":
        netloc = rest[2:].split("/", 1)[0] if rest.startswith("//") else rest.split(":", 1)[0]
        user, _, host = netloc.rpartition("@")
        if not host or host.startswith("-") or user.startswith("-"):
            return "sftp:user@host:/path with a host and user that do not start with '-'"
    if scheme == "rclone":
        remote = rest.split(":", 1)[0]
        if not remote or any(c in remote for c in ",{}'\"") or remote.startswith("-"):
            return "rclone:remote:path naming a remote configured on the server"
    return None
