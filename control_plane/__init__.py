"""MailFleet control plane: API, agent gateway and background services."""

__version__ = "0.1.0"
