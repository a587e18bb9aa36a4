"""Errors a command reports as its one-line reason (no exception type in front)."""

from __future__ import annotations


class CommandError(Exception):
    """The command cannot be carried out; ``str(exc)`` says why, for a person to read."""
