"""Health: every server's checks on a schedule, three-state results, and their history."""
