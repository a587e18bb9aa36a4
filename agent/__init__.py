"""MailFleet agent: runs on every VPS, talks to the control plane over mutual-TLS gRPC."""

__version__ = "0.1.0"
