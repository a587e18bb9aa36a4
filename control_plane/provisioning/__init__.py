"""Provisioning: renting VPSs from providers and turning them into MailFleet servers."""
