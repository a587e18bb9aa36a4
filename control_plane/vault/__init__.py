"""Secrets: every secret MailFleet holds lives in Vault (OpenBao locally), reached with hvac."""
