"""Enrollment: join tokens and agent certificates signed by Vault's PKI."""
