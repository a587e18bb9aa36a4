"""``mailfleet-agent``: the VPS agent's command line."""

from __future__ import annotations

import typer

from agent import __version__

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


def main() -> None:
    app()
