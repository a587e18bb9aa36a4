"""Alerts: where notifications go (channels), who is told when (escalation policies), and a
delivery log per notification."""
