"""Servers: the VPSs MailFleet runs, each with one agent."""
