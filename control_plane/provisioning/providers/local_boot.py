"""The "boot" of a local VPS: the part of cloud-init MailFleet's user data relies on.

A network namespace has no init and no cloud-init, so the local provider plays that role for
the user data it is given, the way cloud-init would on a real VPS:

- ``#!…`` — a script, run once inside the namespace (``nsenter --net``);
- ``#cloud-config`` — YAML of which two modules are carried out:

  - ``write_files``: entries with ``path``, ``content`` (default empty), ``permissions``
    (octal string such as ``"0640"`` or a YAML integer; default ``0644``), ``encoding``
    (``text/plain``, ``b64``/``base64``, ``gz``/``gzip``, ``gz+b64`` and their spellings),
    ``append`` (bool). ``owner`` and ``defer`` are accepted and ignored: everything runs as
    root, and files are always written before ``runcmd`` (as ``defer`` would ensure).
    ``source`` (fetching a URL) is refused rather than silently skipped.
  - ``runcmd``: commands run in order by ``/bin/sh`` — a string as a shell line, a list as
    argv (each word shell-quoted), exactly as cloud-init writes its runcmd script.

  Other top-level keys are ignored with a warning (in the log and in ``boot.log``), as
  cloud-init does for modules that do not apply to a machine.

Anything else (MIME multipart, ``#include``, …) is refused, so a mistake in MailFleet's
template shows up as an error at ``create`` instead of a VPS that never enrolls.

**Why files are re-rooted.** A network namespace isolates only networking: the "VPS" shares
the host's filesystem. ``write_files`` paths are therefore moved under the instance's own
``rootfs`` directory inside its state directory (``/etc/x`` → ``<state>/<id>/rootfs/etc/x``),
or a VPS's user data would overwrite the control plane host's ``/etc``. A path already inside
that ``rootfs`` is kept as it is. Boot commands start with ``rootfs`` as working directory and
find it in ``$MAILFLEET_LOCAL_ROOT`` too.

The boot runs in the background, in its own session and process group and in the VPS's
cgroup, with its output in ``boot.log`` and its exit status, once it ends, in
``boot.status``; its process id and start time are returned so ``terminate`` can stop it (and
only it, even after the id is reused). Files that may hold the join token (user data, the
runcmd script, ``write_files``) are created 0600 and renamed into place (``write_private``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import importlib
import logging
import os
import posixpath
import shlex
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from control_plane.files import write_private
from control_plane.provisioning.providers.local_proc import ProcessRef, read_stat

log = logging.getLogger(__name__)

# PyYAML ships without type information (and MailFleet does not depend on its stub package):
# importing it by name keeps mypy --strict clean without a type: ignore that would turn into
# an "unused ignore" error wherever the stubs happen to be installed.
_yaml: Any = importlib.import_module("yaml")

BOOT_LOG = "boot.log"
USER_DATA = "user-data"
RUNCMD = "runcmd.sh"
ROOTFS = "rootfs"
BOOT_STATUS = "boot.status"
BOOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TAIL_LINES = 20  # lines of boot.log a failed boot reports
TAIL_BYTES = 64 * 1024
TAIL_LINE_CHARS = 500
# $1: the status file; then cgroup.procs/tasks files up to "--"; then the boot's argv.
# A failure to join the cgroup is reported (exit 125) rather than booting outside it.
_WRAPPER = (
    "status=$1; shift; code=0; "
    'while [ "$1" != -- ]; do echo $$ > "$1" || code=125; shift; done; shift; '
    'if [ "$code" = 0 ]; then "$@"; code=$?; fi; '
    'echo "$code" > "$status.tmp" && mv -f "$status.tmp" "$status"; exit "$code"'
)

_ENCODINGS = {
    "text/plain": (),
    "b64": ("b64",),
    "base64": ("b64",),
    "gz": ("gz",),
    "gzip": ("gz",),
    "gz+b64": ("b64", "gz"),
    "gz+base64": ("b64", "gz"),
    "gzip+b64": ("b64", "gz"),
    "gzip+base64": ("b64", "gz"),
}
_FILE_KEYS = {"path", "content", "permissions", "encoding", "append", "owner", "defer"}


@dataclass(frozen=True)
class WriteFile:
    """One ``write_files`` entry, decoded and validated."""

    path: str
    content: bytes
    permissions: int
    append: bool


@dataclass(frozen=True)
class BootPlan:
    """What a VPS's user data asks for, checked before anything is built."""

    kind: Literal["none", "script", "cloud-config"]
    write_files: tuple[WriteFile, ...] = ()
    runcmd: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def runs_something(self) -> bool:
        return self.kind == "script" or bool(self.runcmd)


def parse_user_data(user_data: str) -> BootPlan:
    """Validate user data; ``ValueError`` names the problem (nothing has been built yet)."""
    if not user_data.strip():
        return BootPlan("none")
    if user_data.startswith("#!"):
        return BootPlan("script")
    if not user_data.startswith("#cloud-config"):
        first = user_data.splitlines()[0][:40]
        raise ValueError(
            "the local provider runs user data that starts with '#!' (a script) or "
            f"'#cloud-config'; this starts with {first!r}"
        )
    try:
        document = _yaml.safe_load(user_data)
    except _yaml.YAMLError as exc:
        raise ValueError(f"user data is not valid YAML: {exc}") from None
    if document is None:
        return BootPlan("cloud-config")
    if not isinstance(document, dict):
        raise ValueError("#cloud-config user data must be a YAML mapping")
    files = tuple(_write_file(entry, n) for n, entry in enumerate(_list(document, "write_files")))
    commands = tuple(_command(entry, n) for n, entry in enumerate(_list(document, "runcmd")))
    ignored = tuple(sorted(str(key) for key in document if key not in ("write_files", "runcmd")))
    return BootPlan("cloud-config", files, commands, ignored)


def _list(document: dict[Any, Any], key: str) -> list[Any]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"cloud-config {key} must be a list")
    return value


def _write_file(entry: Any, index: int) -> WriteFile:
    where = f"write_files[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a mapping")
    unknown = set(entry) - _FILE_KEYS
    if unknown:
        raise ValueError(f"{where}: unsupported keys {sorted(map(str, unknown))}")
    path = entry.get("path")
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{where}.path is required")
    content = entry.get("content", "")
    if content is None:
        content = ""
    if isinstance(content, str):
        data = content.encode()
    elif isinstance(content, bytes):
        data = content
    else:
        raise ValueError(f"{where}.content must be a string")
    encoding = str(entry.get("encoding", "text/plain")).strip().lower()
    if encoding not in _ENCODINGS:
        raise ValueError(f"{where}.encoding {encoding!r} is not supported")
    try:
        for step in _ENCODINGS[encoding]:
            if step == "b64":  # strict, or junk would silently decode to nothing
                data = base64.b64decode(b"".join(data.split()), validate=True)
            else:
                data = gzip.decompress(data)
    except (binascii.Error, OSError, EOFError) as exc:
        raise ValueError(f"{where}.content does not decode as {encoding}: {exc}") from None
    append = entry.get("append", False)
    if not isinstance(append, bool):
        raise ValueError(f"{where}.append must be true or false")
    return WriteFile(path, data, _permissions(entry.get("permissions"), where), append)


def _permissions(value: Any, where: str) -> int:
    """cloud-init's rule: a string is octal text; an integer is taken as is (YAML octal)."""
    if value is None:
        return 0o644
    if isinstance(value, bool):
        raise ValueError(f"{where}.permissions must be an octal mode such as '0644'")
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        try:
            mode = int(text, 8)
        except ValueError:
            raise ValueError(f"{where}.permissions {value!r} is not an octal mode") from None
    else:
        raise ValueError(f"{where}.permissions must be an octal mode such as '0644'")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"{where}.permissions {value!r} is out of range")
    return mode


def _command(entry: Any, index: int) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, list) and entry and all(isinstance(w, str | int) for w in entry):
        return shlex.join(str(word) for word in entry)
    raise ValueError(f"runcmd[{index}] must be a string or a list of words")


def reroot(path: str, rootfs: Path) -> Path:
    """Where a VPS path lives on the host: under ``rootfs`` (see the module docstring).

    ``..`` cannot climb out: the path is normalised as an absolute path first, and
    ``/..`` is ``/``.
    """
    normal = posixpath.normpath("/" + path.lstrip("/"))
    root = str(rootfs)
    if normal == root or normal.startswith(root + "/"):
        return Path(normal)
    return Path(root + normal) if normal != "/" else rootfs


def write_files(plan: BootPlan, rootfs: Path) -> list[Path]:
    """Carry out ``write_files`` under ``rootfs``; returns the host paths written."""
    written: list[Path] = []
    for entry in plan.write_files:
        target = reroot(entry.path, rootfs)
        if target == rootfs:
            raise ValueError(f"write_files path {entry.path!r} names the root directory")
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        data = entry.content
        if entry.append:
            with contextlib.suppress(FileNotFoundError):
                data = target.read_bytes() + data
        write_private(target, data, entry.permissions)
        written.append(target)
    return written


def prepare(plan: BootPlan, user_data: str, instance_dir: Path) -> list[str] | None:
    """Write the user data (and runcmd script); the command to run in the namespace, if any.

    Both hold the join token: written 0600/0700 from the first byte (``write_private``).
    """
    script = instance_dir / USER_DATA
    write_private(script, user_data.encode(), 0o700 if plan.kind == "script" else 0o600)
    if plan.kind == "script":
        return [str(script)]
    if not plan.runcmd:
        return None
    runcmd = instance_dir / RUNCMD
    text = "#!/bin/sh\n" + "".join(line + "\n" for line in plan.runcmd)
    write_private(runcmd, text.encode(), 0o700)
    return ["/bin/sh", str(runcmd)]


def note(instance_dir: Path, message: str) -> None:
    """A line from the provider itself in the VPS's boot log."""
    with (instance_dir / BOOT_LOG).open("a") as handle:
        handle.write(f"mailfleet-local: {message}\n")


def spawn(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    status_path: Path,
    cgroup_procs: Sequence[Path] = (),
    enter: Sequence[str] = (),
) -> ProcessRef:
    """Start the boot in the background, in a new session, its output appended to ``log_path``.

    ``argv`` runs under a small ``/bin/sh`` (``_WRAPPER``, itself started by ``enter``, the
    command that puts it into the VPS's namespace). The shell first joins the VPS's cgroup
    by writing its pid into each ``cgroup_procs`` file — so everything the boot starts is
    born inside it, with no window outside — and afterwards writes the boot's exit status
    to ``status_path``, where ``exit_status`` finds it even after a control-plane restart.

    ``subprocess.Popen`` rather than asyncio's subprocesses: the boot outlives the call (and
    may outlive the event loop), and asyncio ties a child's bookkeeping to its loop. A
    daemon thread waits for it, so it never lingers as a zombie of the control plane. The
    start time is read before that thread can reap it, so the reference is always complete.
    """
    wrapped = [*enter, "/bin/sh", "-c", _WRAPPER, "mailfleet-boot", str(status_path)]
    wrapped += [*map(str, cgroup_procs), "--", *argv]
    with log_path.open("ab") as output:
        process = subprocess.Popen(
            wrapped,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stat = read_stat(process.pid)
    start = stat.start if stat is not None else -1
    threading.Thread(target=process.wait, name=f"local-boot-{process.pid}", daemon=True).start()
    return ProcessRef(process.pid, start)


def exit_status(instance_dir: Path) -> int | None:
    """How the boot ended (``spawn`` records it), or None while it runs (or was killed)."""
    try:
        return int((instance_dir / BOOT_STATUS).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def log_tail(instance_dir: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of the boot log (each cut to a sane length)."""
    try:
        with (instance_dir / BOOT_LOG).open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - TAIL_BYTES))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    kept = [line[:TAIL_LINE_CHARS] for line in text.splitlines()[-lines:]]
    return "\n".join(kept)


def boot_environment(
    instance_id: str, rootfs: Path, extra_path: tuple[str, ...] = ()
) -> dict[str, str]:
    """A clean environment: a VPS must not inherit the control plane's variables."""
    return {
        "PATH": ":".join([*extra_path, BOOT_PATH]),
        "HOME": str(rootfs / "root"),
        "LANG": "C.UTF-8",
        "MAILFLEET_LOCAL_ROOT": str(rootfs),
        "MAILFLEET_INSTANCE_ID": instance_id,
    }
