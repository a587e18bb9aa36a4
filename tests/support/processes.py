"""Start MailFleet commands as real processes and always clean them up."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

BIN = Path(sys.executable).parent
T = TypeVar("T")


def mailfleet_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLEET_")}
    # No test process looks addresses up on the real blacklists (through whatever resolver the
    # machine has); a test that wants lookups names its own Knot-served lists.
    env["MAILFLEET_DNSBL_LISTS"] = "[]"
    env.update(extra)
    return env


def run_cli(
    *args: str, env: Mapping[str, str], timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mailfleet"), *args],
        env=mailfleet_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Running:
    """A process whose stdout lines are collected on a thread, so reads can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r} within {timeout} s; saw {self.seen}")

    def wait_for_line_containing(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        for line in self.output():
            if text in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line containing {text!r} within {timeout} s")

    def output(self) -> list[str]:
        """Every line read so far, including those nobody waited for."""
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return list(self.seen)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # The last lines (what it printed on its way out) are read once the pipe closes.
        self._pump_thread.join(timeout=5)
        return self.process.returncode


def spawn(command: str, *args: str, env: Mapping[str, str]) -> Running:
    """A MailFleet executable in its own process group (children go with it), output read."""
    process = subprocess.Popen(
        [str(BIN / command), *args],
        env=mailfleet_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    return Running(process)


@contextmanager
def serve(env: Mapping[str, str], *args: str) -> Iterator[Running]:
    """``mailfleet serve`` (its local OpenBao child stops with it)."""
    running = spawn("mailfleet", "serve", *args, env=env)
    process = running.process
    try:
        yield running
    finally:
        running.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything the process group left behind


@contextmanager
def started_on_fresh_ports(
    start: Callable[[contextlib.ExitStack], T], port_taken: type[BaseException], attempts: int
) -> Iterator[T]:
    """Start a server on freshly picked ports and stop it on exit. ``start`` registers how to
    stop what it started on the stack; when a port turns out taken (another xdist worker got
    it between ``free_port()`` and the bind), that is stopped and it starts again on others."""
    for attempt in range(attempts):
        stack = contextlib.ExitStack()
        try:
            started = start(stack)
        except port_taken:
            stack.close()
            if attempt == attempts - 1:
                raise
            continue
        except BaseException:
            stack.close()
            raise
        with stack:
            yield started
        return
