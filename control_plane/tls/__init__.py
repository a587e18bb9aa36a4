"""TLS certificates for the mail hosts: ACME DNS-01, kept in Vault, delivered to MailU."""
