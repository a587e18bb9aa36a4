"""The ``mailfleet`` CLI run inside the test process: what a command prints, refuses and
writes to the database or Vault.

A ``mailfleet`` process costs about a second of CPU before it does anything (Python, Typer,
pydantic, then SQLAlchemy and the models for a database command), several on a loaded
machine; Typer's CliRunner gives the same exit code, stdout and stderr, under the same
program name (the audit log records it). What only a real process shows (the status a
shell sees, signals, the environment it inherits, its working directory, files it leaves,
the entry point itself) stays with ``processes.run_cli``.

One command at a time: CliRunner swaps the process's stdout, stderr and environment while
a command runs (never two in one ``asyncio.gather``; real processes may run beside one).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from typer.testing import CliRunner

from control_plane.cli import app
from tests.support.processes import mailfleet_env


@dataclass(frozen=True)
class CliResult:
    """What ``run_cli`` answers, in the same names (returncode, stdout, stderr)."""

    returncode: int
    stdout: str
    stderr: str


def invoke_cli(*args: str, env: Mapping[str, str], stdin: str | None = None) -> CliResult:
    """``mailfleet ARGS`` in this process, with only ``env``'s MAILFLEET_* settings (as
    ``run_cli`` gives the process) and ``stdin`` (what a prompt reads). On a thread of its
    own: a command that reaches its database runs an event loop (``asyncio.run``), which
    must not replace the test's."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_invoke, args, env, stdin).result()


async def invoke_cli_async(*args: str, env: Mapping[str, str]) -> CliResult:
    """``invoke_cli`` from an async test (the test's loop keeps running meanwhile)."""
    return await asyncio.to_thread(_invoke, args, env)


def _invoke(args: tuple[str, ...], env: Mapping[str, str], stdin: str | None = None) -> CliResult:
    """The command configures logging as a process of its own would; the test process's
    logging is put back afterwards."""
    wanted = mailfleet_env(env)
    # CliRunner lays its env over os.environ: unset what the process would not inherit.
    overlay: dict[str, str | None] = {k: None for k in os.environ if k not in wanted}
    overlay.update(wanted)
    loggers = [logging.getLogger(name) for name in (None, "httpx", "urllib3", "asyncio")]
    saved = [(logger.handlers[:], logger.level) for logger in loggers]
    try:
        # Named as the entry point names it: the audit log records "mailfleet tenant create".
        result = CliRunner().invoke(
            app, list(args), input=stdin, env=overlay, catch_exceptions=False, prog_name="mailfleet"
        )
    finally:
        for logger, (handlers, level) in zip(loggers, saved, strict=True):
            logger.handlers[:] = handlers
            logger.setLevel(level)
    return CliResult(result.exit_code, result.stdout, result.stderr)
