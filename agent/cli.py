"""``mailfleet-agent``: the VPS agent's command line."""

from __future__ import annotations

import asyncio
import logging
import signal
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from agent import __version__
from agent.config import DEFAULT_CONFIG, ConfigError, under_root

app = typer.Typer(
    name="mailfleet-agent",
    help="MailFleet VPS agent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """MailFleet VPS agent."""


@app.command()
def version() -> None:
    """Print the agent version."""
    typer.echo(__version__)


@app.command("systemd-unit")
def systemd_unit() -> None:
    """Print the systemd unit that runs this agent (the install script writes it out)."""
    typer.echo(resources.files("agent").joinpath("mailfleet-agent.service").read_text(), nl=False)


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Option(help=f"agent.toml to read [default: ROOT{DEFAULT_CONFIG}].")
    ] = None,
    root: Annotated[
        Path,
        typer.Option(help="The machine's filesystem root; the agent's paths are placed under it."),
    ] = Path("/"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Enroll if needed, then stay connected to the control plane until stopped."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from agent.daemon import Agent  # heavy imports only for the long-running command

    try:
        if not root.is_dir():
            raise ConfigError(f"--root {root}: not a directory")
        root = root.resolve()
        agent = Agent(config or under_root(root, DEFAULT_CONFIG), root)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)

    asyncio.run(main())


def main() -> None:
    app()
