"""Audit log: who changed what, through the API or the CLI, append-only."""
