"""Blacklist (DNSBL) monitoring of every address and mail domain, three-state, and delisting."""
