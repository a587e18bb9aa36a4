"""The ``mailfleet`` CLI run inside the test process, for what a command refuses up front.

A ``mailfleet`` process costs about a second of CPU before it does anything (Python, Typer,
pydantic, then SQLAlchemy and the models for a database command); tests of parsing and
validation need none of that, and Typer's CliRunner gives the same exit code, stdout and
stderr. What only a real process shows (the status a shell sees, signals, the environment
it inherits, its working directory, files it leaves) stays with ``processes.run_cli``.

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
        result = CliRunner().invoke(
            app, list(args), input=stdin, env=overlay, catch_exceptions=False
        )
    finally:
        for logger, (handlers, level) in zip(loggers, saved, strict=True):
            logger.handlers[:] = handlers
            logger.setLevel(level)
    return CliResult(result.exit_code, result.stdout, result.stderr)
