"""Backups: restic policies per server, scheduled through agent commands; snapshots,
point-in-time restores and the findings a stale or failing backup raises."""
