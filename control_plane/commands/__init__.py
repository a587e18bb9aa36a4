"""Commands: durable work for agents, delivered at least once and run once in effect."""
