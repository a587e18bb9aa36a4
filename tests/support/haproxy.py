"""Debian's HAProxy running the packaged configuration (packaging/haproxy/haproxy.cfg) on
loopback, its addresses given through the environment as the file expects."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port

CONFIG = Path(__file__).resolve().parents[2] / "packaging" / "haproxy" / "haproxy.cfg"
LISTENERS = ("API", "LINK", "ENROLL")


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None
    )


def config_variables() -> set[str]:
    """Every ``"${NAME}"`` the packaged configuration reads (outside its comments)."""
    lines = (line.split("#", 1)[0] for line in CONFIG.read_text().splitlines())
    return {name for line in lines for name in re.findall(r"\$\{([A-Z0-9_]+)\}", line)}


@dataclass(frozen=True)
class Replica:
    """One replica's three listeners, host:port each."""

    api: str
    link: str
    enroll: str


@dataclass(frozen=True)
class Binds(Replica):
    """HAProxy's listeners: the replicas' three, and its own figures (``/stats``)."""

    stats: str

    def backend_status(self) -> dict[tuple[str, str], str]:
        """(backend, server) → UP / DOWN / …, from the stats page's CSV."""
        with urllib.request.urlopen(f"http://{self.stats}/stats;csv", timeout=5) as answer:
            rows = csv.reader(answer.read().decode().lstrip("# ").splitlines())
            header = next(rows)
            column = {name: index for index, name in enumerate(header)}
            return {
                (row[column["pxname"]], row[column["svname"]]): row[column["status"]]
                for row in rows
                if row and row[column["svname"]] not in ("FRONTEND", "BACKEND")
            }


def haproxy_env(binds: Binds, replicas: Sequence[Replica]) -> dict[str, str]:
    env = {
        "MAILFLEET_LB_API_BIND": binds.api,
        "MAILFLEET_LB_LINK_BIND": binds.link,
        "MAILFLEET_LB_ENROLL_BIND": binds.enroll,
        "MAILFLEET_LB_STATS_BIND": binds.stats,
    }
    for number, replica in enumerate(replicas, start=1):
        for name, address in zip(
            LISTENERS, (replica.api, replica.link, replica.enroll), strict=True
        ):
            env[f"MAILFLEET_REPLICA{number}_{name}"] = address
    return env


def check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = haproxy_binary()
    assert binary is not None, "haproxy is not installed (make system-deps)"
    return subprocess.run(
        [binary, "-c", "-f", str(CONFIG)],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def loopback_replica() -> Replica:
    return Replica(*(f"127.0.0.1:{free_port()}" for _ in LISTENERS))


def loopback_binds() -> Binds:
    return Binds(*(f"127.0.0.1:{free_port()}" for _ in (*LISTENERS, "STATS")))


@contextmanager
def running_haproxy(binds: Binds, replicas: Sequence[Replica], log: Path) -> Iterator[None]:
    """HAProxy in the foreground (-db), logging to ``log``; killed on exit."""
    binary = haproxy_binary()
    assert binary is not None, "haproxy is not installed (make system-deps)"
    with log.open("w") as out:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(CONFIG)],
            env={"PATH": os.environ.get("PATH", ""), **haproxy_env(binds, replicas)},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_listening(binds, process, log)
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _wait_listening(binds: Binds, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    for address in (binds.api, binds.link, binds.enroll, binds.stats):
        host, port = address.rsplit(":", 1)
        while True:
            if process.poll() is not None:
                raise AssertionError(f"haproxy exited ({process.returncode}): {log.read_text()}")
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"haproxy not listening on {address}"
                time.sleep(0.05)
