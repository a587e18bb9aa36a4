"""The README's Quick start, walked as a newcomer walks it: `make run` in one shell, the
README's second-shell lines in another. Used by ``tests/e2e/test_readme.py`` (which asserts
what each step shows) and ``benchmarks/first_run.py`` (which times it from a fresh clone).

The commands come from the README itself (the code blocks after a
``<!-- quickstart: second-shell -->`` marker), so the walk breaks when either changes. The
only liberties taken are the ones a second machine would need: free ports instead of 8080/
8443/8444/8200 and a bridge and /24 of the walk's own (both given to `make run` through the
environment; the second shell learns them from what serve recorded, as a newcomer's does),
and a private ``XDG_CONFIG_HOME`` so the user's recorded home is left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.netns import links, namespaces, pick_subnet, sweep
from tests.support.ports import free_port
from tests.support.processes import Running

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- quickstart: second-shell -->"
KEY_PLACEHOLDER = "mf_admin_…"
_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def second_shell_script(readme: Path) -> str:
    """The README's second-shell blocks, in order, as one script."""
    text = readme.read_text()
    blocks = []
    for part in text.split(MARKER)[1:]:
        found = _BLOCK.match(part.lstrip("\n"))
        assert found, f"a {MARKER} marker must be followed by a ```sh block"
        blocks.append(found.group(1))
    assert blocks, f"the README has no {MARKER} blocks"
    return "".join(blocks)


def prepare_checkout(dest: Path, *, reuse_venv: bool) -> None:
    """A fresh clone of this checkout at ``dest`` — or, with ``reuse_venv``, just what `make
    run` reads (Makefile, pyproject.toml, README.md) beside this checkout's installed venv."""
    if not reuse_venv:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True, timeout=120)
        return
    dest.mkdir(parents=True)
    stamps = sorted((ROOT / ".venv").glob(".installed-*"))
    assert stamps, "the checkout's venv is not installed (run `make install`)"
    installed_at = min(stamp.stat().st_mtime for stamp in stamps)
    for name in ("Makefile", "pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, dest / name)
        # As old as the install, so make sees the venv as up to date (no install in a test).
        os.utime(dest / name, (installed_at - 1, installed_at - 1))
    (dest / ".venv").symlink_to(ROOT / ".venv")
    # Never let `make run` install here: it would re-point the shared venv at ``dest``.
    current = subprocess.run(["make", "-q", "install"], cwd=dest, timeout=30, check=False)
    assert current.returncode == 0, "the checkout's venv is out of date: run `make install`"


@dataclass
class Walk:
    """One walk through the Quick start in ``directory``."""

    directory: Path
    config_home: Path
    prefix: str = field(default_factory=lambda: "q" + secrets.token_hex(2))
    api_port: int = field(default_factory=free_port)
    environment: dict[str, str] = field(default_factory=dict)
    runs: list[Running] = field(default_factory=list)  # each `make run`, its output kept

    def __post_init__(self) -> None:
        subnet = pick_subnet()
        vault_port = free_port(pairs=True)
        self.environment = {
            "MAILFLEET_API_ADDR": f"127.0.0.1:{self.api_port}",
            "MAILFLEET_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "MAILFLEET_ENROLL_ADDR": f"127.0.0.1:{free_port()}",
            "MAILFLEET_LOCAL_VAULT_ADDR": f"127.0.0.1:{vault_port}",
            "MAILFLEET_LOCAL_PROVIDER_PREFIX": self.prefix,
            "MAILFLEET_LOCAL_PROVIDER_BRIDGE": f"{self.prefix}br",
            "MAILFLEET_LOCAL_PROVIDER_BRIDGE_ADDRESS": f"{subnet.network_address + 1}/24",
            "MAILFLEET_LOCAL_PROVIDER_POOL": f"{subnet.network_address + 16}/28",
            "MAILFLEET_HEARTBEAT_INTERVAL_SECONDS": "1",
            "MAILFLEET_METRICS_INTERVAL_SECONDS": "1",
            "MAILFLEET_PROVISION_POLL_SECONDS": "0.5",
            "MAILFLEET_DNSBL_LISTS": "[]",  # no lookups on the real lists from tests
        }

    def shell_env(self) -> dict[str, str]:
        """A newcomer's shell: no MailFleet settings, a config home of the walk's own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLEET_")}
        env.pop("VIRTUAL_ENV", None)
        env["XDG_CONFIG_HOME"] = str(self.config_home)
        return env

    @contextmanager
    def make_run(self) -> Iterator[Running]:
        """`make run` in the background (its own process group), stopped with Ctrl-C."""
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=self.directory,
            env={**self.shell_env(), **self.environment},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        running = Running(process)
        self.runs.append(running)
        try:
            yield running
        finally:
            running.stop(signal.SIGINT, timeout=60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def second_shell(
        self,
        key: str,
        timeout: float = 300,
        *,
        timed: bool = False,
        replace: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The README's second-shell lines, in bash with ``set -e``, as written (the key
        pasted in, the walk's API port for 8080), traced to stderr — with ``timed``, each
        traced command marked with the Unix time it started (``+@<time> command``); ``replace``
        changes what a second walk must (a tenant name is taken once)."""
        script = second_shell_script(self.directory / "README.md")
        for old, new in (replace or {}).items():
            assert old in script, f"the README's second shell no longer has {old!r}"
            script = script.replace(old, new)
        if timed:  # bash takes no PS4 from the environment when it runs as root
            script = "PS4='+@${EPOCHREALTIME} '\n" + script
        script = script.replace(KEY_PLACEHOLDER, key)
        script = script.replace("localhost:8080", f"localhost:{self.api_port}")
        return subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-x", "-c", script],
            cwd=self.directory,
            env=self.shell_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def leftovers(self) -> list[str]:
        """Namespaces, links and VPS state the walk's local VPSs left behind."""
        found = [f"namespace {n}" for n in namespaces() if n.startswith(self.prefix + "-")]
        found += [
            f"link {n}" for n in links() if n.startswith(self.prefix) and n != f"{self.prefix}br"
        ]
        state = self.directory / "var" / "local-provider"
        if state.exists():
            found += [f"file {p.name}" for p in state.iterdir() if p.name != ".lock"]
        return found

    def sweep(self) -> None:
        """Kill what a failed walk left (namespaces, links); the directory goes with tmp."""
        sweep(self.prefix)


def admin_key_line(running: Running, timeout: float) -> tuple[str | None, float]:
    """The admin key `make run` printed last (None when one existed already, as on a second
    start), and how long after the start that line came."""
    started = time.monotonic()
    line = running.wait_for_line("Admin API key", timeout)
    key = line.rsplit(" ", 1)[1] if "(shown once)" in line else None
    return key, time.monotonic() - started
