"""``mailfleet-agent``'s short-lived commands (typer): never loaded by the daemon, whose
``run`` is parsed with argparse in ``agent.cli`` so typer, click and rich stay out of it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from agent import __version__
from agent.cli import run_daemon
from agent.config import DEFAULT_CONFIG

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
    # listed here for --help; `mailfleet-agent run` itself is parsed by agent.cli.main
    raise typer.Exit(run_daemon(config, root, log_level))
