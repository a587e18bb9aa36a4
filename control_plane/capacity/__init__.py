"""Capacity planning: when disk, memory and CPU will cross their thresholds, and which points
fall outside a server's own seasonal baseline (issue 16)."""
