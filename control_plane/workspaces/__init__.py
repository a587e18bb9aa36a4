"""Workspaces: a tenant's clients or departments; the unit costs are allocated to."""
