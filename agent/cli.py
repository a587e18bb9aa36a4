"""``mailfleet-agent``: the VPS agent's command line.

``run`` starts the long-lived daemon, parsed here with argparse so that process never loads
typer (nor click and rich with it); every other command is typer's, in ``agent.cli_tools``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import DEFAULT_CONFIG, ConfigError, under_root
from agent.footprint import without_openssl

if TYPE_CHECKING:
    from agent.daemon import Agent

LOG_LEVELS = ("debug", "info", "warning", "error")


def daemon_class() -> type[Agent]:
    """The daemon, its modules imported now: only by the long-running command, and without
    OpenSSL's Python bindings (``agent.footprint``)."""
    with without_openssl():
        from agent.daemon import Agent

    return Agent


def run_daemon(config: Path | None, root: Path, log_level: str) -> int:
    """Enroll if needed, then stay connected until SIGINT or SIGTERM; the exit status
    (2: bad configuration, 1: cannot read it, 0: stopped)."""
    if log_level.lower() not in LOG_LEVELS:
        print(f"error: --log-level {log_level}: one of {', '.join(LOG_LEVELS)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    agent_class = daemon_class()
    import asyncio  # loaded with the daemon

    try:
        if not root.is_dir():
            raise ConfigError(f"--root {root}: not a directory")
        root = root.resolve()
        agent = agent_class(config or under_root(root, DEFAULT_CONFIG), root)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)

    asyncio.run(main())
    return 0


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailfleet-agent run",
        description="Enroll if needed, then stay connected to the control plane until stopped.",
    )
    parser.add_argument(
        "--config", type=Path, help=f"agent.toml to read [default: ROOT{DEFAULT_CONFIG}]."
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        help="The machine's filesystem root; the agent's paths are placed under it.",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error.")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"]:
        options = run_parser().parse_args(args[1:])
        sys.exit(run_daemon(options.config, options.root, options.log_level))
    from agent.cli_tools import app

    app(args=args, prog_name="mailfleet-agent")
