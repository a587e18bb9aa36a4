"""Plan recommendations from usage, and resizing a server as a durable workflow with a cost
preview and rollback (issue 16)."""
